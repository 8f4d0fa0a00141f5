//! PUBLISH [MQTT-3.3]: an application message, decoded without copying its payload, and
//! encoded once per wire layout for fan-out to many subscribers.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::DecodeError;
use super::fields::{field_len, put_binary, FieldReader};
use super::fixed_header::{self, PacketType, PUBLISH_DUP, PUBLISH_QOS_SHIFT, PUBLISH_RETAIN};
use super::qos::{PacketId, QoS};
use crate::topic::TopicName;

/// An application message as it travels in one PUBLISH packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// This is a redelivery of a QoS 1/2 message the receiver may have seen.
    pub dup: bool,
    /// The delivery guarantee of this transfer.
    pub qos: QoS,
    /// Store as the topic's retained message (publisher to server), or: this is a retained
    /// message sent on subscription (server to subscriber).
    pub retain: bool,
    /// Where the message is published; a zero-copy slice of the received packet.
    pub topic: TopicName,
    /// Identifies the QoS 1/2 exchange: `Some` iff `qos` is above 0.
    pub packet_id: Option<PacketId>,
    /// The application payload; a zero-copy slice of the received packet.
    pub payload: Bytes,
}

/// Name used in errors.
const PACKET: &str = "PUBLISH";

/// Byte 1 of a PUBLISH with these flags.
fn first_byte(dup: bool, qos: QoS, retain: bool) -> u8 {
    let mut flags = (qos as u8) << PUBLISH_QOS_SHIFT;
    if dup {
        flags |= PUBLISH_DUP;
    }
    if retain {
        flags |= PUBLISH_RETAIN;
    }
    PacketType::Publish.first_byte(flags)
}

/// Body length of a PUBLISH: topic, packet id (QoS > 0) and payload.
fn body_len(topic: &TopicName, payload: &Bytes, qos: QoS) -> usize {
    let packet_id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    field_len(topic.as_bytes().len()) + packet_id_len + payload.len()
}

impl Publish {
    /// Decodes a PUBLISH body. `flags` were checked with the fixed header (QoS 3 and DUP on
    /// QoS 0 never get here); the topic and payload share `body`'s memory.
    pub(crate) fn decode(flags: u8, body: Bytes) -> Result<Self, DecodeError> {
        let qos_bits = (flags >> PUBLISH_QOS_SHIFT) & 0b11;
        let qos = QoS::from_u8(qos_bits).ok_or(DecodeError::InvalidQoS(qos_bits))?;
        let mut reader = FieldReader::new(PACKET, body);
        let topic = reader.topic_name()?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(reader.packet_id()?)
        };
        Ok(Self {
            dup: flags & PUBLISH_DUP != 0,
            qos,
            retain: flags & PUBLISH_RETAIN != 0,
            topic,
            packet_id,
            payload: reader.rest(),
        })
    }

    /// Appends the encoded packet, flags as given. A QoS 1/2 publish without a packet id is a
    /// caller bug; it is encoded with id 0 (and asserts in debug builds).
    pub fn encode(&self, out: &mut BytesMut) {
        let remaining = body_len(&self.topic, &self.payload, self.qos);
        fixed_header::write(out, first_byte(self.dup, self.qos, self.retain), remaining);
        put_binary(out, self.topic.as_bytes());
        if self.qos != QoS::AtMostOnce {
            debug_assert!(
                self.packet_id.is_some(),
                "QoS > 0 PUBLISH without packet id"
            );
            out.put_u16(self.packet_id.map_or(0, PacketId::get));
        }
        out.put_slice(&self.payload);
    }
}

/// A PUBLISH encoded once per wire layout (protocol family × QoS × retain) and shared by every
/// subscriber with that layout: each delivery copies the prepared header, patches DUP and the
/// packet id, and appends the publisher's payload, with no per-subscriber encoding work.
#[derive(Clone, Debug)]
pub struct EncodedPublish {
    /// Fixed header, topic and (QoS > 0) a zero packet-id placeholder.
    header: Bytes,
    /// The publisher's payload, shared, never copied into this value.
    payload: Bytes,
    /// Offset of the packet-id placeholder in `header`, present iff QoS > 0.
    packet_id_at: Option<usize>,
    /// The QoS this layout is for.
    qos: QoS,
}

impl EncodedPublish {
    /// Prepares the header of a PUBLISH of `payload` to `topic` with this QoS and retain flag.
    pub fn new(topic: &TopicName, payload: &Bytes, qos: QoS, retain: bool) -> Self {
        let remaining = body_len(topic, payload, qos);
        let header_len = fixed_header::packet_len(remaining) - payload.len();
        let mut header = BytesMut::with_capacity(header_len);
        header.put_u8(first_byte(false, qos, retain));
        fixed_header::write_remaining_len(&mut header, remaining);
        put_binary(&mut header, topic.as_bytes());
        let packet_id_at = if qos == QoS::AtMostOnce {
            None
        } else {
            let at = header.len();
            header.put_u16(0);
            Some(at)
        };
        Self {
            header: header.freeze(),
            payload: payload.clone(),
            packet_id_at,
            qos,
        }
    }

    /// Appends the packet to `out`, setting DUP and the packet id. Both only exist for QoS > 0
    /// (the id is then required; a missing one is a caller bug, written as 0 and asserted in
    /// debug builds); for QoS 0 they are ignored, as DUP must be 0 there [MQTT-3.3.1-2].
    pub fn write_to(&self, out: &mut BytesMut, packet_id: Option<PacketId>, dup: bool) {
        out.reserve(self.len());
        let start = out.len();
        out.extend_from_slice(&self.header);
        if let Some(at) = self.packet_id_at {
            debug_assert!(packet_id.is_some(), "QoS > 0 PUBLISH without packet id");
            let id = packet_id.map_or(0, PacketId::get).to_be_bytes();
            out[start + at..start + at + 2].copy_from_slice(&id);
            if dup {
                out[start] |= PUBLISH_DUP;
            }
        }
        out.extend_from_slice(&self.payload);
    }

    /// Total encoded size in bytes.
    #[allow(clippy::len_without_is_empty)] // a packet is never empty
    pub fn len(&self) -> usize {
        self.header.len() + self.payload.len()
    }

    /// The QoS of this layout.
    pub fn qos(&self) -> QoS {
        self.qos
    }

    /// The payload this packet carries (shared with the publisher's message).
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::{assert_wire, decode_error, decode_one};
    use crate::protocol::{decode, Packet};
    use crate::topic::TopicError;

    fn publish(dup: bool, qos: QoS, retain: bool, id: u16, payload: &'static [u8]) -> Publish {
        Publish {
            dup,
            qos,
            retain,
            topic: TopicName::try_from("a/b").unwrap(),
            packet_id: PacketId::new(id),
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn qos0_publish_wire_bytes() {
        assert_wire(
            &Packet::Publish(publish(false, QoS::AtMostOnce, false, 0, b"hi")),
            b"\x30\x07\x00\x03a/bhi",
        );
    }

    #[test]
    fn qos1_and_qos2_publish_wire_bytes() {
        assert_wire(
            &Packet::Publish(publish(true, QoS::AtLeastOnce, true, 10, b"hi")),
            b"\x3b\x09\x00\x03a/b\x00\x0ahi",
        );
        assert_wire(
            &Packet::Publish(publish(false, QoS::ExactlyOnce, false, 0xFFFF, b"")),
            b"\x34\x07\x00\x03a/b\xff\xff",
        );
        assert_wire(
            &Packet::Publish(publish(false, QoS::AtMostOnce, true, 0, b"")),
            b"\x31\x05\x00\x03a/b",
        );
    }

    #[test]
    fn long_payload_uses_a_two_byte_remaining_length() {
        let payload = vec![0xAB; 200];
        let mut wire = vec![0x30, 0xCD, 0x01, 0x00, 0x03];
        wire.extend_from_slice(b"a/b");
        wire.extend_from_slice(&payload);
        let mut packet = publish(false, QoS::AtMostOnce, false, 0, b"");
        packet.payload = Bytes::from(payload);
        assert_wire(&Packet::Publish(packet), &wire);
    }

    #[test]
    fn topic_and_payload_are_slices_of_the_read_buffer() {
        let mut buf = BytesMut::from(&b"\x32\x0c\x00\x03a/b\x00\x01hello"[..]);
        let start = buf.as_ptr() as usize;
        let range = start..start + buf.len();
        let Ok(Some(Packet::Publish(p))) = decode(&mut buf, 1024) else {
            panic!("not a PUBLISH");
        };
        assert_eq!(&p.payload[..], b"hello");
        assert!(range.contains(&(p.payload.as_ptr() as usize)));
        assert!(range.contains(&(p.topic.as_bytes().as_ptr() as usize)));
    }

    #[test]
    fn malformed_publishes_are_refused() {
        let cases: [(&[u8], DecodeError); 9] = [
            (
                b"\x30\x05\x00\x03a/#",
                DecodeError::InvalidTopic(TopicError::WildcardInName),
            ),
            (
                b"\x30\x05\x00\x03+/b",
                DecodeError::InvalidTopic(TopicError::WildcardInName),
            ),
            (
                b"\x30\x04\x00\x00hi",
                DecodeError::InvalidTopic(TopicError::Empty),
            ),
            (
                b"\x30\x03\x00\x01\xff",
                DecodeError::InvalidTopic(TopicError::InvalidUtf8),
            ),
            (
                b"\x30\x03\x00\x01\x00",
                DecodeError::InvalidTopic(TopicError::NullCharacter),
            ),
            (
                b"\x32\x07\x00\x03a/b\x00\x00",
                DecodeError::ZeroPacketId { packet: "PUBLISH" },
            ),
            (
                b"\x32\x06\x00\x03a/b\x01",
                DecodeError::Truncated { packet: "PUBLISH" },
            ),
            (b"\x36\x05\x00\x03a/b", DecodeError::InvalidQoS(3)),
            (b"\x38\x05\x00\x03a/b", DecodeError::DupOnQoS0),
        ];
        for (wire, expected) in cases {
            assert_eq!(decode_error(wire), expected, "{wire:x?}");
        }
        assert_eq!(
            decode_error(b"\x30\x01\x00"),
            DecodeError::Truncated { packet: "PUBLISH" }
        );
    }

    #[test]
    fn encoded_publish_matches_the_plain_encoder_for_every_layout() {
        let topic = TopicName::try_from("sensors/1/temp").unwrap();
        let payload = Bytes::from(vec![7u8; 300]);
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for retain in [false, true] {
                let encoded = EncodedPublish::new(&topic, &payload, qos, retain);
                assert_eq!(encoded.qos(), qos);
                assert!(encoded.payload().as_ptr() == payload.as_ptr());
                let mut out = BytesMut::new();
                for (id, dup) in [(1u16, false), (0xBEEF, true)] {
                    let packet_id = (qos != QoS::AtMostOnce).then(|| PacketId::new(id).unwrap());
                    let before = out.len();
                    encoded.write_to(&mut out, packet_id, dup);
                    assert_eq!(out.len() - before, encoded.len());
                    let expected = Publish {
                        dup: dup && qos != QoS::AtMostOnce,
                        qos,
                        retain,
                        topic: topic.clone(),
                        packet_id,
                        payload: payload.clone(),
                    };
                    let mut plain = BytesMut::new();
                    expected.encode(&mut plain);
                    assert_eq!(&out[before..], &plain[..], "{qos:?} retain={retain}");
                    let decoded = decode_one(&out[before..]);
                    assert_eq!(decoded, Packet::Publish(expected));
                }
            }
        }
    }

    #[test]
    fn encoded_publish_ignores_dup_and_id_for_qos0() {
        let topic = TopicName::try_from("t").unwrap();
        let encoded =
            EncodedPublish::new(&topic, &Bytes::from_static(b"x"), QoS::AtMostOnce, false);
        let mut out = BytesMut::new();
        encoded.write_to(&mut out, PacketId::new(5), true);
        assert_eq!(&out[..], b"\x30\x04\x00\x01tx");
    }
}
