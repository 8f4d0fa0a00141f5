//! UNSUBSCRIBE [MQTT-3.10] (its answer, UNSUBACK, is a packet-id-only packet: see `ack`).

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::error::DecodeError;
use super::fields::{field_len, put_binary, FieldReader};
use super::fixed_header::{self, PacketType};
use super::qos::PacketId;
use crate::topic::TopicFilter;

/// A request to remove one or more subscriptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Echoed by the UNSUBACK.
    pub packet_id: PacketId,
    /// The filters to remove, compared character by character with existing subscriptions
    /// (never empty once decoded).
    pub filters: SmallVec<[TopicFilter; 4]>,
}

impl Unsubscribe {
    /// Decodes an UNSUBSCRIBE body: a packet id, then at least one topic filter
    /// [MQTT-3.10.3-2] filling the body.
    pub(crate) fn decode(body: Bytes) -> Result<Self, DecodeError> {
        let mut reader = FieldReader::new(PacketType::Unsubscribe.name(), body);
        let packet_id = reader.packet_id()?;
        let mut filters = SmallVec::new();
        while !reader.is_empty() {
            filters.push(reader.topic_filter()?);
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptyUnsubscribe);
        }
        Ok(Self { packet_id, filters })
    }

    /// Appends the encoded packet.
    pub fn encode(&self, out: &mut BytesMut) {
        let remaining = 2 + self
            .filters
            .iter()
            .map(|filter| field_len(filter.as_bytes().len()))
            .sum::<usize>();
        let packet_type = PacketType::Unsubscribe;
        fixed_header::write(
            out,
            packet_type.first_byte(packet_type.fixed_flags()),
            remaining,
        );
        out.put_u16(self.packet_id.get());
        for filter in &self.filters {
            put_binary(out, filter.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use smallvec::smallvec;

    use super::*;
    use crate::protocol::testing::{assert_wire, decode_error};
    use crate::protocol::Packet;
    use crate::topic::TopicError;

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::try_from(text).unwrap()
    }

    #[test]
    fn unsubscribe_wire_bytes() {
        assert_wire(
            &Packet::Unsubscribe(Unsubscribe {
                packet_id: PacketId::new(0x0A0B).unwrap(),
                filters: smallvec![filter("a/#"), filter("+")],
            }),
            b"\xa2\x0a\x0a\x0b\x00\x03a/#\x00\x01+",
        );
    }

    #[test]
    fn malformed_unsubscribes_are_refused() {
        let cases: [(&[u8], DecodeError); 6] = [
            (b"\xa2\x02\x00\x01", DecodeError::EmptyUnsubscribe),
            (
                b"\xa2\x05\x00\x00\x00\x01a",
                DecodeError::ZeroPacketId {
                    packet: "UNSUBSCRIBE",
                },
            ),
            (
                b"\xa2\x05\x00\x01\x00\x02a",
                DecodeError::Truncated {
                    packet: "UNSUBSCRIBE",
                },
            ),
            (
                b"\xa2\x06\x00\x01\x00\x02+a",
                DecodeError::InvalidTopic(TopicError::MisplacedSingleLevelWildcard),
            ),
            (
                b"\xa2\x04\x00\x01\x00\x00",
                DecodeError::InvalidTopic(TopicError::Empty),
            ),
            (
                b"\xa0\x05\x00\x01\x00\x01a",
                DecodeError::InvalidFixedHeaderFlags {
                    packet: "UNSUBSCRIBE",
                    flags: 0,
                },
            ),
        ];
        for (wire, expected) in cases {
            assert_eq!(decode_error(wire), expected, "{wire:x?}");
        }
    }
}
