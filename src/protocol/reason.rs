//! MQTT 5 reason codes [MQTT-2.4]: the one-byte outcome that CONNACK, PUBACK, PUBREC, PUBREL,
//! PUBCOMP, SUBACK, UNSUBACK, DISCONNECT and AUTH carry. Values below 0x80 report success,
//! 0x80 and above failure. One byte may have several names (0x00 is "Success", "Normal
//! disconnection" or "Granted QoS 0" depending on the packet), so a code is decoded in the
//! context of its packet, and every code knows the packets allowed to carry it.

use std::fmt;

use super::fixed_header::PacketType;
use super::qos::QoS;

/// Every reason code MQTT 5 defines, by meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    /// 0x00: the operation succeeded (CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, AUTH).
    Success,
    /// 0x00: close the connection normally, without the will (DISCONNECT).
    NormalDisconnection,
    /// 0x00: subscribed with maximum QoS 0 (SUBACK).
    GrantedQoS0,
    /// 0x01: subscribed with maximum QoS 1 (SUBACK).
    GrantedQoS1,
    /// 0x02: subscribed with maximum QoS 2 (SUBACK).
    GrantedQoS2,
    /// 0x04: the client disconnects but wants its will published (DISCONNECT).
    DisconnectWithWillMessage,
    /// 0x10: accepted, but nobody subscribes to the topic (PUBACK, PUBREC).
    NoMatchingSubscribers,
    /// 0x11: there was no such subscription to remove (UNSUBACK).
    NoSubscriptionExisted,
    /// 0x18: continue the authentication exchange (AUTH).
    ContinueAuthentication,
    /// 0x19: start a re-authentication (AUTH).
    ReAuthenticate,
    /// 0x80: failed, for no more specific reason.
    UnspecifiedError,
    /// 0x81: the packet received does not conform to the specification.
    MalformedPacket,
    /// 0x82: an unexpected or out-of-order packet, or a field breaking a protocol rule.
    ProtocolError,
    /// 0x83: valid, but this implementation cannot process it.
    ImplementationSpecificError,
    /// 0x84: the server does not speak the protocol version asked for (CONNACK).
    UnsupportedProtocolVersion,
    /// 0x85: the client identifier is valid but not allowed (CONNACK).
    ClientIdentifierNotValid,
    /// 0x86: the credentials are refused (CONNACK).
    BadUserNameOrPassword,
    /// 0x87: the client is not authorized to do this.
    NotAuthorized,
    /// 0x88: the MQTT service is not available (CONNACK).
    ServerUnavailable,
    /// 0x89: the server is busy; try again later.
    ServerBusy,
    /// 0x8A: the client is banned (CONNACK).
    Banned,
    /// 0x8B: the server is shutting down (DISCONNECT).
    ServerShuttingDown,
    /// 0x8C: the authentication method is not supported or does not match.
    BadAuthenticationMethod,
    /// 0x8D: nothing arrived within 1.5 times the keep-alive (DISCONNECT).
    KeepAliveTimeout,
    /// 0x8E: another connection with the same client identifier took the session (DISCONNECT).
    SessionTakenOver,
    /// 0x8F: the topic filter is well formed but not accepted.
    TopicFilterInvalid,
    /// 0x90: the topic name is well formed but not accepted.
    TopicNameInvalid,
    /// 0x91: the packet identifier is already in use.
    PacketIdentifierInUse,
    /// 0x92: the packet identifier is not known (PUBREL, PUBCOMP).
    PacketIdentifierNotFound,
    /// 0x93: more QoS 1/2 publishes in flight than the receive maximum (DISCONNECT).
    ReceiveMaximumExceeded,
    /// 0x94: a topic alias is 0 or above the maximum announced (DISCONNECT).
    TopicAliasInvalid,
    /// 0x95: the packet exceeds the maximum packet size.
    PacketTooLarge,
    /// 0x96: the message rate is too high (DISCONNECT).
    MessageRateTooHigh,
    /// 0x97: an administrative quota is exceeded.
    QuotaExceeded,
    /// 0x98: the connection is closed by an administrator (DISCONNECT).
    AdministrativeAction,
    /// 0x99: the payload does not match its payload format indicator.
    PayloadFormatInvalid,
    /// 0x9A: the server does not support retained messages.
    RetainNotSupported,
    /// 0x9B: the QoS is above the server's maximum QoS.
    QoSNotSupported,
    /// 0x9C: the client should use another server, temporarily.
    UseAnotherServer,
    /// 0x9D: the client should use another server, permanently.
    ServerMoved,
    /// 0x9E: the server does not support shared subscriptions.
    SharedSubscriptionsNotSupported,
    /// 0x9F: the connection rate limit was exceeded.
    ConnectionRateExceeded,
    /// 0xA0: the maximum connection time allowed is over (DISCONNECT).
    MaximumConnectTime,
    /// 0xA1: the server does not support subscription identifiers.
    SubscriptionIdentifiersNotSupported,
    /// 0xA2: the server does not support wildcard subscriptions.
    WildcardSubscriptionsNotSupported,
}

/// The bit of a packet type in a set of packet types.
const fn bit(packet: PacketType) -> u16 {
    1 << packet as u8
}

const CONNACK: u16 = bit(PacketType::ConnAck);
const PUBACK: u16 = bit(PacketType::PubAck);
const PUBREC: u16 = bit(PacketType::PubRec);
const PUBREL: u16 = bit(PacketType::PubRel);
const PUBCOMP: u16 = bit(PacketType::PubComp);
const SUBACK: u16 = bit(PacketType::SubAck);
const UNSUBACK: u16 = bit(PacketType::UnsubAck);
const DISCONNECT: u16 = bit(PacketType::Disconnect);
const AUTH: u16 = bit(PacketType::Auth);

/// The packets that carry most failure codes.
const ACKS_AND_DISCONNECT: u16 = CONNACK | PUBACK | PUBREC | SUBACK | UNSUBACK | DISCONNECT;

/// Every code, in wire order: a test checks this list against `byte` and `from_byte`.
pub const ALL_REASON_CODES: [ReasonCode; 45] = {
    use ReasonCode::*;
    [
        Success,
        NormalDisconnection,
        GrantedQoS0,
        GrantedQoS1,
        GrantedQoS2,
        DisconnectWithWillMessage,
        NoMatchingSubscribers,
        NoSubscriptionExisted,
        ContinueAuthentication,
        ReAuthenticate,
        UnspecifiedError,
        MalformedPacket,
        ProtocolError,
        ImplementationSpecificError,
        UnsupportedProtocolVersion,
        ClientIdentifierNotValid,
        BadUserNameOrPassword,
        NotAuthorized,
        ServerUnavailable,
        ServerBusy,
        Banned,
        ServerShuttingDown,
        BadAuthenticationMethod,
        KeepAliveTimeout,
        SessionTakenOver,
        TopicFilterInvalid,
        TopicNameInvalid,
        PacketIdentifierInUse,
        PacketIdentifierNotFound,
        ReceiveMaximumExceeded,
        TopicAliasInvalid,
        PacketTooLarge,
        MessageRateTooHigh,
        QuotaExceeded,
        AdministrativeAction,
        PayloadFormatInvalid,
        RetainNotSupported,
        QoSNotSupported,
        UseAnotherServer,
        ServerMoved,
        SharedSubscriptionsNotSupported,
        ConnectionRateExceeded,
        MaximumConnectTime,
        SubscriptionIdentifiersNotSupported,
        WildcardSubscriptionsNotSupported,
    ]
};

impl ReasonCode {
    /// The wire value.
    pub fn byte(self) -> u8 {
        use ReasonCode::*;
        match self {
            Success | NormalDisconnection | GrantedQoS0 => 0x00,
            GrantedQoS1 => 0x01,
            GrantedQoS2 => 0x02,
            DisconnectWithWillMessage => 0x04,
            NoMatchingSubscribers => 0x10,
            NoSubscriptionExisted => 0x11,
            ContinueAuthentication => 0x18,
            ReAuthenticate => 0x19,
            UnspecifiedError => 0x80,
            MalformedPacket => 0x81,
            ProtocolError => 0x82,
            ImplementationSpecificError => 0x83,
            UnsupportedProtocolVersion => 0x84,
            ClientIdentifierNotValid => 0x85,
            BadUserNameOrPassword => 0x86,
            NotAuthorized => 0x87,
            ServerUnavailable => 0x88,
            ServerBusy => 0x89,
            Banned => 0x8A,
            ServerShuttingDown => 0x8B,
            BadAuthenticationMethod => 0x8C,
            KeepAliveTimeout => 0x8D,
            SessionTakenOver => 0x8E,
            TopicFilterInvalid => 0x8F,
            TopicNameInvalid => 0x90,
            PacketIdentifierInUse => 0x91,
            PacketIdentifierNotFound => 0x92,
            ReceiveMaximumExceeded => 0x93,
            TopicAliasInvalid => 0x94,
            PacketTooLarge => 0x95,
            MessageRateTooHigh => 0x96,
            QuotaExceeded => 0x97,
            AdministrativeAction => 0x98,
            PayloadFormatInvalid => 0x99,
            RetainNotSupported => 0x9A,
            QoSNotSupported => 0x9B,
            UseAnotherServer => 0x9C,
            ServerMoved => 0x9D,
            SharedSubscriptionsNotSupported => 0x9E,
            ConnectionRateExceeded => 0x9F,
            MaximumConnectTime => 0xA0,
            SubscriptionIdentifiersNotSupported => 0xA1,
            WildcardSubscriptionsNotSupported => 0xA2,
        }
    }

    /// The name the specification gives the code, for logs.
    pub fn name(self) -> &'static str {
        use ReasonCode::*;
        match self {
            Success => "Success",
            NormalDisconnection => "Normal disconnection",
            GrantedQoS0 => "Granted QoS 0",
            GrantedQoS1 => "Granted QoS 1",
            GrantedQoS2 => "Granted QoS 2",
            DisconnectWithWillMessage => "Disconnect with Will Message",
            NoMatchingSubscribers => "No matching subscribers",
            NoSubscriptionExisted => "No subscription existed",
            ContinueAuthentication => "Continue authentication",
            ReAuthenticate => "Re-authenticate",
            UnspecifiedError => "Unspecified error",
            MalformedPacket => "Malformed Packet",
            ProtocolError => "Protocol Error",
            ImplementationSpecificError => "Implementation specific error",
            UnsupportedProtocolVersion => "Unsupported Protocol Version",
            ClientIdentifierNotValid => "Client Identifier not valid",
            BadUserNameOrPassword => "Bad User Name or Password",
            NotAuthorized => "Not authorized",
            ServerUnavailable => "Server unavailable",
            ServerBusy => "Server busy",
            Banned => "Banned",
            ServerShuttingDown => "Server shutting down",
            BadAuthenticationMethod => "Bad authentication method",
            KeepAliveTimeout => "Keep Alive timeout",
            SessionTakenOver => "Session taken over",
            TopicFilterInvalid => "Topic Filter invalid",
            TopicNameInvalid => "Topic Name invalid",
            PacketIdentifierInUse => "Packet Identifier in use",
            PacketIdentifierNotFound => "Packet Identifier not found",
            ReceiveMaximumExceeded => "Receive Maximum exceeded",
            TopicAliasInvalid => "Topic Alias invalid",
            PacketTooLarge => "Packet too large",
            MessageRateTooHigh => "Message rate too high",
            QuotaExceeded => "Quota exceeded",
            AdministrativeAction => "Administrative action",
            PayloadFormatInvalid => "Payload format invalid",
            RetainNotSupported => "Retain not supported",
            QoSNotSupported => "QoS not supported",
            UseAnotherServer => "Use another server",
            ServerMoved => "Server moved",
            SharedSubscriptionsNotSupported => "Shared Subscriptions not supported",
            ConnectionRateExceeded => "Connection rate exceeded",
            MaximumConnectTime => "Maximum connect time",
            SubscriptionIdentifiersNotSupported => "Subscription Identifiers not supported",
            WildcardSubscriptionsNotSupported => "Wildcard Subscriptions not supported",
        }
    }

    /// The packets allowed to carry this code, as bits `1 << packet type`.
    fn packets(self) -> u16 {
        use ReasonCode::*;
        match self {
            Success => CONNACK | PUBACK | PUBREC | PUBREL | PUBCOMP | UNSUBACK | AUTH,
            NormalDisconnection | DisconnectWithWillMessage => DISCONNECT,
            GrantedQoS0 | GrantedQoS1 | GrantedQoS2 => SUBACK,
            NoMatchingSubscribers => PUBACK | PUBREC,
            NoSubscriptionExisted => UNSUBACK,
            ContinueAuthentication | ReAuthenticate => AUTH,
            UnspecifiedError | ImplementationSpecificError | NotAuthorized => ACKS_AND_DISCONNECT,
            MalformedPacket | ProtocolError => CONNACK | DISCONNECT,
            UnsupportedProtocolVersion
            | ClientIdentifierNotValid
            | BadUserNameOrPassword
            | ServerUnavailable
            | Banned => CONNACK,
            ServerBusy
            | BadAuthenticationMethod
            | PacketTooLarge
            | RetainNotSupported
            | QoSNotSupported
            | UseAnotherServer
            | ServerMoved
            | ConnectionRateExceeded => CONNACK | DISCONNECT,
            ServerShuttingDown
            | KeepAliveTimeout
            | SessionTakenOver
            | ReceiveMaximumExceeded
            | TopicAliasInvalid
            | MessageRateTooHigh
            | AdministrativeAction
            | MaximumConnectTime => DISCONNECT,
            TopicFilterInvalid => SUBACK | UNSUBACK | DISCONNECT,
            TopicNameInvalid | PayloadFormatInvalid => CONNACK | PUBACK | PUBREC | DISCONNECT,
            PacketIdentifierInUse => PUBACK | PUBREC | SUBACK | UNSUBACK,
            PacketIdentifierNotFound => PUBREL | PUBCOMP,
            QuotaExceeded => CONNACK | PUBACK | PUBREC | SUBACK | DISCONNECT,
            SharedSubscriptionsNotSupported
            | SubscriptionIdentifiersNotSupported
            | WildcardSubscriptionsNotSupported => SUBACK | DISCONNECT,
        }
    }

    /// Whether `packet` may carry this code [MQTT-2.4].
    pub fn allowed_in(self, packet: PacketType) -> bool {
        self.packets() & bit(packet) != 0
    }

    /// The code a `packet` means by `byte`, or `None` if that packet cannot carry it.
    pub fn from_byte(packet: PacketType, byte: u8) -> Option<Self> {
        use ReasonCode::*;
        let code = match byte {
            0x00 => match packet {
                PacketType::Disconnect => NormalDisconnection,
                PacketType::SubAck => GrantedQoS0,
                _ => Success,
            },
            0x01 => GrantedQoS1,
            0x02 => GrantedQoS2,
            0x04 => DisconnectWithWillMessage,
            0x10 => NoMatchingSubscribers,
            0x11 => NoSubscriptionExisted,
            0x18 => ContinueAuthentication,
            0x19 => ReAuthenticate,
            0x80 => UnspecifiedError,
            0x81 => MalformedPacket,
            0x82 => ProtocolError,
            0x83 => ImplementationSpecificError,
            0x84 => UnsupportedProtocolVersion,
            0x85 => ClientIdentifierNotValid,
            0x86 => BadUserNameOrPassword,
            0x87 => NotAuthorized,
            0x88 => ServerUnavailable,
            0x89 => ServerBusy,
            0x8A => Banned,
            0x8B => ServerShuttingDown,
            0x8C => BadAuthenticationMethod,
            0x8D => KeepAliveTimeout,
            0x8E => SessionTakenOver,
            0x8F => TopicFilterInvalid,
            0x90 => TopicNameInvalid,
            0x91 => PacketIdentifierInUse,
            0x92 => PacketIdentifierNotFound,
            0x93 => ReceiveMaximumExceeded,
            0x94 => TopicAliasInvalid,
            0x95 => PacketTooLarge,
            0x96 => MessageRateTooHigh,
            0x97 => QuotaExceeded,
            0x98 => AdministrativeAction,
            0x99 => PayloadFormatInvalid,
            0x9A => RetainNotSupported,
            0x9B => QoSNotSupported,
            0x9C => UseAnotherServer,
            0x9D => ServerMoved,
            0x9E => SharedSubscriptionsNotSupported,
            0x9F => ConnectionRateExceeded,
            0xA0 => MaximumConnectTime,
            0xA1 => SubscriptionIdentifiersNotSupported,
            0xA2 => WildcardSubscriptionsNotSupported,
            _ => return None,
        };
        code.allowed_in(packet).then_some(code)
    }

    /// Whether the code reports a failure (0x80 and above).
    pub fn is_error(self) -> bool {
        self.byte() >= 0x80
    }

    /// The SUBACK code granting `qos`.
    pub fn granted(qos: QoS) -> Self {
        match qos {
            QoS::AtMostOnce => Self::GrantedQoS0,
            QoS::AtLeastOnce => Self::GrantedQoS1,
            QoS::ExactlyOnce => Self::GrantedQoS2,
        }
    }

    /// The QoS a SUBACK code grants, if it is a success.
    pub fn granted_qos(self) -> Option<QoS> {
        match self {
            Self::GrantedQoS0 => Some(QoS::AtMostOnce),
            Self::GrantedQoS1 => Some(QoS::AtLeastOnce),
            Self::GrantedQoS2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02X})", self.name(), self.byte())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packet types that carry reason codes.
    const CARRIERS: [PacketType; 9] = [
        PacketType::ConnAck,
        PacketType::PubAck,
        PacketType::PubRec,
        PacketType::PubRel,
        PacketType::PubComp,
        PacketType::SubAck,
        PacketType::UnsubAck,
        PacketType::Disconnect,
        PacketType::Auth,
    ];

    #[test]
    fn every_code_decodes_back_in_every_packet_that_allows_it() {
        for code in ALL_REASON_CODES {
            let mut carried = false;
            for packet in CARRIERS {
                if code.allowed_in(packet) {
                    carried = true;
                    assert_eq!(ReasonCode::from_byte(packet, code.byte()), Some(code));
                }
            }
            assert!(carried, "{code} is carried by no packet");
            assert_eq!(code.is_error(), code.byte() >= 0x80);
        }
        for packet in CARRIERS {
            for byte in 0..=u8::MAX {
                if let Some(code) = ReasonCode::from_byte(packet, byte) {
                    assert_eq!(code.byte(), byte);
                    assert!(code.allowed_in(packet));
                }
            }
        }
    }

    #[test]
    fn zero_means_what_the_packet_says() {
        assert_eq!(
            ReasonCode::from_byte(PacketType::Disconnect, 0),
            Some(ReasonCode::NormalDisconnection)
        );
        assert_eq!(
            ReasonCode::from_byte(PacketType::SubAck, 0),
            Some(ReasonCode::GrantedQoS0)
        );
        assert_eq!(
            ReasonCode::from_byte(PacketType::PubRel, 0),
            Some(ReasonCode::Success)
        );
    }

    #[test]
    fn codes_are_limited_to_their_packets() {
        let cases = [
            (PacketType::PubRel, 0x10),
            (PacketType::PubRel, 0x80),
            (PacketType::PubAck, 0x92),
            (PacketType::Disconnect, 0x84),
            (PacketType::ConnAck, 0x04),
            (PacketType::SubAck, 0x03),
            (PacketType::Auth, 0x80),
            (PacketType::UnsubAck, 0xA3),
            (PacketType::Publish, 0x00),
        ];
        for (packet, byte) in cases {
            assert_eq!(
                ReasonCode::from_byte(packet, byte),
                None,
                "{packet:?} {byte:#x}"
            );
        }
    }

    #[test]
    fn granted_codes_map_to_qos() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let code = ReasonCode::granted(qos);
            assert_eq!(code.granted_qos(), Some(qos));
            assert_eq!(code.byte(), qos as u8);
        }
        assert_eq!(ReasonCode::NotAuthorized.granted_qos(), None);
        assert_eq!(
            ReasonCode::PacketTooLarge.to_string(),
            "Packet too large (0x95)"
        );
    }
}
