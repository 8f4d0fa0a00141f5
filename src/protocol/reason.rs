//! MQTT 5 reason codes [MQTT-2.4]: the one-byte outcome that CONNACK, PUBACK, PUBREC, PUBREL,
//! PUBCOMP, SUBACK, UNSUBACK, DISCONNECT and AUTH carry. Values below 0x80 report success,
//! 0x80 and above failure. One byte may have several names (0x00 is "Success", "Normal
//! disconnection" or "Granted QoS 0" depending on the packet), so a code is decoded in the
//! context of its packet, and every code knows the packets allowed to carry it.

use std::fmt;

use super::fixed_header::PacketType;
use super::qos::QoS;

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

/// Declares [`ReasonCode`] from one table: each code's documentation, name, wire value,
/// specification name and the packets allowed to carry it, so that no property of a code is
/// listed apart from the others.
macro_rules! reason_codes {
    ($($(#[$doc:meta])* $code:ident = $byte:literal, $name:literal, $packets:expr;)*) => {
        /// Every reason code MQTT 5 defines, by meaning.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ReasonCode {
            $($(#[$doc])* $code,)*
        }

        /// Every code, in wire order: a test checks this list against `byte` and `from_byte`.
        pub const ALL_REASON_CODES: [ReasonCode; [$(ReasonCode::$code),*].len()] =
            [$(ReasonCode::$code),*];

        impl ReasonCode {
            /// The wire value.
            pub fn byte(self) -> u8 {
                match self {
                    $(Self::$code => $byte,)*
                }
            }

            /// The name the specification gives the code, for logs.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$code => $name,)*
                }
            }

            /// The packets allowed to carry this code, as bits `1 << packet type`.
            fn packets(self) -> u16 {
                match self {
                    $(Self::$code => $packets,)*
                }
            }
        }
    };
}

reason_codes! {
    /// 0x00: the operation succeeded (CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, AUTH).
    Success = 0x00, "Success", CONNACK | PUBACK | PUBREC | PUBREL | PUBCOMP | UNSUBACK | AUTH;
    /// 0x00: close the connection normally, without the will (DISCONNECT).
    NormalDisconnection = 0x00, "Normal disconnection", DISCONNECT;
    /// 0x00: subscribed with maximum QoS 0 (SUBACK).
    GrantedQoS0 = 0x00, "Granted QoS 0", SUBACK;
    /// 0x01: subscribed with maximum QoS 1 (SUBACK).
    GrantedQoS1 = 0x01, "Granted QoS 1", SUBACK;
    /// 0x02: subscribed with maximum QoS 2 (SUBACK).
    GrantedQoS2 = 0x02, "Granted QoS 2", SUBACK;
    /// 0x04: the client disconnects but wants its will published (DISCONNECT).
    DisconnectWithWillMessage = 0x04, "Disconnect with Will Message", DISCONNECT;
    /// 0x10: accepted, but nobody subscribes to the topic (PUBACK, PUBREC).
    NoMatchingSubscribers = 0x10, "No matching subscribers", PUBACK | PUBREC;
    /// 0x11: there was no such subscription to remove (UNSUBACK).
    NoSubscriptionExisted = 0x11, "No subscription existed", UNSUBACK;
    /// 0x18: continue the authentication exchange (AUTH).
    ContinueAuthentication = 0x18, "Continue authentication", AUTH;
    /// 0x19: start a re-authentication (AUTH).
    ReAuthenticate = 0x19, "Re-authenticate", AUTH;
    /// 0x80: failed, for no more specific reason.
    UnspecifiedError = 0x80, "Unspecified error", ACKS_AND_DISCONNECT;
    /// 0x81: the packet received does not conform to the specification.
    MalformedPacket = 0x81, "Malformed Packet", CONNACK | DISCONNECT;
    /// 0x82: an unexpected or out-of-order packet, or a field breaking a protocol rule.
    ProtocolError = 0x82, "Protocol Error", CONNACK | DISCONNECT;
    /// 0x83: valid, but this implementation cannot process it.
    ImplementationSpecificError = 0x83, "Implementation specific error", ACKS_AND_DISCONNECT;
    /// 0x84: the server does not speak the protocol version asked for (CONNACK).
    UnsupportedProtocolVersion = 0x84, "Unsupported Protocol Version", CONNACK;
    /// 0x85: the client identifier is valid but not allowed (CONNACK).
    ClientIdentifierNotValid = 0x85, "Client Identifier not valid", CONNACK;
    /// 0x86: the credentials are refused (CONNACK).
    BadUserNameOrPassword = 0x86, "Bad User Name or Password", CONNACK;
    /// 0x87: the client is not authorized to do this.
    NotAuthorized = 0x87, "Not authorized", ACKS_AND_DISCONNECT;
    /// 0x88: the MQTT service is not available (CONNACK).
    ServerUnavailable = 0x88, "Server unavailable", CONNACK;
    /// 0x89: the server is busy; try again later.
    ServerBusy = 0x89, "Server busy", CONNACK | DISCONNECT;
    /// 0x8A: the client is banned (CONNACK).
    Banned = 0x8A, "Banned", CONNACK;
    /// 0x8B: the server is shutting down (DISCONNECT).
    ServerShuttingDown = 0x8B, "Server shutting down", DISCONNECT;
    /// 0x8C: the authentication method is not supported or does not match.
    BadAuthenticationMethod = 0x8C, "Bad authentication method", CONNACK | DISCONNECT;
    /// 0x8D: nothing arrived within 1.5 times the keep-alive (DISCONNECT).
    KeepAliveTimeout = 0x8D, "Keep Alive timeout", DISCONNECT;
    /// 0x8E: another connection with the same client identifier took the session (DISCONNECT).
    SessionTakenOver = 0x8E, "Session taken over", DISCONNECT;
    /// 0x8F: the topic filter is well formed but not accepted.
    TopicFilterInvalid = 0x8F, "Topic Filter invalid", SUBACK | UNSUBACK | DISCONNECT;
    /// 0x90: the topic name is well formed but not accepted.
    TopicNameInvalid = 0x90, "Topic Name invalid", CONNACK | PUBACK | PUBREC | DISCONNECT;
    /// 0x91: the packet identifier is already in use.
    PacketIdentifierInUse = 0x91, "Packet Identifier in use", PUBACK | PUBREC | SUBACK | UNSUBACK;
    /// 0x92: the packet identifier is not known (PUBREL, PUBCOMP).
    PacketIdentifierNotFound = 0x92, "Packet Identifier not found", PUBREL | PUBCOMP;
    /// 0x93: more QoS 1/2 publishes in flight than the receive maximum (DISCONNECT).
    ReceiveMaximumExceeded = 0x93, "Receive Maximum exceeded", DISCONNECT;
    /// 0x94: a topic alias is 0 or above the maximum announced (DISCONNECT).
    TopicAliasInvalid = 0x94, "Topic Alias invalid", DISCONNECT;
    /// 0x95: the packet exceeds the maximum packet size.
    PacketTooLarge = 0x95, "Packet too large", CONNACK | DISCONNECT;
    /// 0x96: the message rate is too high (DISCONNECT).
    MessageRateTooHigh = 0x96, "Message rate too high", DISCONNECT;
    /// 0x97: an administrative quota is exceeded.
    QuotaExceeded = 0x97, "Quota exceeded", CONNACK | PUBACK | PUBREC | SUBACK | DISCONNECT;
    /// 0x98: the connection is closed by an administrator (DISCONNECT).
    AdministrativeAction = 0x98, "Administrative action", DISCONNECT;
    /// 0x99: the payload does not match its payload format indicator.
    PayloadFormatInvalid = 0x99, "Payload format invalid", CONNACK | PUBACK | PUBREC | DISCONNECT;
    /// 0x9A: the server does not support retained messages.
    RetainNotSupported = 0x9A, "Retain not supported", CONNACK | DISCONNECT;
    /// 0x9B: the QoS is above the server's maximum QoS.
    QoSNotSupported = 0x9B, "QoS not supported", CONNACK | DISCONNECT;
    /// 0x9C: the client should use another server, temporarily.
    UseAnotherServer = 0x9C, "Use another server", CONNACK | DISCONNECT;
    /// 0x9D: the client should use another server, permanently.
    ServerMoved = 0x9D, "Server moved", CONNACK | DISCONNECT;
    /// 0x9E: the server does not support shared subscriptions.
    SharedSubscriptionsNotSupported = 0x9E, "Shared Subscriptions not supported", SUBACK | DISCONNECT;
    /// 0x9F: the connection rate limit was exceeded.
    ConnectionRateExceeded = 0x9F, "Connection rate exceeded", CONNACK | DISCONNECT;
    /// 0xA0: the maximum connection time allowed is over (DISCONNECT).
    MaximumConnectTime = 0xA0, "Maximum connect time", DISCONNECT;
    /// 0xA1: the server does not support subscription identifiers.
    SubscriptionIdentifiersNotSupported = 0xA1, "Subscription Identifiers not supported", SUBACK | DISCONNECT;
    /// 0xA2: the server does not support wildcard subscriptions.
    WildcardSubscriptionsNotSupported = 0xA2, "Wildcard Subscriptions not supported", SUBACK | DISCONNECT;
}

impl ReasonCode {
    /// Whether `packet` may carry this code [MQTT-2.4].
    pub fn allowed_in(self, packet: PacketType) -> bool {
        self.packets() & bit(packet) != 0
    }

    /// The code a `packet` means by `byte`, or `None` if that packet cannot carry it. A byte
    /// names one code per packet (0x00 is "Success", "Normal disconnection" or "Granted QoS 0"
    /// depending on the packet), so the first code with that byte the packet allows is the one.
    pub fn from_byte(packet: PacketType, byte: u8) -> Option<Self> {
        ALL_REASON_CODES
            .into_iter()
            .find(|code| code.byte() == byte && code.allowed_in(packet))
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
