//! The acknowledgements of the publish flows: PUBACK, PUBREC, PUBREL, PUBCOMP [MQTT-3.4 to
//! 3.7], whose MQTT 3.1/3.1.1 body is a packet identifier and nothing else (as is UNSUBACK's
//! [MQTT-3.11]), and whose MQTT 5 body ([`Ack`]) adds a reason code and properties, both
//! omitted in the short forms.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::DecodeError;
use super::fields::FieldReader;
use super::fixed_header::{self, PacketType};
use super::properties::{
    block_len, fit_by_dropping_diagnostics, read_properties, write_block, AckProperties, Place,
};
use super::qos::PacketId;
use super::reason::ReasonCode;

/// Body length of every packet-id-only packet.
const BODY_LEN: usize = 2;

/// Total size of every packet-id-only packet.
pub(crate) const ENCODED_LEN: usize = 2 + BODY_LEN;

/// Decodes the body of a packet-id-only packet: exactly two bytes, a non-zero identifier.
pub(crate) fn decode(packet_type: PacketType, body: Bytes) -> Result<PacketId, DecodeError> {
    let mut reader = FieldReader::new(packet_type.name(), body);
    let packet_id = reader.packet_id()?;
    reader.finish()?;
    Ok(packet_id)
}

/// Appends a packet-id-only packet of `packet_type` (with the flags that type requires).
pub(crate) fn encode(packet_type: PacketType, packet_id: PacketId, out: &mut BytesMut) {
    let first_byte = packet_type.first_byte(packet_type.fixed_flags());
    fixed_header::write(out, first_byte, BODY_LEN);
    out.put_u16(packet_id.get());
}

/// An MQTT 5 PUBACK, PUBREC, PUBREL or PUBCOMP: which exchange, its outcome and diagnostics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The exchange acknowledged.
    pub packet_id: PacketId,
    /// The outcome; one of the codes the packet type may carry.
    pub reason: ReasonCode,
    /// Diagnostics (dropped first when the packet would exceed the receiver's limit).
    pub properties: AckProperties,
}

impl Ack {
    /// A successful acknowledgement without properties (the 2-byte short form).
    pub fn success(packet_id: PacketId) -> Self {
        Self {
            packet_id,
            reason: ReasonCode::Success,
            properties: AckProperties::default(),
        }
    }

    /// Decodes an MQTT 5 acknowledgement body: packet id, then optionally the reason code
    /// (Success when absent) and the properties (none when absent) [MQTT-3.4.2.1].
    pub(crate) fn decode(packet_type: PacketType, body: Bytes) -> Result<Self, DecodeError> {
        let mut reader = FieldReader::new(packet_type.name(), body);
        let packet_id = reader.packet_id()?;
        let mut ack = Self::success(packet_id);
        if reader.is_empty() {
            return Ok(ack);
        }
        let code = reader.u8()?;
        ack.reason =
            ReasonCode::from_byte(packet_type, code).ok_or(DecodeError::InvalidReasonCode {
                packet: packet_type.name(),
                code,
            })?;
        if !reader.is_empty() {
            ack.properties = read_properties(&mut reader, Place::packet(packet_type))?;
        }
        reader.finish()?;
        Ok(ack)
    }

    /// Body length, in the shortest form that says everything.
    fn remaining_len(&self) -> usize {
        if !self.properties.is_empty() {
            BODY_LEN + 1 + block_len(&self.properties)
        } else if self.reason != ReasonCode::Success {
            BODY_LEN + 1
        } else {
            BODY_LEN
        }
    }

    /// Appends the acknowledgement as a `packet_type` packet, in its shortest form.
    pub(crate) fn encode(&self, packet_type: PacketType, out: &mut BytesMut) {
        let first_byte = packet_type.first_byte(packet_type.fixed_flags());
        let remaining = self.remaining_len();
        fixed_header::write(out, first_byte, remaining);
        out.put_u16(self.packet_id.get());
        if remaining > BODY_LEN {
            out.put_u8(self.reason.byte());
        }
        if remaining > BODY_LEN + 1 {
            write_block(&self.properties, out);
        }
    }

    /// Total encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        fixed_header::packet_len(self.remaining_len())
    }

    /// Drops the reason string, then the user properties, until the packet fits the
    /// receiver's maximum packet size [MQTT-3.4.2-2, 3.4.2-3]; returns whether it fits.
    pub fn fit_within(&mut self, max_packet_size: usize) -> bool {
        fit_by_dropping_diagnostics(self, max_packet_size, Self::encoded_len, |ack| {
            let properties = &mut ack.properties;
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

    fn id(value: u16) -> PacketId {
        PacketId::new(value).unwrap()
    }

    #[test]
    fn ack_wire_bytes() {
        let cases: [(Packet, [u8; 4]); 5] = [
            (Packet::PubAck(id(1)), [0x40, 0x02, 0x00, 0x01]),
            (Packet::PubRec(id(0x1234)), [0x50, 0x02, 0x12, 0x34]),
            (Packet::PubRel(id(0xFFFF)), [0x62, 0x02, 0xFF, 0xFF]),
            (Packet::PubComp(id(0x0100)), [0x70, 0x02, 0x01, 0x00]),
            (Packet::UnsubAck(id(7)), [0xB0, 0x02, 0x00, 0x07]),
        ];
        for (packet, wire) in cases {
            assert_wire(&packet, &wire);
        }
    }

    #[test]
    fn malformed_acks_are_refused() {
        for (first, name) in [
            (0x40, "PUBACK"),
            (0x50, "PUBREC"),
            (0x62, "PUBREL"),
            (0x70, "PUBCOMP"),
            (0xB0, "UNSUBACK"),
        ] {
            assert_eq!(
                decode_error(&[first, 0x02, 0x00, 0x00]),
                DecodeError::ZeroPacketId { packet: name }
            );
            assert_eq!(
                decode_error(&[first, 0x01, 0x01]),
                DecodeError::Truncated { packet: name }
            );
            assert_eq!(
                decode_error(&[first, 0x00]),
                DecodeError::Truncated { packet: name }
            );
            assert_eq!(
                decode_error(&[first, 0x03, 0x00, 0x01, 0x00]),
                DecodeError::TrailingBytes {
                    packet: name,
                    extra: 1
                }
            );
            assert_eq!(
                decode_error(&[first ^ 0x02, 0x02, 0x00, 0x01]),
                DecodeError::InvalidFixedHeaderFlags {
                    packet: name,
                    flags: (first ^ 0x02) & 0x0F
                }
            );
        }
    }
}

#[cfg(test)]
mod v5_tests {
    use super::*;
    use crate::protocol::testing::{assert_wire_v5, decode_error_v5, decode_one_v5, text, user};
    use crate::protocol::{Packet, PropertyId};

    fn id(value: u16) -> PacketId {
        PacketId::new(value).unwrap()
    }

    #[test]
    fn v5_ack_wire_bytes_use_the_shortest_form() {
        let with_reason = |packet_id, reason| Ack {
            packet_id,
            reason,
            properties: AckProperties::default(),
        };
        let cases: [(Packet, &[u8]); 4] = [
            (Packet::PubAckV5(Ack::success(id(1))), b"\x40\x02\x00\x01"),
            (
                Packet::PubRecV5(with_reason(id(2), ReasonCode::NoMatchingSubscribers)),
                b"\x50\x03\x00\x02\x10",
            ),
            (
                Packet::PubRelV5(Ack {
                    packet_id: id(3),
                    reason: ReasonCode::Success,
                    properties: AckProperties {
                        reason_string: Some(text("r")),
                        user_properties: Vec::new(),
                    },
                }),
                b"\x62\x08\x00\x03\x00\x04\x1f\x00\x01r",
            ),
            (
                Packet::PubCompV5(with_reason(id(4), ReasonCode::PacketIdentifierNotFound)),
                b"\x70\x03\x00\x04\x92",
            ),
        ];
        for (packet, wire) in cases {
            assert_wire_v5(&packet, wire);
        }
    }

    #[test]
    fn longer_forms_of_a_success_decode_to_the_same_ack() {
        for wire in [&b"\x40\x03\x00\x01\x00"[..], b"\x40\x04\x00\x01\x00\x00"] {
            assert_eq!(decode_one_v5(wire), Packet::PubAckV5(Ack::success(id(1))));
        }
    }

    #[test]
    fn malformed_v5_acks_are_refused() {
        let error = decode_error_v5(b"\x62\x03\x00\x01\x10");
        assert_eq!(
            error,
            DecodeError::InvalidReasonCode {
                packet: "PUBREL",
                code: 0x10
            }
        );
        assert_eq!(
            error.reason_code(),
            crate::protocol::ReasonCode::ProtocolError
        );
        assert_eq!(
            decode_error_v5(b"\x40\x09\x00\x01\x00\x05\x11\x00\x00\x00\x01"),
            DecodeError::PropertyNotAllowed {
                packet: "PUBACK",
                property: PropertyId::SessionExpiryInterval
            }
        );
        assert_eq!(
            decode_error_v5(b"\x40\x05\x00\x01\x00\x00\xff"),
            DecodeError::TrailingBytes {
                packet: "PUBACK",
                extra: 1
            }
        );
        assert_eq!(
            decode_error_v5(b"\x70\x02\x00\x00"),
            DecodeError::ZeroPacketId { packet: "PUBCOMP" }
        );
        assert_eq!(
            decode_error_v5(b"\x70\x01\x00"),
            DecodeError::Truncated { packet: "PUBCOMP" }
        );
    }

    #[test]
    fn an_ack_drops_diagnostics_to_fit() {
        let mut ack = Ack {
            packet_id: id(9),
            reason: ReasonCode::QuotaExceeded,
            properties: AckProperties {
                reason_string: Some(text("over quota")),
                user_properties: vec![user("a", "b")],
            },
        };
        assert_eq!(ack.encoded_len(), 26);
        assert!(ack.fit_within(13));
        assert_eq!(ack.properties.reason_string, None);
        assert_eq!(ack.properties.user_properties.len(), 1);
        assert_eq!(ack.encoded_len(), 13);
        assert!(ack.fit_within(5));
        assert!(ack.properties.is_empty());
        assert_eq!(ack.encoded_len(), 5);
    }
}
