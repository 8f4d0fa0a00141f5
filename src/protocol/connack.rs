//! CONNACK [MQTT-3.2]: the server's answer to CONNECT.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::DecodeError;
use super::fields::FieldReader;
use super::fixed_header::{self, PacketType};

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
