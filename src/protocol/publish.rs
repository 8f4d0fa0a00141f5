//! PUBLISH [MQTT-3.3]: an application message, decoded without copying its payload, and
//! encoded once per wire layout for fan-out to many subscribers. An MQTT 5 PUBLISH
//! ([`PublishV5`]) adds properties, and its topic may be replaced by a topic alias.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::DecodeError;
use super::fields::{field_len, put_binary, put_var_int, var_int_len, FieldReader, MAX_FIELD_LEN};
use super::fixed_header::{
    self, PacketType, MAX_REMAINING_LEN, PUBLISH_DUP, PUBLISH_QOS_SHIFT, PUBLISH_RETAIN,
};
use super::properties::{
    block_len, content_len, read_properties, write_block, DecodedPublishBlock, DeliveryProperties,
    Place, PropertyId, PublishBlock, PublishProperties, TopicAlias, WriteProperties,
};
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

/// The topic of an MQTT 5 PUBLISH [MQTT-3.3.2.3.4]: a topic name, an alias standing for the
/// name an earlier PUBLISH of the connection gave it, or both, which (re)defines the alias.
/// Aliases are per connection and per direction: the codec only reports them, the connection
/// keeps the table and resolves `Alias` to a name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PublishTopic {
    /// A topic name without alias.
    Name(TopicName),
    /// A topic name that also sets the alias to stand for it from now on.
    NameWithAlias(TopicName, TopicAlias),
    /// An empty topic name: the topic is the one the alias stands for.
    Alias(TopicAlias),
}

impl PublishTopic {
    /// The topic name, if the packet carries one.
    pub fn name(&self) -> Option<&TopicName> {
        match self {
            Self::Name(name) | Self::NameWithAlias(name, _) => Some(name),
            Self::Alias(_) => None,
        }
    }

    /// The topic alias, if the packet carries one.
    pub fn alias(&self) -> Option<TopicAlias> {
        match self {
            Self::Name(_) => None,
            Self::NameWithAlias(_, alias) | Self::Alias(alias) => Some(*alias),
        }
    }

    /// The bytes of the topic name field: empty when only the alias is sent.
    fn wire_name(&self) -> &[u8] {
        self.name().map_or(&[], |name| &name.as_bytes()[..])
    }
}

impl From<TopicName> for PublishTopic {
    fn from(name: TopicName) -> Self {
        Self::Name(name)
    }
}

/// An MQTT 5 PUBLISH [MQTT-3.3]: a [`Publish`] whose topic may be an alias, with properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishV5 {
    /// This is a redelivery of a QoS 1/2 message the receiver may have seen.
    pub dup: bool,
    /// The delivery guarantee of this transfer.
    pub qos: QoS,
    /// Store as retained (publisher to server), or: sent as retained (server to subscriber).
    pub retain: bool,
    /// The topic name, alias, or both; slices of the received packet.
    pub topic: PublishTopic,
    /// Identifies the QoS 1/2 exchange: `Some` iff `qos` is above 0.
    pub packet_id: Option<PacketId>,
    /// The message's properties and the matching subscription identifiers.
    pub properties: PublishProperties,
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

    /// Total encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        fixed_header::packet_len(body_len(&self.topic, &self.payload, self.qos))
    }
}

impl PublishV5 {
    /// Decodes an MQTT 5 PUBLISH body: topic name (empty only with a topic alias), packet id
    /// (QoS > 0), properties, payload. `flags` were checked with the fixed header.
    pub(crate) fn decode(flags: u8, body: Bytes) -> Result<Self, DecodeError> {
        let qos_bits = (flags >> PUBLISH_QOS_SHIFT) & 0b11;
        let qos = QoS::from_u8(qos_bits).ok_or(DecodeError::InvalidQoS(qos_bits))?;
        let mut reader = FieldReader::new(PACKET, body);
        let raw_topic = reader.binary()?;
        let name = if raw_topic.is_empty() {
            None
        } else {
            Some(TopicName::new(raw_topic)?)
        };
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(reader.packet_id()?)
        };
        let block: DecodedPublishBlock =
            read_properties(&mut reader, Place::packet(PacketType::Publish))?;
        let topic = match (name, block.topic_alias) {
            (Some(name), None) => PublishTopic::Name(name),
            (Some(name), Some(alias)) => PublishTopic::NameWithAlias(name, alias),
            (None, Some(alias)) => PublishTopic::Alias(alias),
            (None, None) => return Err(DecodeError::EmptyTopicWithoutAlias),
        };
        Ok(Self {
            dup: flags & PUBLISH_DUP != 0,
            qos,
            retain: flags & PUBLISH_RETAIN != 0,
            topic,
            packet_id,
            properties: block.properties,
            payload: reader.rest(),
        })
    }

    /// The outgoing property block of this packet.
    fn block(&self) -> PublishBlock<'_> {
        PublishBlock {
            topic_alias: self.topic.alias(),
            delivery: self.properties.as_delivery(),
        }
    }

    /// Appends the encoded packet, flags as given. A QoS 1/2 publish without a packet id is a
    /// caller bug; it is encoded with id 0 (and asserts in debug builds).
    pub fn encode(&self, out: &mut BytesMut) {
        let block = self.block();
        let remaining = body_len_v5(&self.topic, &block, &self.payload, self.qos);
        fixed_header::write(out, first_byte(self.dup, self.qos, self.retain), remaining);
        put_binary(out, self.topic.wire_name());
        if self.qos != QoS::AtMostOnce {
            debug_assert!(
                self.packet_id.is_some(),
                "QoS > 0 PUBLISH without packet id"
            );
            out.put_u16(self.packet_id.map_or(0, PacketId::get));
        }
        write_block(&block, out);
        out.put_slice(&self.payload);
    }

    /// Total encoded size in bytes (to compare with the receiver's maximum packet size: a
    /// PUBLISH too large for a subscriber is not sent to it [MQTT-3.1.2-25]).
    pub fn encoded_len(&self) -> usize {
        fixed_header::packet_len(body_len_v5(
            &self.topic,
            &self.block(),
            &self.payload,
            self.qos,
        ))
    }

    /// The check only a server makes: a client must not send subscription identifiers
    /// [MQTT-3.3.4-6] (a client receives them, so `decode` accepts them).
    pub fn check_sent_by_client(&self) -> Result<(), DecodeError> {
        if self.properties.subscription_ids.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::SubscriptionIdFromClient)
        }
    }
}

/// Body length of an MQTT 5 PUBLISH: topic, packet id (QoS > 0), properties and payload.
fn body_len_v5(topic: &PublishTopic, block: &PublishBlock<'_>, payload: &Bytes, qos: QoS) -> usize {
    let packet_id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    field_len(topic.wire_name().len()) + packet_id_len + block_len(block) + payload.len()
}

/// Bytes a Topic Alias property takes: its identifier and a two-byte value.
const TOPIC_ALIAS_PROPERTY_LEN: usize = 3;

/// A topic alias a server sends with an [`EncodedPublish`] that was encoded with its topic
/// name (see [`EncodedPublish::write_aliased_to`]); the receiver's aliases are per connection
/// [MQTT-3.3.2-7], so the sender decides per delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutgoingAlias {
    /// Topic name and alias: from now on the alias stands for this name on the connection.
    Define(TopicAlias),
    /// Alias only, with an empty topic name: the receiver knows what it stands for.
    Use(TopicAlias),
}

/// Longest part of a PUBLISH before its topic name: byte 1, four remaining-length bytes and
/// the topic name's two-byte length.
const PREFIX_CAPACITY: usize = 1 + 4 + 2;

/// The property block of an MQTT 5 PUBLISH without properties: its length, zero.
static NO_PROPERTIES: [u8; 1] = [0];

/// A PUBLISH encoded once per wire layout (protocol family × QoS × retain, and for MQTT 5 the
/// properties, which may differ per subscriber) and shared by every subscriber with that
/// layout: each delivery copies the prepared parts, sets DUP and the packet id, and appends
/// the publisher's payload, with no per-subscriber encoding work. An MQTT 5 one encoded with
/// its topic name may also be written with a per-connection topic alias
/// ([`EncodedPublish::write_aliased_to`]), still from the shared parts.
///
/// Preparing one allocates nothing unless it has MQTT 5 properties: the few bytes before the
/// topic are kept inline, and the topic name and payload are the message's own, shared.
#[derive(Clone, Debug)]
pub struct EncodedPublish {
    /// Byte 1 (DUP clear), the remaining length and the topic name's length prefix.
    prefix: [u8; PREFIX_CAPACITY],
    /// How many bytes of `prefix` are used.
    prefix_len: u8,
    /// The topic name, shared with the message (empty when only a topic alias is sent).
    topic: Bytes,
    /// MQTT 5: the property block, its length first (a static single zero when there are no
    /// properties); empty for MQTT 3.1/3.1.1. It follows the packet id, which is written
    /// per delivery.
    properties: Bytes,
    /// Bytes the property block's length takes at the start of `properties` (0 for MQTT 3).
    properties_at: u8,
    /// The publisher's payload, shared, never copied into this value.
    payload: Bytes,
    /// The QoS this layout is for: a packet id follows the topic iff it is above 0.
    qos: QoS,
    /// An MQTT 5 encoding with a topic name and no alias, which
    /// [`EncodedPublish::write_aliased_to`] can send with an alias instead.
    aliasable: bool,
}

/// The bytes of a PUBLISH up to its topic name, given its first byte, remaining length and
/// topic name length.
fn prefix(first: u8, remaining: usize, topic_len: usize) -> ([u8; PREFIX_CAPACITY], u8) {
    let (length, length_len) = fixed_header::remaining_len_bytes(remaining);
    debug_assert!(topic_len <= MAX_FIELD_LEN, "topic longer than 65535 bytes");
    // A topic name is validated to at most 65535 bytes, so the cast is lossless.
    let [hi, lo] = (topic_len as u16).to_be_bytes();
    let mut bytes = [0u8; PREFIX_CAPACITY];
    // The indices are in bounds: the varint takes bytes 1 to 4 and `length_len` is 1 to 4,
    // so the topic length ends at byte 6 at the latest, the last of `PREFIX_CAPACITY`.
    bytes[0] = first;
    bytes[1..5].copy_from_slice(&length);
    bytes[1 + length_len] = hi;
    bytes[2 + length_len] = lo;
    // At most 1 + 4 + 2 bytes: the cast cannot truncate.
    (bytes, (3 + length_len) as u8)
}

impl EncodedPublish {
    /// Prepares the header of a PUBLISH of `payload` to `topic` with this QoS and retain flag.
    pub fn new(topic: &TopicName, payload: &Bytes, qos: QoS, retain: bool) -> Self {
        let remaining = body_len(topic, payload, qos);
        let topic = topic.as_bytes();
        let (prefix, prefix_len) = prefix(first_byte(false, qos, retain), remaining, topic.len());
        Self {
            prefix,
            prefix_len,
            topic: topic.clone(),
            properties: Bytes::new(),
            properties_at: 0,
            payload: payload.clone(),
            qos,
            aliasable: false,
        }
    }

    /// Prepares the header of an MQTT 5 PUBLISH of `payload` with this QoS and retain flag:
    /// `topic` says whether the topic name, an alias or both are sent, and `properties` are
    /// the delivery's properties. Encode once per distinct (topic, properties) among the
    /// subscribers; the payload is shared, never copied into this value.
    pub fn new_v5(
        topic: &PublishTopic,
        payload: &Bytes,
        qos: QoS,
        retain: bool,
        properties: DeliveryProperties<'_>,
    ) -> Self {
        let block = PublishBlock {
            topic_alias: topic.alias(),
            delivery: properties,
        };
        let content_len = content_len(&block);
        let (properties, properties_at) = if content_len == 0 {
            (Bytes::from_static(&NO_PROPERTIES), NO_PROPERTIES.len())
        } else {
            let properties_at = var_int_len(content_len);
            let mut encoded = BytesMut::with_capacity(properties_at + content_len);
            put_var_int(&mut encoded, content_len);
            block.write_to(&mut encoded);
            (encoded.freeze(), properties_at)
        };
        let topic_name = topic
            .name()
            .map_or_else(Bytes::new, |name| name.as_bytes().clone());
        let packet_id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
        let remaining =
            field_len(topic_name.len()) + packet_id_len + properties.len() + payload.len();
        let first = first_byte(false, qos, retain);
        let (prefix, prefix_len) = prefix(first, remaining, topic_name.len());
        Self {
            prefix,
            prefix_len,
            topic: topic_name,
            properties,
            // At most four bytes: the cast cannot truncate.
            properties_at: properties_at as u8,
            payload: payload.clone(),
            qos,
            aliasable: matches!(topic, PublishTopic::Name(_)),
        }
    }

    /// The topic name of an MQTT 5 PUBLISH encoded with its name and no alias: the key under
    /// which a connection may send it with a topic alias instead. `None` for MQTT 3.1/3.1.1
    /// encodings and for those that already carry an alias.
    pub fn aliasable_topic(&self) -> Option<&[u8]> {
        self.aliasable.then_some(&self.topic[..])
    }

    /// The size of this PUBLISH written with `alias` ([`EncodedPublish::write_aliased_to`]);
    /// `None` when it cannot be sent with an alias (not an [aliasable
    /// topic](EncodedPublish::aliasable_topic), or too large for MQTT with the alias).
    pub fn aliased_len(&self, alias: OutgoingAlias) -> Option<usize> {
        if !self.aliasable {
            return None;
        }
        let remaining = self.aliased_remaining_len(alias);
        (remaining <= MAX_REMAINING_LEN).then(|| fixed_header::packet_len(remaining))
    }

    /// The properties of an MQTT 5 encoding, without the block's length.
    fn property_content(&self) -> &[u8] {
        self.properties
            .get(usize::from(self.properties_at)..)
            .unwrap_or_default()
    }

    /// Bytes the packet id takes: two for QoS 1 and 2.
    fn packet_id_len(&self) -> usize {
        if self.qos == QoS::AtMostOnce {
            0
        } else {
            2
        }
    }

    /// Remaining length of the packet with `alias`: topic field, packet id, properties with
    /// the alias added, payload.
    fn aliased_remaining_len(&self, alias: OutgoingAlias) -> usize {
        let topic_field_len = match alias {
            OutgoingAlias::Define(_) => field_len(self.topic.len()),
            OutgoingAlias::Use(_) => field_len(0),
        };
        let content_len = TOPIC_ALIAS_PROPERTY_LEN + self.property_content().len();
        topic_field_len
            + self.packet_id_len()
            + var_int_len(content_len)
            + content_len
            + self.payload.len()
    }

    /// Byte 1 as written: DUP only exists for QoS > 0 [MQTT-3.3.1-2].
    fn first_byte(&self, dup: bool) -> u8 {
        if dup && self.qos != QoS::AtMostOnce {
            self.prefix[0] | PUBLISH_DUP
        } else {
            self.prefix[0]
        }
    }

    /// Appends the packet id of a QoS 1/2 layout (a missing one is a caller bug, written as 0
    /// and asserted in debug builds); nothing for QoS 0.
    fn put_packet_id(&self, out: &mut BytesMut, packet_id: Option<PacketId>) {
        if self.qos != QoS::AtMostOnce {
            debug_assert!(packet_id.is_some(), "QoS > 0 PUBLISH without packet id");
            out.put_u16(packet_id.map_or(0, PacketId::get));
        }
    }

    /// Appends the packet to `out` with a topic alias, as [`EncodedPublish::write_to`] does
    /// without: the Topic Alias property is put first in the property block, and with
    /// [`OutgoingAlias::Use`] the topic name is left empty. The shared parts are only read.
    /// A packet for which [`EncodedPublish::aliased_len`] is `None` is written without alias.
    pub fn write_aliased_to(
        &self,
        out: &mut BytesMut,
        packet_id: Option<PacketId>,
        dup: bool,
        alias: OutgoingAlias,
    ) {
        let remaining = self.aliased_remaining_len(alias);
        if !self.aliasable || remaining > MAX_REMAINING_LEN {
            return self.write_to(out, packet_id, dup);
        }
        fixed_header::write(out, self.first_byte(dup), remaining);
        let alias = match alias {
            OutgoingAlias::Define(alias) => {
                put_binary(out, &self.topic);
                alias
            }
            OutgoingAlias::Use(alias) => {
                put_binary(out, &[]);
                alias
            }
        };
        self.put_packet_id(out, packet_id);
        let properties = self.property_content();
        put_var_int(out, TOPIC_ALIAS_PROPERTY_LEN + properties.len());
        out.put_u8(PropertyId::TopicAlias.id());
        out.put_u16(alias.get());
        out.extend_from_slice(properties);
        out.extend_from_slice(&self.payload);
    }

    /// Appends the packet to `out`, setting DUP and the packet id. Both only exist for QoS > 0
    /// (the id is then required; a missing one is a caller bug, written as 0 and asserted in
    /// debug builds); for QoS 0 they are ignored, as DUP must be 0 there [MQTT-3.3.1-2].
    pub fn write_to(&self, out: &mut BytesMut, packet_id: Option<PacketId>, dup: bool) {
        out.reserve(self.len());
        let start = out.len();
        out.extend_from_slice(&self.prefix[..usize::from(self.prefix_len)]);
        if let Some(first) = out.get_mut(start) {
            *first = self.first_byte(dup);
        }
        out.extend_from_slice(&self.topic);
        self.put_packet_id(out, packet_id);
        if !self.properties.is_empty() {
            out.extend_from_slice(&self.properties);
        }
        out.extend_from_slice(&self.payload);
    }

    /// Total encoded size in bytes.
    #[allow(clippy::len_without_is_empty)] // a packet is never empty
    pub fn len(&self) -> usize {
        usize::from(self.prefix_len)
            + self.topic.len()
            + self.packet_id_len()
            + self.properties.len()
            + self.payload.len()
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
    fn publish_topics_follow_the_string_rules_on_the_wire() {
        // A surrogate (U+D800) encoded in bytes is not UTF-8 [MQTT-1.5.4-1].
        assert_eq!(
            decode_error(b"\x30\x06\x00\x04a\xed\xa0\x80"),
            DecodeError::InvalidTopic(TopicError::InvalidUtf8)
        );
        assert_eq!(
            decode_error(b"\x30\x06\x00\x04ab\x00c"),
            DecodeError::InvalidTopic(TopicError::NullCharacter)
        );
        assert_eq!(
            decode_error(b"\x30\x06\x00\x04\xc2\xab+b"),
            DecodeError::InvalidTopic(TopicError::WildcardInName)
        );
        // Multi-byte characters whose bytes look like `#` and `+` with the high bit set.
        let Packet::Publish(p) = decode_one(b"\x30\x08\x00\x04\xc2\xa3\xc2\xabhi") else {
            panic!("not a PUBLISH");
        };
        assert_eq!(p.topic.as_str(), "\u{a3}\u{ab}");
        // The longest topic the length prefix can announce: 65535 bytes.
        let mut wire = vec![0x30, 0x81, 0x80, 0x04, 0xFF, 0xFF];
        wire.extend(std::iter::repeat(b'a').take(usize::from(u16::MAX)));
        let Packet::Publish(p) = decode_one(&wire) else {
            panic!("not a PUBLISH");
        };
        assert_eq!(p.topic.as_bytes().len(), MAX_FIELD_LEN);
        assert!(p.payload.is_empty());
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

    #[test]
    fn encoded_publish_shares_the_topic_and_payload_at_every_remaining_length_size() {
        let topic = TopicName::try_from("sensors/é/1").unwrap();
        let topic_field = field_len(topic.as_bytes().len());
        // Remaining lengths on both sides of each varint size: 1, 2, 3 and 4 bytes.
        for remaining in [127, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
                let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
                let payload = Bytes::from(vec![0x5A; remaining - topic_field - id_len]);
                let encoded = EncodedPublish::new(&topic, &payload, qos, true);
                assert_eq!(encoded.topic.as_ptr(), topic.as_bytes().as_ptr());
                assert_eq!(encoded.payload().as_ptr(), payload.as_ptr());
                let packet_id = PacketId::new(3).filter(|_| qos != QoS::AtMostOnce);
                let mut out = BytesMut::new();
                encoded.write_to(&mut out, packet_id, true);
                let mut plain = BytesMut::new();
                Publish {
                    dup: qos != QoS::AtMostOnce,
                    qos,
                    retain: true,
                    topic: topic.clone(),
                    packet_id,
                    payload: payload.clone(),
                }
                .encode(&mut plain);
                assert_eq!(out.len(), encoded.len(), "{remaining} {qos:?}");
                assert!(out[..] == plain[..], "{remaining} {qos:?}");
                assert_eq!(
                    out.len(),
                    fixed_header::packet_len(remaining),
                    "{remaining} {qos:?}"
                );
            }
        }
    }
}

#[cfg(test)]
mod v5_tests {
    use super::*;
    use crate::protocol::properties::{MessageProperties, SubscriptionId};
    use crate::protocol::testing::{assert_wire_v5, decode_error_v5, decode_one_v5, text, user};
    use crate::protocol::{decode_with, Packet, PayloadFormat, ProtocolVersion, ReasonCode};
    use crate::topic::TopicError;

    fn topic() -> TopicName {
        TopicName::try_from("a/b").unwrap()
    }

    fn alias(value: u16) -> TopicAlias {
        TopicAlias::new(value).unwrap()
    }

    #[test]
    fn v5_publish_wire_bytes() {
        assert_wire_v5(
            &Packet::PublishV5(PublishV5 {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: PublishTopic::Name(topic()),
                packet_id: None,
                properties: PublishProperties::default(),
                payload: Bytes::from_static(b"hi"),
            }),
            b"\x30\x08\x00\x03a/b\x00hi",
        );
        assert_wire_v5(
            &Packet::PublishV5(PublishV5 {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: PublishTopic::Alias(alias(5)),
                packet_id: PacketId::new(10),
                properties: PublishProperties::default(),
                payload: Bytes::from_static(b"x"),
            }),
            b"\x32\x09\x00\x00\x00\x0a\x03\x23\x00\x05x",
        );
        assert_wire_v5(
            &Packet::PublishV5(PublishV5 {
                dup: true,
                qos: QoS::ExactlyOnce,
                retain: true,
                topic: PublishTopic::NameWithAlias(topic(), alias(1)),
                packet_id: PacketId::new(0xFFFF),
                properties: PublishProperties {
                    message: MessageProperties::default(),
                    subscription_ids: vec![SubscriptionId::new(129).unwrap()],
                },
                payload: Bytes::new(),
            }),
            b"\x3d\x0e\x00\x03a/b\xff\xff\x06\x23\x00\x01\x0b\x81\x01",
        );
    }

    #[test]
    fn the_topic_is_a_name_an_alias_or_both() {
        let name = PublishTopic::from(topic());
        assert_eq!((name.name(), name.alias()), (Some(&topic()), None));
        let both = PublishTopic::NameWithAlias(topic(), alias(2));
        assert_eq!(
            (both.name(), both.alias()),
            (Some(&topic()), Some(alias(2)))
        );
        let only = PublishTopic::Alias(alias(2));
        assert_eq!((only.name(), only.alias()), (None, Some(alias(2))));
    }

    #[test]
    fn malformed_v5_publishes_are_refused() {
        let error = decode_error_v5(b"\x30\x04\x00\x00\x00x");
        assert_eq!(error, DecodeError::EmptyTopicWithoutAlias);
        assert_eq!(error.reason_code(), ReasonCode::ProtocolError);
        let error = decode_error_v5(b"\x30\x06\x00\x03a/#\x00");
        assert_eq!(error, DecodeError::InvalidTopic(TopicError::WildcardInName));
        assert_eq!(error.reason_code(), ReasonCode::MalformedPacket);
        assert_eq!(
            decode_error_v5(b"\x32\x07\x00\x03a/b\x00\x00"),
            DecodeError::ZeroPacketId { packet: "PUBLISH" }
        );
        // The property block is not optional.
        assert_eq!(
            decode_error_v5(b"\x30\x05\x00\x03a/b"),
            DecodeError::Truncated { packet: "PUBLISH" }
        );
    }

    #[test]
    fn only_a_client_publish_refuses_subscription_ids() {
        let Packet::PublishV5(publish) = decode_one_v5(b"\x30\x08\x00\x01t\x02\x0b\x07xy") else {
            panic!("not a PUBLISH");
        };
        assert_eq!(publish.properties.subscription_ids[0].get(), 7);
        let error = publish.check_sent_by_client().unwrap_err();
        assert_eq!(error, DecodeError::SubscriptionIdFromClient);
        assert_eq!(error.reason_code(), ReasonCode::ProtocolError);
        let Packet::PublishV5(publish) = decode_one_v5(b"\x30\x06\x00\x01t\x00xy") else {
            panic!("not a PUBLISH");
        };
        assert_eq!(publish.check_sent_by_client(), Ok(()));
    }

    #[test]
    fn v5_topic_and_payload_are_slices_of_the_read_buffer() {
        let mut buf = BytesMut::from(&b"\x32\x0d\x00\x03a/b\x00\x01\x00hello"[..]);
        let start = buf.as_ptr() as usize;
        let range = start..start + buf.len();
        let Ok(Some(Packet::PublishV5(p))) = decode_with(&mut buf, 1024, Some(ProtocolVersion::V5))
        else {
            panic!("not a PUBLISH");
        };
        assert_eq!(&p.payload[..], b"hello");
        assert!(range.contains(&(p.payload.as_ptr() as usize)));
        let name = p.topic.name().unwrap();
        assert!(range.contains(&(name.as_bytes().as_ptr() as usize)));
    }

    #[test]
    fn encoded_v5_publish_matches_the_plain_encoder_per_delivery() {
        let payload = Bytes::from(vec![7u8; 300]);
        let message = MessageProperties {
            payload_format: Some(PayloadFormat::Utf8),
            message_expiry_interval: Some(100),
            content_type: Some(text("text/plain")),
            response_topic: None,
            correlation_data: Some(Bytes::from_static(b"c")),
            user_properties: vec![user("k", "v")],
        };
        let ids = [
            SubscriptionId::new(3).unwrap(),
            SubscriptionId::new(70_000).unwrap(),
        ];
        let topics = [
            PublishTopic::Name(topic()),
            PublishTopic::NameWithAlias(topic(), alias(4)),
            PublishTopic::Alias(alias(4)),
        ];
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for (at, publish_topic) in topics.iter().enumerate() {
                // Each subscriber sees its own remaining expiry and subscription ids.
                let expiry = Some(40 + at as u32);
                let delivery = DeliveryProperties {
                    message: &message,
                    message_expiry_interval: expiry,
                    subscription_ids: &ids[..at.min(2)],
                };
                let encoded = EncodedPublish::new_v5(publish_topic, &payload, qos, true, delivery);
                assert!(encoded.payload().as_ptr() == payload.as_ptr());
                let packet_id = (qos != QoS::AtMostOnce).then(|| PacketId::new(77).unwrap());
                let mut out = BytesMut::new();
                encoded.write_to(&mut out, packet_id, true);
                assert_eq!(out.len(), encoded.len());
                let expected = PublishV5 {
                    dup: qos != QoS::AtMostOnce,
                    qos,
                    retain: true,
                    topic: publish_topic.clone(),
                    packet_id,
                    properties: PublishProperties {
                        message: MessageProperties {
                            message_expiry_interval: expiry,
                            ..message.clone()
                        },
                        subscription_ids: ids[..at.min(2)].to_vec(),
                    },
                    payload: payload.clone(),
                };
                let mut plain = BytesMut::new();
                expected.encode(&mut plain);
                assert_eq!(&out[..], &plain[..], "{qos:?} {publish_topic:?}");
                assert_eq!(expected.encoded_len(), plain.len());
                assert_eq!(decode_one_v5(&out), Packet::PublishV5(expected));
            }
        }
    }

    #[test]
    fn a_named_v5_encoding_written_with_an_alias_matches_one_encoded_with_it() {
        let payload = Bytes::from(vec![9u8; 200]);
        let message = MessageProperties {
            content_type: Some(text("text/plain")),
            user_properties: vec![user("k", "v")],
            ..MessageProperties::default()
        };
        let ids = [SubscriptionId::new(5).unwrap()];
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for subscription_ids in [&[][..], &ids[..]] {
                let delivery = DeliveryProperties {
                    message: &message,
                    message_expiry_interval: None,
                    subscription_ids,
                };
                let named = EncodedPublish::new_v5(
                    &PublishTopic::Name(topic()),
                    &payload,
                    qos,
                    false,
                    delivery,
                );
                assert_eq!(named.aliasable_topic(), Some(&b"a/b"[..]));
                let cases = [
                    (
                        OutgoingAlias::Define(alias(7)),
                        PublishTopic::NameWithAlias(topic(), alias(7)),
                    ),
                    (OutgoingAlias::Use(alias(7)), PublishTopic::Alias(alias(7))),
                ];
                for (outgoing, publish_topic) in cases {
                    let aliased =
                        EncodedPublish::new_v5(&publish_topic, &payload, qos, false, delivery);
                    assert_eq!(aliased.aliasable_topic(), None, "already aliased");
                    let packet_id = (qos != QoS::AtMostOnce).then(|| PacketId::new(9).unwrap());
                    let mut expected = BytesMut::new();
                    aliased.write_to(&mut expected, packet_id, true);
                    let mut out = BytesMut::from(&b"before"[..]);
                    named.write_aliased_to(&mut out, packet_id, true, outgoing);
                    assert_eq!(&out[6..], &expected[..], "{qos:?} {outgoing:?}");
                    assert_eq!(named.aliased_len(outgoing), Some(expected.len()));
                    assert_eq!(aliased.aliased_len(outgoing), None);
                }
            }
        }
    }

    #[test]
    fn a_v5_encoding_without_properties_shares_its_parts() {
        let none = DeliveryProperties {
            message: &MessageProperties::default(),
            message_expiry_interval: None,
            subscription_ids: &[],
        };
        let payload = Bytes::from(vec![1u8; 200]);
        let name = topic();
        let encoded = EncodedPublish::new_v5(
            &PublishTopic::Name(name.clone()),
            &payload,
            QoS::AtMostOnce,
            false,
            none,
        );
        assert_eq!(encoded.topic.as_ptr(), name.as_bytes().as_ptr());
        assert_eq!(encoded.properties.as_ptr(), NO_PROPERTIES.as_ptr());
        assert_eq!(encoded.payload().as_ptr(), payload.as_ptr());
        let mut out = BytesMut::new();
        encoded.write_to(&mut out, None, true);
        let mut expected = b"\x30\xce\x01\x00\x03a/b\x00".to_vec();
        expected.extend_from_slice(&payload);
        assert_eq!(&out[..], &expected[..]);
    }

    #[test]
    fn alias_only_wire_bytes_and_v3_encodings_are_not_aliasable() {
        let none = DeliveryProperties {
            message: &MessageProperties::default(),
            message_expiry_interval: None,
            subscription_ids: &[],
        };
        let payload = Bytes::from_static(b"x");
        let named = EncodedPublish::new_v5(
            &PublishTopic::Name(topic()),
            &payload,
            QoS::AtLeastOnce,
            false,
            none,
        );
        let mut out = BytesMut::new();
        named.write_aliased_to(
            &mut out,
            PacketId::new(10),
            false,
            OutgoingAlias::Use(alias(5)),
        );
        assert_eq!(&out[..], b"\x32\x09\x00\x00\x00\x0a\x03\x23\x00\x05x");
        out.clear();
        named.write_aliased_to(
            &mut out,
            PacketId::new(10),
            true,
            OutgoingAlias::Define(alias(5)),
        );
        assert_eq!(&out[..], b"\x3a\x0c\x00\x03a/b\x00\x0a\x03\x23\x00\x05x");
        let v3 = EncodedPublish::new(&topic(), &payload, QoS::AtMostOnce, false);
        assert_eq!(v3.aliasable_topic(), None);
        assert_eq!(v3.aliased_len(OutgoingAlias::Use(alias(1))), None);
        out.clear();
        v3.write_aliased_to(&mut out, None, false, OutgoingAlias::Use(alias(1)));
        assert_eq!(&out[..], b"\x30\x06\x00\x03a/bx", "written without alias");
    }
}
