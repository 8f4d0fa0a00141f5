//! SUBSCRIBE [MQTT-3.8] and its answer SUBACK [MQTT-3.9].

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::error::DecodeError;
use super::fields::{field_len, put_binary, FieldReader};
use super::fixed_header::{self, PacketType};
use super::qos::{PacketId, QoS};
use crate::topic::TopicFilter;

/// A request to subscribe to one or more topic filters, each with its maximum QoS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// Echoed by the SUBACK.
    pub packet_id: PacketId,
    /// The filters and their requested QoS, in packet order (never empty once decoded).
    pub filters: SmallVec<[(TopicFilter, QoS); 4]>,
}

/// The outcome of one subscription request of a SUBSCRIBE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubAckReturnCode {
    /// Subscribed, with this maximum QoS granted (wire 0, 1, 2).
    Success(QoS),
    /// Refused (wire 0x80).
    Failure,
}

/// Wire value of [`SubAckReturnCode::Failure`].
const FAILURE: u8 = 0x80;

impl SubAckReturnCode {
    /// The code for a wire value: 0, 1, 2 or 0x80.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            FAILURE => Some(Self::Failure),
            other => QoS::from_u8(other).map(Self::Success),
        }
    }

    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Success(qos) => qos as u8,
            Self::Failure => FAILURE,
        }
    }
}

/// The server's answer to a SUBSCRIBE: one return code per filter, in the same order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    /// The SUBSCRIBE's packet id.
    pub packet_id: PacketId,
    /// One code per requested filter [MQTT-3.8.4-5].
    pub return_codes: SmallVec<[SubAckReturnCode; 4]>,
}

/// Bits of the requested-QoS byte that must be zero in MQTT 3.1/3.1.1 [MQTT-3.8.3-4].
const RESERVED_OPTION_BITS: u8 = 0b1111_1100;

impl Subscribe {
    /// Decodes a SUBSCRIBE body: a packet id, then at least one (filter, requested QoS) pair
    /// [MQTT-3.8.3-3] filling the body.
    pub(crate) fn decode(body: Bytes) -> Result<Self, DecodeError> {
        let mut reader = FieldReader::new(PacketType::Subscribe.name(), body);
        let packet_id = reader.packet_id()?;
        let mut filters = SmallVec::new();
        while !reader.is_empty() {
            let filter = reader.topic_filter()?;
            let options = reader.u8()?;
            if options & RESERVED_OPTION_BITS != 0 {
                return Err(DecodeError::InvalidSubscriptionOptions(options));
            }
            let qos = QoS::from_u8(options).ok_or(DecodeError::InvalidQoS(options))?;
            filters.push((filter, qos));
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptySubscribe);
        }
        Ok(Self { packet_id, filters })
    }

    /// Appends the encoded packet.
    pub fn encode(&self, out: &mut BytesMut) {
        let remaining = 2 + self
            .filters
            .iter()
            .map(|(filter, _)| field_len(filter.as_bytes().len()) + 1)
            .sum::<usize>();
        let packet_type = PacketType::Subscribe;
        fixed_header::write(
            out,
            packet_type.first_byte(packet_type.fixed_flags()),
            remaining,
        );
        out.put_u16(self.packet_id.get());
        for (filter, qos) in &self.filters {
            put_binary(out, filter.as_bytes());
            out.put_u8(*qos as u8);
        }
    }
}

impl SubAck {
    /// Decodes a SUBACK body: a packet id, then at least one return code.
    pub(crate) fn decode(body: Bytes) -> Result<Self, DecodeError> {
        let mut reader = FieldReader::new(PacketType::SubAck.name(), body);
        let packet_id = reader.packet_id()?;
        let mut return_codes = SmallVec::new();
        while !reader.is_empty() {
            let value = reader.u8()?;
            let code = SubAckReturnCode::from_u8(value)
                .ok_or(DecodeError::InvalidSubAckReturnCode(value))?;
            return_codes.push(code);
        }
        if return_codes.is_empty() {
            return Err(DecodeError::EmptySubAck);
        }
        Ok(Self {
            packet_id,
            return_codes,
        })
    }

    /// Appends the encoded packet.
    pub fn encode(&self, out: &mut BytesMut) {
        let remaining = 2 + self.return_codes.len();
        fixed_header::write(out, PacketType::SubAck.first_byte(0), remaining);
        out.put_u16(self.packet_id.get());
        for code in &self.return_codes {
            out.put_u8(code.to_u8());
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

    fn id(value: u16) -> PacketId {
        PacketId::new(value).unwrap()
    }

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::try_from(text).unwrap()
    }

    #[test]
    fn subscribe_wire_bytes() {
        assert_wire(
            &Packet::Subscribe(Subscribe {
                packet_id: id(1),
                filters: smallvec![(filter("a/+"), QoS::AtLeastOnce)],
            }),
            b"\x82\x08\x00\x01\x00\x03a/+\x01",
        );
        let many: SmallVec<[(TopicFilter, QoS); 4]> = ["#", "a", "b/#", "+/+", "$SYS/#"]
            .iter()
            .zip([QoS::AtMostOnce, QoS::ExactlyOnce].iter().cycle())
            .map(|(f, q)| (filter(f), *q))
            .collect();
        assert_wire(
            &Packet::Subscribe(Subscribe {
                packet_id: id(0x0203),
                filters: many,
            }),
            b"\x82\x1f\x02\x03\x00\x01#\x00\x00\x01a\x02\x00\x03b/#\x00\
              \x00\x03+/+\x02\x00\x06$SYS/#\x00",
        );
    }

    #[test]
    fn malformed_subscribes_are_refused() {
        let cases: [(&[u8], DecodeError); 10] = [
            (b"\x82\x02\x00\x01", DecodeError::EmptySubscribe),
            (
                b"\x82\x06\x00\x00\x00\x01a\x00",
                DecodeError::ZeroPacketId {
                    packet: "SUBSCRIBE",
                },
            ),
            (
                b"\x82\x06\x00\x01\x00\x01a\x04",
                DecodeError::InvalidSubscriptionOptions(4),
            ),
            (
                b"\x82\x06\x00\x01\x00\x01a\x81",
                DecodeError::InvalidSubscriptionOptions(0x81),
            ),
            (b"\x82\x06\x00\x01\x00\x01a\x03", DecodeError::InvalidQoS(3)),
            (
                b"\x82\x05\x00\x01\x00\x01a",
                DecodeError::Truncated {
                    packet: "SUBSCRIBE",
                },
            ),
            (
                b"\x82\x07\x00\x01\x00\x02a#\x00",
                DecodeError::InvalidTopic(TopicError::MisplacedMultiLevelWildcard),
            ),
            (
                b"\x82\x05\x00\x01\x00\x00\x00",
                DecodeError::InvalidTopic(TopicError::Empty),
            ),
            (
                b"\x80\x06\x00\x01\x00\x01a\x00",
                DecodeError::InvalidFixedHeaderFlags {
                    packet: "SUBSCRIBE",
                    flags: 0,
                },
            ),
            (
                b"\x82\x01\x00",
                DecodeError::Truncated {
                    packet: "SUBSCRIBE",
                },
            ),
        ];
        for (wire, expected) in cases {
            assert_eq!(decode_error(wire), expected, "{wire:x?}");
        }
    }

    #[test]
    fn suback_wire_bytes() {
        assert_wire(
            &Packet::SubAck(SubAck {
                packet_id: id(9),
                return_codes: smallvec![
                    SubAckReturnCode::Success(QoS::AtMostOnce),
                    SubAckReturnCode::Success(QoS::AtLeastOnce),
                    SubAckReturnCode::Success(QoS::ExactlyOnce),
                    SubAckReturnCode::Failure,
                ],
            }),
            b"\x90\x06\x00\x09\x00\x01\x02\x80",
        );
    }

    #[test]
    fn malformed_subacks_are_refused() {
        assert_eq!(decode_error(b"\x90\x02\x00\x01"), DecodeError::EmptySubAck);
        assert_eq!(
            decode_error(b"\x90\x03\x00\x01\x03"),
            DecodeError::InvalidSubAckReturnCode(3)
        );
        assert_eq!(
            decode_error(b"\x90\x03\x00\x01\x81"),
            DecodeError::InvalidSubAckReturnCode(0x81)
        );
        assert_eq!(
            decode_error(b"\x90\x03\x00\x00\x00"),
            DecodeError::ZeroPacketId { packet: "SUBACK" }
        );
        assert_eq!(
            decode_error(b"\x92\x03\x00\x01\x00"),
            DecodeError::InvalidFixedHeaderFlags {
                packet: "SUBACK",
                flags: 2
            }
        );
    }

    #[test]
    fn return_codes_map_to_wire_values() {
        for value in [0u8, 1, 2, 0x80] {
            assert_eq!(SubAckReturnCode::from_u8(value).unwrap().to_u8(), value);
        }
        assert_eq!(SubAckReturnCode::from_u8(3), None);
        assert_eq!(SubAckReturnCode::from_u8(0x7F), None);
    }
}
