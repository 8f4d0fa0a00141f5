//! Why bytes received from a peer are not a valid MQTT packet. Every variant is logged when the
//! broker closes the connection, so each message names the packet and the rule broken, and
//! maps to the MQTT 5 reason code the connection reports it with ([`DecodeError::reason_code`]):
//! this is the one place that decides between Malformed Packet and Protocol Error.

use thiserror::Error;

use super::connack::ConnectReturnCode;
use super::properties::PropertyId;
use super::reason::ReasonCode;
use crate::topic::TopicError;

/// A malformed or refused packet. Decoding stops at the first problem found; the connection
/// that sent it must be closed (after a CONNACK for [`DecodeError::UnsupportedProtocolLevel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The fixed header announces more bytes than the configured limit; refused before the
    /// body is buffered.
    #[error("packet too large: {size} bytes, max_packet_size is {max}")]
    PacketTooLarge {
        /// Fixed header plus remaining length, in bytes.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// The remaining length continues past its fourth byte [MQTT-2.2.3].
    #[error("remaining length is encoded in more than 4 bytes")]
    MalformedRemainingLength,
    /// Packet types 0 and 15 are reserved [MQTT-2.2.1].
    #[error("packet type {0} is reserved")]
    ReservedPacketType(u8),
    /// The low nibble of the first byte is not what the packet type requires [MQTT-2.2.2-2].
    #[error("{packet} fixed header has invalid flags 0b{flags:04b}")]
    InvalidFixedHeaderFlags {
        /// Name of the packet type.
        packet: &'static str,
        /// The four flag bits received.
        flags: u8,
    },
    /// The protocol name is valid but its level is not one this broker speaks; the server must
    /// answer with CONNACK return code 1 before closing [MQTT-3.1.2-2].
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    /// The CONNECT protocol name is neither "MQTT" (3.1.1, 5) nor "MQIsdp" (3.1)
    /// [MQTT-3.1.2-1].
    #[error("CONNECT protocol name is neither \"MQTT\" nor \"MQIsdp\"")]
    InvalidProtocolName,
    /// The CONNECT flags byte breaks one of the rules of [MQTT-3.1.2].
    #[error("CONNECT flags 0x{flags:02x} are invalid: {reason}")]
    InvalidConnectFlags {
        /// The flags byte received.
        flags: u8,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A UTF-8 string field is not well-formed UTF-8 [MQTT-1.5.3-1].
    #[error("{field} is not well-formed UTF-8")]
    InvalidUtf8 {
        /// The field, e.g. "CONNECT client identifier".
        field: &'static str,
    },
    /// A UTF-8 string field contains U+0000 [MQTT-1.5.3-2].
    #[error("{field} contains the null character U+0000")]
    NullCharacter {
        /// The field, e.g. "CONNECT user name".
        field: &'static str,
    },
    /// A topic name (PUBLISH, will) or topic filter (SUBSCRIBE, UNSUBSCRIBE) is invalid.
    #[error("invalid topic: {0}")]
    InvalidTopic(#[from] TopicError),
    /// A QoS field holds 3, which no version of MQTT defines [MQTT-3.3.1-4].
    #[error("QoS {0} is invalid (must be 0, 1 or 2)")]
    InvalidQoS(u8),
    /// A packet identifier is 0 [MQTT-2.3.1-1].
    #[error("{packet} packet identifier is 0")]
    ZeroPacketId {
        /// Name of the packet type.
        packet: &'static str,
    },
    /// A QoS 0 PUBLISH has its DUP flag set [MQTT-3.3.1-2].
    #[error("PUBLISH with QoS 0 has the DUP flag set")]
    DupOnQoS0,
    /// A SUBSCRIBE carries no topic filter [MQTT-3.8.3-3].
    #[error("SUBSCRIBE contains no topic filter")]
    EmptySubscribe,
    /// An UNSUBSCRIBE carries no topic filter [MQTT-3.10.3-2].
    #[error("UNSUBSCRIBE contains no topic filter")]
    EmptyUnsubscribe,
    /// A SUBACK carries no return code (it must answer at least one filter) [MQTT-3.9.3].
    #[error("SUBACK contains no return code")]
    EmptySubAck,
    /// A SUBSCRIBE requested-QoS byte has its reserved upper six bits set [MQTT-3.8.3-4].
    #[error("SUBSCRIBE requested QoS byte 0x{0:02x} has reserved bits set")]
    InvalidSubscriptionOptions(u8),
    /// A SUBACK return code is none of 0, 1, 2 and 0x80 [MQTT-3.9.3-2].
    #[error("SUBACK return code 0x{0:02x} is invalid")]
    InvalidSubAckReturnCode(u8),
    /// The CONNACK acknowledge flags have reserved bits set [MQTT-3.2.2.1].
    #[error("CONNACK acknowledge flags 0x{0:02x} have reserved bits set")]
    InvalidConnAckFlags(u8),
    /// The CONNACK return code is above 5 [MQTT-3.2.2.3].
    #[error("CONNACK return code {0} is invalid")]
    InvalidConnectReturnCode(u8),
    /// A variable byte integer continues past its fourth byte [MQTT-1.5.5].
    #[error("{packet} has a variable byte integer longer than 4 bytes")]
    MalformedVariableByteInteger {
        /// Name of the packet type.
        packet: &'static str,
    },
    /// A property identifier MQTT 5 does not define [MQTT-2.2.2.2].
    #[error("{packet} properties contain unknown property identifier {id}")]
    UnknownProperty {
        /// Name of the packet type (or "CONNECT will").
        packet: &'static str,
        /// The identifier received.
        id: u32,
    },
    /// A property this packet may not carry [MQTT-2.2.2.2].
    #[error("{packet} may not carry the {} property", property.name())]
    PropertyNotAllowed {
        /// Name of the packet type (or "CONNECT will").
        packet: &'static str,
        /// The property received.
        property: PropertyId,
    },
    /// A second copy of a property that may appear once.
    #[error("{packet} carries the {} property more than once", property.name())]
    DuplicateProperty {
        /// Name of the packet type (or "CONNECT will").
        packet: &'static str,
        /// The property repeated.
        property: PropertyId,
    },
    /// A property value out of its range: 0 for receive maximum, maximum packet size, topic
    /// alias or subscription identifier; not 0 or 1 for a boolean, the payload format or the
    /// maximum QoS.
    #[error("{packet} {} property has invalid value {value}", property.name())]
    InvalidPropertyValue {
        /// Name of the packet type (or "CONNECT will").
        packet: &'static str,
        /// The property.
        property: PropertyId,
        /// The value received.
        value: u32,
    },
    /// The response topic is not a valid topic name [MQTT-3.3.2-14].
    #[error("{packet} response topic is invalid: {error}")]
    InvalidResponseTopic {
        /// Name of the packet type (or "CONNECT will").
        packet: &'static str,
        /// Why the topic is invalid.
        error: TopicError,
    },
    /// Authentication data without an authentication method [MQTT-3.1.2.11.10].
    #[error("{packet} carries authentication data without an authentication method")]
    AuthenticationDataWithoutMethod {
        /// Name of the packet type.
        packet: &'static str,
    },
    /// A reason code this packet may not carry [MQTT-2.4].
    #[error("{packet} reason code 0x{code:02x} is invalid")]
    InvalidReasonCode {
        /// Name of the packet type.
        packet: &'static str,
        /// The code received.
        code: u8,
    },
    /// An MQTT 5 PUBLISH with an empty topic name and no topic alias [MQTT-3.3.2.1].
    #[error("PUBLISH has an empty topic name and no topic alias")]
    EmptyTopicWithoutAlias,
    /// A client sent a PUBLISH carrying subscription identifiers [MQTT-3.3.4-6].
    #[error("PUBLISH from a client carries a subscription identifier")]
    SubscriptionIdFromClient,
    /// An MQTT 5 subscription asks for maximum QoS 3 [MQTT-3.8.3.1].
    #[error("SUBSCRIBE asks for maximum QoS 3")]
    InvalidMaximumQoS,
    /// An MQTT 5 subscription has retain handling 3 [MQTT-3.8.3.1].
    #[error("SUBSCRIBE has retain handling 3")]
    InvalidRetainHandling,
    /// A shared subscription with the no-local option [MQTT-3.8.3-4].
    #[error("SUBSCRIBE sets no local on a shared subscription")]
    NoLocalOnSharedSubscription,
    /// An UNSUBACK carries no reason code (it must answer at least one filter) [MQTT-3.11.3].
    #[error("UNSUBACK contains no reason code")]
    EmptyUnsubAck,
    /// A field runs past the end announced by the remaining length.
    #[error("{packet} field runs past the end of the packet")]
    Truncated {
        /// Name of the packet type.
        packet: &'static str,
    },
    /// The remaining length is longer than the packet's fields.
    #[error("{packet} has {extra} unexpected bytes after its last field")]
    TrailingBytes {
        /// Name of the packet type.
        packet: &'static str,
        /// How many bytes are left over.
        extra: usize,
    },
}

impl DecodeError {
    /// Whether this is the one error the server answers (with CONNACK code 1) before closing.
    pub fn is_protocol_level(&self) -> bool {
        matches!(self, Self::UnsupportedProtocolLevel(_))
    }

    /// The CONNACK return code the server must send before closing, if any.
    pub fn connack_code(&self) -> Option<ConnectReturnCode> {
        self.is_protocol_level()
            .then_some(ConnectReturnCode::UnacceptableProtocolVersion)
    }

    /// The MQTT 5 reason code this failure is reported with: in a CONNACK when it is the
    /// CONNECT that failed, in a DISCONNECT otherwise [MQTT-4.13]. Malformed Packet (0x81) for
    /// bytes that do not follow the packet's layout, Protocol Error (0x82) for well-formed
    /// fields that break a rule, and the specific codes for a packet too large (0x95), an
    /// unknown protocol (0x84) and an invalid topic alias (0x94).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            Self::UnsupportedProtocolLevel(_) | Self::InvalidProtocolName => {
                ReasonCode::UnsupportedProtocolVersion
            }
            Self::InvalidPropertyValue {
                property: PropertyId::TopicAlias,
                ..
            } => ReasonCode::TopicAliasInvalid,
            Self::InvalidResponseTopic {
                error: TopicError::InvalidUtf8 | TopicError::NullCharacter,
                ..
            } => ReasonCode::MalformedPacket,
            Self::ZeroPacketId { .. }
            | Self::EmptySubscribe
            | Self::EmptyUnsubscribe
            | Self::EmptySubAck
            | Self::EmptyUnsubAck
            | Self::DuplicateProperty { .. }
            | Self::InvalidPropertyValue { .. }
            | Self::InvalidResponseTopic { .. }
            | Self::AuthenticationDataWithoutMethod { .. }
            | Self::InvalidReasonCode { .. }
            | Self::EmptyTopicWithoutAlias
            | Self::SubscriptionIdFromClient
            | Self::InvalidMaximumQoS
            | Self::InvalidRetainHandling
            | Self::NoLocalOnSharedSubscription => ReasonCode::ProtocolError,
            Self::MalformedRemainingLength
            | Self::ReservedPacketType(_)
            | Self::InvalidFixedHeaderFlags { .. }
            | Self::InvalidConnectFlags { .. }
            | Self::InvalidUtf8 { .. }
            | Self::NullCharacter { .. }
            | Self::InvalidTopic(_)
            | Self::InvalidQoS(_)
            | Self::DupOnQoS0
            | Self::InvalidSubscriptionOptions(_)
            | Self::InvalidSubAckReturnCode(_)
            | Self::InvalidConnAckFlags(_)
            | Self::InvalidConnectReturnCode(_)
            | Self::MalformedVariableByteInteger { .. }
            | Self::UnknownProperty { .. }
            | Self::PropertyNotAllowed { .. }
            | Self::Truncated { .. }
            | Self::TrailingBytes { .. } => ReasonCode::MalformedPacket,
        }
    }
}
