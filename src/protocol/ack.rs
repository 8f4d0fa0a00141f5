//! The packets whose body is a packet identifier and nothing else: PUBACK, PUBREC, PUBREL,
//! PUBCOMP [MQTT-3.4 to 3.7] and UNSUBACK [MQTT-3.11].

use bytes::{BufMut, Bytes, BytesMut};

use super::error::DecodeError;
use super::fields::FieldReader;
use super::fixed_header::{self, PacketType};
use super::qos::PacketId;

/// Body length of every packet-id-only packet.
const BODY_LEN: usize = 2;

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
