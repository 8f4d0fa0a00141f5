//! UNSUBSCRIBE [MQTT-3.10] and, for MQTT 5, its answer [`UnsubAck`] [MQTT-3.11] with one
//! reason code per filter (the MQTT 3.1.1 UNSUBACK is a packet-id-only packet: see `ack`).

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::error::DecodeError;
use super::fields::{field_len, put_binary, FieldReader};
use super::fixed_header::{self, PacketType};
use super::properties::{
    block_len, fit_by_dropping_diagnostics, read_properties, write_block, AckProperties, Place,
    UnsubscribeProperties,
};
use super::qos::PacketId;
use super::reason::ReasonCode;
use super::subscribe::{decode_reason_list, encode_reason_list};
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

    /// Total encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        fixed_header::packet_len(
            2 + self
                .filters
                .iter()
                .map(|filter| field_len(filter.as_bytes().len()))
                .sum::<usize>(),
        )
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

/// An MQTT 5 UNSUBSCRIBE: the filters to remove, and properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubscribeV5 {
    /// Echoed by the UNSUBACK.
    pub packet_id: PacketId,
    /// User properties.
    pub properties: UnsubscribeProperties,
    /// The filters to remove (never empty once decoded).
    pub filters: SmallVec<[TopicFilter; 4]>,
}

impl UnsubscribeV5 {
    /// Decodes an MQTT 5 UNSUBSCRIBE body: packet id, properties, at least one filter.
    pub(crate) fn decode(body: Bytes) -> Result<Self, DecodeError> {
        let packet = PacketType::Unsubscribe;
        let mut reader = FieldReader::new(packet.name(), body);
        let packet_id = reader.packet_id()?;
        let properties = read_properties(&mut reader, Place::packet(packet))?;
        let mut filters = SmallVec::new();
        while !reader.is_empty() {
            filters.push(reader.topic_filter()?);
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptyUnsubscribe);
        }
        Ok(Self {
            packet_id,
            properties,
            filters,
        })
    }

    /// Body length: packet id, properties, filters.
    fn remaining_len(&self) -> usize {
        2 + block_len(&self.properties)
            + self
                .filters
                .iter()
                .map(|filter| field_len(filter.as_bytes().len()))
                .sum::<usize>()
    }

    /// Appends the encoded packet.
    pub fn encode(&self, out: &mut BytesMut) {
        let packet_type = PacketType::Unsubscribe;
        fixed_header::write(
            out,
            packet_type.first_byte(packet_type.fixed_flags()),
            self.remaining_len(),
        );
        out.put_u16(self.packet_id.get());
        write_block(&self.properties, out);
        for filter in &self.filters {
            put_binary(out, filter.as_bytes());
        }
    }

    /// Total encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        fixed_header::packet_len(self.remaining_len())
    }
}

/// An MQTT 5 UNSUBACK: one reason code per filter of the UNSUBSCRIBE, in the same order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubAck {
    /// The UNSUBSCRIBE's packet id.
    pub packet_id: PacketId,
    /// Diagnostics.
    pub properties: AckProperties,
    /// One code per filter [MQTT-3.10.4-5]: Success, No subscription existed, or a failure.
    pub reason_codes: SmallVec<[ReasonCode; 4]>,
}

impl UnsubAck {
    /// Decodes an MQTT 5 UNSUBACK body: packet id, properties, at least one reason code.
    pub(crate) fn decode(body: Bytes) -> Result<Self, DecodeError> {
        let (packet_id, properties, reason_codes) =
            decode_reason_list(PacketType::UnsubAck, body, DecodeError::EmptyUnsubAck)?;
        Ok(Self {
            packet_id,
            properties,
            reason_codes,
        })
    }

    /// Appends the encoded packet.
    pub fn encode(&self, out: &mut BytesMut) {
        encode_reason_list(
            PacketType::UnsubAck,
            self.packet_id,
            &self.properties,
            &self.reason_codes,
            out,
        );
    }

    /// Total encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        fixed_header::packet_len(2 + block_len(&self.properties) + self.reason_codes.len())
    }

    /// Drops the reason string, then the user properties, until the packet fits the client's
    /// maximum packet size [MQTT-3.11.2-1, 3.11.2-2]; returns whether it fits.
    pub fn fit_within(&mut self, max_packet_size: usize) -> bool {
        fit_by_dropping_diagnostics(self, max_packet_size, Self::encoded_len, |unsuback| {
            let properties = &mut unsuback.properties;
            (
                &mut properties.reason_string,
                &mut properties.user_properties,
            )
        })
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

#[cfg(test)]
mod v5_tests {
    use smallvec::smallvec;

    use super::*;
    use crate::protocol::testing::{assert_wire_v5, decode_error_v5, user};
    use crate::protocol::Packet;

    #[test]
    fn v5_unsubscribe_wire_bytes() {
        assert_wire_v5(
            &Packet::UnsubscribeV5(UnsubscribeV5 {
                packet_id: PacketId::new(0x0A0B).unwrap(),
                properties: UnsubscribeProperties {
                    user_properties: vec![user("k", "v")],
                },
                filters: smallvec![TopicFilter::try_from("a/#").unwrap()],
            }),
            b"\xa2\x0f\x0a\x0b\x07\x26\x00\x01k\x00\x01v\x00\x03a/#",
        );
    }

    #[test]
    fn v5_unsuback_wire_bytes() {
        assert_wire_v5(
            &Packet::UnsubAckV5(UnsubAck {
                packet_id: PacketId::new(7).unwrap(),
                properties: AckProperties::default(),
                reason_codes: smallvec![
                    ReasonCode::Success,
                    ReasonCode::NoSubscriptionExisted,
                    ReasonCode::NotAuthorized,
                ],
            }),
            b"\xb0\x06\x00\x07\x00\x00\x11\x87",
        );
    }

    #[test]
    fn malformed_v5_unsubscribes_and_unsubacks_are_refused() {
        let error = decode_error_v5(b"\xa2\x03\x00\x01\x00");
        assert_eq!(error, DecodeError::EmptyUnsubscribe);
        assert_eq!(error.reason_code(), ReasonCode::ProtocolError);
        assert_eq!(
            decode_error_v5(b"\xa2\x06\x00\x01\x03\x1f\x00\x00"),
            DecodeError::PropertyNotAllowed {
                packet: "UNSUBSCRIBE",
                property: crate::protocol::PropertyId::ReasonString
            }
        );
        assert_eq!(
            decode_error_v5(b"\xb0\x03\x00\x01\x00"),
            DecodeError::EmptyUnsubAck
        );
        assert_eq!(
            decode_error_v5(b"\xb0\x04\x00\x01\x00\x01"),
            DecodeError::InvalidReasonCode {
                packet: "UNSUBACK",
                code: 1
            }
        );
    }
}
