//! Why bytes received from a peer are not a valid MQTT packet. Every variant is logged when the
//! broker closes the connection, so each message names the packet and the rule broken.

use thiserror::Error;

use super::connack::ConnectReturnCode;
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
    /// The CONNECT protocol name is neither "MQTT" (3.1.1) nor "MQIsdp" (3.1) [MQTT-3.1.2-1].
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
}
