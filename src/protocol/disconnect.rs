//! The MQTT 5 DISCONNECT [MQTT-3.14]: sent by either side, with a reason code and properties,
//! both omitted when the reason is Normal disconnection and there are no properties. (The
//! MQTT 3.1/3.1.1 DISCONNECT has no body: see `empty`.) Its layout, a reason code then a
//! property block, each optional, is shared with AUTH.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::DecodeError;
use super::fields::FieldReader;
use super::fixed_header::{self, PacketType};
use super::properties::{
    block_len, fit_by_dropping_diagnostics, read_properties, write_block, DisconnectProperties,
    Place, PropertySet,
};
use super::reason::ReasonCode;

/// An MQTT 5 DISCONNECT: why the connection ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// Why; one of the codes DISCONNECT may carry (Disconnect with Will Message keeps the will).
    pub reason: ReasonCode,
    /// Session expiry update, diagnostics, server reference.
    pub properties: DisconnectProperties,
}

impl Disconnect {
    /// A disconnect with `reason` and no properties.
    pub fn new(reason: ReasonCode) -> Self {
        Self {
            reason,
            properties: DisconnectProperties::default(),
        }
    }

    /// Decodes an MQTT 5 DISCONNECT body.
    pub(crate) fn decode(body: Bytes) -> Result<Self, DecodeError> {
        let (reason, properties) = decode_reason_and_properties(
            PacketType::Disconnect,
            ReasonCode::NormalDisconnection,
            body,
        )?;
        Ok(Self { reason, properties })
    }

    /// Appends the encoded packet, in its shortest form.
    pub fn encode(&self, out: &mut BytesMut) {
        encode_reason_and_properties(
            PacketType::Disconnect,
            self.reason,
            ReasonCode::NormalDisconnection,
            &self.properties,
            out,
        );
    }

    /// Total encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        fixed_header::packet_len(reason_and_properties_len(
            self.reason,
            ReasonCode::NormalDisconnection,
            &self.properties,
        ))
    }

    /// Drops the reason string, then the user properties, until the packet fits the
    /// receiver's maximum packet size [MQTT-3.14.2-3, 3.14.2-4]; returns whether it fits.
    pub fn fit_within(&mut self, max_packet_size: usize) -> bool {
        fit_by_dropping_diagnostics(self, max_packet_size, Self::encoded_len, |disconnect| {
            let properties = &mut disconnect.properties;
            (
                &mut properties.reason_string,
                &mut properties.user_properties,
            )
        })
    }
}

/// Decodes a body made of an optional reason code (`default` when absent) and an optional
/// property block (empty when absent) [MQTT-3.14.2.1, 3.15.2.1].
pub(crate) fn decode_reason_and_properties<S: PropertySet>(
    packet: PacketType,
    default: ReasonCode,
    body: Bytes,
) -> Result<(ReasonCode, S), DecodeError> {
    let mut reader = FieldReader::new(packet.name(), body);
    if reader.is_empty() {
        return Ok((default, S::default()));
    }
    let code = reader.u8()?;
    let reason = ReasonCode::from_byte(packet, code).ok_or(DecodeError::InvalidReasonCode {
        packet: packet.name(),
        code,
    })?;
    let properties = if reader.is_empty() {
        S::default()
    } else {
        read_properties(&mut reader, Place::packet(packet))?
    };
    reader.finish()?;
    Ok((reason, properties))
}

/// Body length of the shortest form: nothing when the reason is `default` and there are no
/// properties, the reason alone when there are no properties, else both.
pub(crate) fn reason_and_properties_len<S: PropertySet>(
    reason: ReasonCode,
    default: ReasonCode,
    properties: &S,
) -> usize {
    let block = block_len(properties);
    if block > 1 {
        1 + block
    } else if reason != default {
        1
    } else {
        0
    }
}

/// Appends a packet of that layout, in its shortest form.
pub(crate) fn encode_reason_and_properties<S: PropertySet>(
    packet: PacketType,
    reason: ReasonCode,
    default: ReasonCode,
    properties: &S,
    out: &mut BytesMut,
) {
    let remaining = reason_and_properties_len(reason, default, properties);
    fixed_header::write(out, packet.first_byte(0), remaining);
    if remaining > 0 {
        out.put_u8(reason.byte());
    }
    if remaining > 1 {
        write_block(properties, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::{assert_wire_v5, decode_error_v5, decode_one_v5, text};
    use crate::protocol::Packet;

    #[test]
    fn v5_disconnect_wire_bytes_use_the_shortest_form() {
        assert_wire_v5(
            &Packet::DisconnectV5(Disconnect::new(ReasonCode::NormalDisconnection)),
            b"\xe0\x00",
        );
        assert_wire_v5(
            &Packet::DisconnectV5(Disconnect::new(ReasonCode::DisconnectWithWillMessage)),
            b"\xe0\x01\x04",
        );
        assert_wire_v5(
            &Packet::DisconnectV5(Disconnect {
                reason: ReasonCode::ServerShuttingDown,
                properties: DisconnectProperties {
                    reason_string: Some(text("bye")),
                    ..DisconnectProperties::default()
                },
            }),
            b"\xe0\x08\x8b\x06\x1f\x00\x03bye",
        );
        assert_eq!(
            decode_one_v5(b"\xe0\x02\x00\x00"),
            Packet::DisconnectV5(Disconnect::new(ReasonCode::NormalDisconnection))
        );
    }

    #[test]
    fn malformed_v5_disconnects_are_refused() {
        for code in [0x01, 0x84, 0x10, 0xA3] {
            let error = decode_error_v5(&[0xE0, 0x01, code]);
            assert_eq!(
                error,
                DecodeError::InvalidReasonCode {
                    packet: "DISCONNECT",
                    code
                }
            );
            assert_eq!(error.reason_code(), ReasonCode::ProtocolError);
        }
        assert_eq!(
            decode_error_v5(b"\xe0\x03\x00\x00\x00"),
            DecodeError::TrailingBytes {
                packet: "DISCONNECT",
                extra: 1
            }
        );
        assert_eq!(
            decode_error_v5(b"\xe1\x00"),
            DecodeError::InvalidFixedHeaderFlags {
                packet: "DISCONNECT",
                flags: 1
            }
        );
    }

    #[test]
    fn a_disconnect_drops_diagnostics_to_fit() {
        let mut disconnect = Disconnect {
            reason: ReasonCode::AdministrativeAction,
            properties: DisconnectProperties {
                reason_string: Some(text("kicked")),
                server_reference: Some(text("s")),
                ..DisconnectProperties::default()
            },
        };
        assert!(disconnect.fit_within(8));
        assert_eq!(disconnect.properties.reason_string, None);
        assert_eq!(disconnect.properties.server_reference, Some(text("s")));
        assert!(!disconnect.fit_within(7));
    }
}
