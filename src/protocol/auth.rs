//! AUTH [MQTT-3.15]: the MQTT 5 enhanced authentication exchange, in either direction, after
//! a CONNECT that named an authentication method (and later, for re-authentication). Its
//! reason code and properties are omitted when the reason is Success without properties.

use bytes::{Bytes, BytesMut};

use super::disconnect::{
    decode_reason_and_properties, encode_reason_and_properties, reason_and_properties_len,
};
use super::error::DecodeError;
use super::fixed_header::{self, PacketType};
use super::properties::{fit_by_dropping_diagnostics, AuthProperties};
use super::reason::ReasonCode;

/// One step of an enhanced authentication exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    /// Success, Continue authentication or Re-authenticate.
    pub reason: ReasonCode,
    /// The method, this step's data and diagnostics.
    pub properties: AuthProperties,
}

impl Auth {
    /// Decodes an AUTH body.
    pub(crate) fn decode(body: Bytes) -> Result<Self, DecodeError> {
        let (reason, properties) =
            decode_reason_and_properties(PacketType::Auth, ReasonCode::Success, body)?;
        Ok(Self { reason, properties })
    }

    /// Appends the encoded packet, in its shortest form.
    pub fn encode(&self, out: &mut BytesMut) {
        encode_reason_and_properties(
            PacketType::Auth,
            self.reason,
            ReasonCode::Success,
            &self.properties,
            out,
        );
    }

    /// Total encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        fixed_header::packet_len(reason_and_properties_len(
            self.reason,
            ReasonCode::Success,
            &self.properties,
        ))
    }

    /// Drops the reason string, then the user properties, until the packet fits the
    /// receiver's maximum packet size [MQTT-3.15.2-2, 3.15.2-3]; returns whether it fits.
    pub fn fit_within(&mut self, max_packet_size: usize) -> bool {
        fit_by_dropping_diagnostics(self, max_packet_size, Self::encoded_len, |auth| {
            let properties = &mut auth.properties;
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
    use crate::protocol::testing::{assert_wire_v5, decode_error, decode_error_v5, text};
    use crate::protocol::Packet;

    #[test]
    fn auth_wire_bytes() {
        assert_wire_v5(
            &Packet::Auth(Auth {
                reason: ReasonCode::Success,
                properties: AuthProperties::default(),
            }),
            b"\xf0\x00",
        );
        assert_wire_v5(
            &Packet::Auth(Auth {
                reason: ReasonCode::ContinueAuthentication,
                properties: AuthProperties {
                    authentication_method: Some(text("m")),
                    authentication_data: Some(Bytes::from_static(b"d")),
                    ..AuthProperties::default()
                },
            }),
            b"\xf0\x0a\x18\x08\x15\x00\x01m\x16\x00\x01d",
        );
        assert_wire_v5(
            &Packet::Auth(Auth {
                reason: ReasonCode::ReAuthenticate,
                properties: AuthProperties::default(),
            }),
            b"\xf0\x01\x19",
        );
    }

    #[test]
    fn malformed_auths_are_refused() {
        assert_eq!(
            decode_error_v5(b"\xf0\x01\x80"),
            DecodeError::InvalidReasonCode {
                packet: "AUTH",
                code: 0x80
            }
        );
        assert_eq!(
            decode_error_v5(b"\xf2\x00"),
            DecodeError::InvalidFixedHeaderFlags {
                packet: "AUTH",
                flags: 2
            }
        );
        // Outside MQTT 5, type 15 is reserved.
        assert_eq!(
            decode_error(b"\xf0\x00"),
            DecodeError::ReservedPacketType(15)
        );
    }
}
