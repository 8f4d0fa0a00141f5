//! CONNACK [MQTT-3.2]: the server's answer to CONNECT. MQTT 5's ([`ConnAckV5`]) carries a
//! reason code and the server's limits as properties.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::DecodeError;
use super::fields::FieldReader;
use super::fixed_header::{self, PacketType};
use super::properties::{
    block_len, fit_by_dropping_diagnostics, read_properties, write_block, ConnAckProperties, Place,
};
use super::reason::ReasonCode;

/// Whether the connection was accepted, and if not, why [MQTT-3.2.2.3].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnectReturnCode {
    /// Connection accepted.
    Accepted = 0,
    /// The server does not support the protocol level the client asked for.
    UnacceptableProtocolVersion = 1,
    /// The client identifier is well-formed UTF-8 but not allowed by the server.
    IdentifierRejected = 2,
    /// The network connection is up but the MQTT service is not.
    ServerUnavailable = 3,
    /// The user name or password is malformed.
    BadUserNameOrPassword = 4,
    /// The client is not authorized to connect.
    NotAuthorized = 5,
}

impl ConnectReturnCode {
    /// The code for a wire value, or `None` above 5.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::Accepted,
            1 => Self::UnacceptableProtocolVersion,
            2 => Self::IdentifierRejected,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNameOrPassword,
            5 => Self::NotAuthorized,
            _ => return None,
        })
    }
}

impl From<ConnectReturnCode> for ReasonCode {
    /// The MQTT 5 reason code with the meaning of a 3.1.1 return code.
    fn from(code: ConnectReturnCode) -> Self {
        match code {
            ConnectReturnCode::Accepted => Self::Success,
            ConnectReturnCode::UnacceptableProtocolVersion => Self::UnsupportedProtocolVersion,
            ConnectReturnCode::IdentifierRejected => Self::ClientIdentifierNotValid,
            ConnectReturnCode::ServerUnavailable => Self::ServerUnavailable,
            ConnectReturnCode::BadUserNameOrPassword => Self::BadUserNameOrPassword,
            ConnectReturnCode::NotAuthorized => Self::NotAuthorized,
        }
    }
}

/// A CONNACK. `session_present` must be false when `code` is not `Accepted` [MQTT-3.2.2-4]
/// and for MQTT 3.1 clients, whose CONNACK has no such flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnAck {
    /// The server resumed a stored session for this client.
    pub session_present: bool,
    /// The outcome of the CONNECT.
    pub code: ConnectReturnCode,
}

/// The acknowledge flag bit that carries `session_present`; the other seven are reserved.
const SESSION_PRESENT: u8 = 0x01;

/// Body length of every CONNACK.
const BODY_LEN: usize = 2;

impl ConnAck {
    /// Decodes a CONNACK body: exactly the acknowledge flags and the return code.
    pub(crate) fn decode(body: Bytes) -> Result<Self, DecodeError> {
        let mut reader = FieldReader::new(PacketType::ConnAck.name(), body);
        let flags = reader.u8()?;
        let code = reader.u8()?;
        reader.finish()?;
        if flags & !SESSION_PRESENT != 0 {
            return Err(DecodeError::InvalidConnAckFlags(flags));
        }
        let code =
            ConnectReturnCode::from_u8(code).ok_or(DecodeError::InvalidConnectReturnCode(code))?;
        Ok(Self {
            session_present: flags & SESSION_PRESENT != 0,
            code,
        })
    }

    /// Appends the encoded packet.
    pub fn encode(&self, out: &mut BytesMut) {
        fixed_header::write(out, PacketType::ConnAck.first_byte(0), BODY_LEN);
        out.put_u8(if self.session_present {
            SESSION_PRESENT
        } else {
            0
        });
        out.put_u8(self.code as u8);
    }

    /// Total encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        fixed_header::packet_len(BODY_LEN)
    }
}

/// An MQTT 5 CONNACK [MQTT-3.2]: `session_present` must be false when `reason` is an error
/// [MQTT-3.2.2-6], and a reason of 0x80 or above closes the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnAckV5 {
    /// The server resumed a stored session for this client.
    pub session_present: bool,
    /// The outcome of the CONNECT; one of the codes CONNACK may carry.
    pub reason: ReasonCode,
    /// The server's limits and choices.
    pub properties: ConnAckProperties,
}

impl ConnAckV5 {
    /// Decodes an MQTT 5 CONNACK body: acknowledge flags, reason code, properties.
    pub(crate) fn decode(body: Bytes) -> Result<Self, DecodeError> {
        let packet = PacketType::ConnAck;
        let mut reader = FieldReader::new(packet.name(), body);
        let flags = reader.u8()?;
        if flags & !SESSION_PRESENT != 0 {
            return Err(DecodeError::InvalidConnAckFlags(flags));
        }
        let code = reader.u8()?;
        let reason = ReasonCode::from_byte(packet, code).ok_or(DecodeError::InvalidReasonCode {
            packet: packet.name(),
            code,
        })?;
        let properties = read_properties(&mut reader, Place::packet(packet))?;
        reader.finish()?;
        Ok(Self {
            session_present: flags & SESSION_PRESENT != 0,
            reason,
            properties,
        })
    }

    /// Body length: flags, reason code and the property block.
    fn remaining_len(&self) -> usize {
        BODY_LEN + block_len(&self.properties)
    }

    /// Appends the encoded packet.
    pub fn encode(&self, out: &mut BytesMut) {
        fixed_header::write(out, PacketType::ConnAck.first_byte(0), self.remaining_len());
        out.put_u8(if self.session_present {
            SESSION_PRESENT
        } else {
            0
        });
        out.put_u8(self.reason.byte());
        write_block(&self.properties, out);
    }

    /// Total encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        fixed_header::packet_len(self.remaining_len())
    }

    /// Drops the reason string, then the user properties, until the packet fits the client's
    /// maximum packet size [MQTT-3.2.2-19, 3.2.2-20]; returns whether it fits.
    pub fn fit_within(&mut self, max_packet_size: usize) -> bool {
        fit_by_dropping_diagnostics(self, max_packet_size, Self::encoded_len, |connack| {
            let properties = &mut connack.properties;
            (
                &mut properties.reason_string,
                &mut properties.user_properties,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::{assert_wire, decode_error};
    use crate::protocol::Packet;

    #[test]
    fn connack_wire_bytes() {
        assert_wire(
            &Packet::ConnAck(ConnAck {
                session_present: true,
                code: ConnectReturnCode::Accepted,
            }),
            b"\x20\x02\x01\x00",
        );
        for value in 0..=5u8 {
            let code = ConnectReturnCode::from_u8(value).unwrap();
            assert_eq!(code as u8, value);
            assert_wire(
                &Packet::ConnAck(ConnAck {
                    session_present: false,
                    code,
                }),
                &[0x20, 0x02, 0x00, value],
            );
        }
    }

    #[test]
    fn malformed_connacks_are_refused() {
        assert_eq!(
            decode_error(b"\x20\x02\x02\x00"),
            DecodeError::InvalidConnAckFlags(2)
        );
        assert_eq!(
            decode_error(b"\x20\x02\x00\x06"),
            DecodeError::InvalidConnectReturnCode(6)
        );
        assert_eq!(
            decode_error(b"\x20\x01\x00"),
            DecodeError::Truncated { packet: "CONNACK" }
        );
        assert_eq!(
            decode_error(b"\x20\x03\x00\x00\x00"),
            DecodeError::TrailingBytes {
                packet: "CONNACK",
                extra: 1
            }
        );
        assert_eq!(
            decode_error(b"\x22\x02\x00\x00"),
            DecodeError::InvalidFixedHeaderFlags {
                packet: "CONNACK",
                flags: 2
            }
        );
    }
}

#[cfg(test)]
mod v5_tests {
    use super::*;
    use crate::protocol::testing::{assert_wire_v5, decode_error_v5, text, user};
    use crate::protocol::Packet;

    #[test]
    fn v5_connack_wire_bytes() {
        assert_wire_v5(
            &Packet::ConnAckV5(ConnAckV5 {
                session_present: true,
                reason: ReasonCode::Success,
                properties: ConnAckProperties::default(),
            }),
            b"\x20\x03\x01\x00\x00",
        );
        assert_wire_v5(
            &Packet::ConnAckV5(ConnAckV5 {
                session_present: false,
                reason: ReasonCode::NotAuthorized,
                properties: ConnAckProperties {
                    reason_string: Some(text("no")),
                    ..ConnAckProperties::default()
                },
            }),
            b"\x20\x08\x00\x87\x05\x1f\x00\x02no",
        );
    }

    #[test]
    fn malformed_v5_connacks_are_refused() {
        let error = decode_error_v5(b"\x20\x03\x00\x01\x00");
        assert_eq!(
            error,
            DecodeError::InvalidReasonCode {
                packet: "CONNACK",
                code: 1
            }
        );
        assert_eq!(error.reason_code(), ReasonCode::ProtocolError);
        assert_eq!(
            decode_error_v5(b"\x20\x03\x02\x00\x00"),
            DecodeError::InvalidConnAckFlags(2)
        );
        // The property length is not optional in a CONNACK.
        assert_eq!(
            decode_error_v5(b"\x20\x02\x00\x00"),
            DecodeError::Truncated { packet: "CONNACK" }
        );
    }

    #[test]
    fn diagnostics_are_dropped_to_fit_the_client_limit() {
        let full = ConnAckV5 {
            session_present: false,
            reason: ReasonCode::Banned,
            properties: ConnAckProperties {
                reason_string: Some(text(&"r".repeat(100))),
                user_properties: vec![user("k", &"v".repeat(50))],
                ..ConnAckProperties::default()
            },
        };
        let mut connack = full.clone();
        assert!(connack.fit_within(full.encoded_len()));
        assert_eq!(connack, full);
        assert!(connack.fit_within(full.encoded_len() - 1));
        assert_eq!(connack.properties.reason_string, None);
        assert_eq!(connack.properties.user_properties.len(), 1);
        let mut connack = full.clone();
        assert!(connack.fit_within(5));
        assert_eq!(connack.encoded_len(), 5);
        assert!(!connack.fit_within(4));
    }

    #[test]
    fn return_codes_have_reason_codes() {
        for value in 0..=5u8 {
            let code = ConnectReturnCode::from_u8(value).unwrap();
            let reason = ReasonCode::from(code);
            assert!(reason.allowed_in(PacketType::ConnAck));
            assert_eq!(reason.is_error(), code != ConnectReturnCode::Accepted);
        }
    }
}
