//! The MQTT codec (3.1, 3.1.1 and 5.0): bytes to [`Packet`]s and back, free of I/O.
//!
//! [`decode`] takes one packet off the front of a read buffer: it checks the fixed header
//! first (so an oversized packet is refused before its body is buffered), waits (`Ok(None)`)
//! until the whole packet has arrived, then splits it off the buffer and validates every field
//! a server must check. PUBLISH topics and payloads stay zero-copy slices of the read buffer.
//! [`encode`] appends any packet to a write buffer; [`EncodedPublish`] encodes a PUBLISH once
//! and appends it for many subscribers.
//!
//! The first packet is decoded with [`decode`], which accepts a CONNECT of any version; the
//! connection then passes its version to [`decode_with`], which decodes MQTT 5 packets into
//! the `…V5` variants of [`Packet`] (and [`Packet::Auth`]). Every failure maps to the MQTT 5
//! reason code the connection reports it with ([`DecodeError::reason_code`]).
//!
//! One file per packet family: `connect`, `connack`, `publish`, `ack` (PUBACK, PUBREC, PUBREL,
//! PUBCOMP), `subscribe` (with SUBACK), `unsubscribe` (with the MQTT 5 UNSUBACK), `empty`
//! (PINGREQ, PINGRESP, the 3.1.1 DISCONNECT), `disconnect` (MQTT 5) and `auth`;
//! `fixed_header`, `fields` and `mqtt_string` hold what they share, `properties` the MQTT 5
//! properties and `reason` the MQTT 5 reason codes.

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod empty;
mod error;
mod fields;
mod fixed_header;
mod mqtt_string;
mod properties;
mod publish;
mod qos;
mod reason;
mod subscribe;
mod unsubscribe;

#[cfg(test)]
mod rumqttc_interop;
#[cfg(test)]
mod rumqttc_v5_interop;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod v5_tests;

use bytes::{Buf, Bytes, BytesMut};

pub use self::ack::Ack;
pub use self::auth::Auth;
pub use self::connack::{ConnAck, ConnAckV5, ConnectReturnCode};
pub use self::connect::{Connect, ConnectV5, LastWill, ProtocolVersion};
pub use self::disconnect::Disconnect;
pub use self::error::DecodeError;
pub use self::fields::MAX_FIELD_LEN;
pub use self::fixed_header::{FixedHeader, PacketType, MAX_FIXED_HEADER_LEN, MAX_REMAINING_LEN};
pub use self::mqtt_string::{MqttString, StringError};
pub use self::properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DeliveryProperties,
    DisconnectProperties, MessageProperties, PayloadFormat, PropertyId, PropertyType,
    PublishProperties, SubscribeProperties, SubscriptionId, TopicAlias, UnsubscribeProperties,
    UserProperty, WillProperties, ALL_PROPERTY_IDS,
};
pub use self::publish::{EncodedPublish, OutgoingAlias, Publish, PublishTopic, PublishV5};
pub use self::qos::{PacketId, QoS};
pub use self::reason::{ReasonCode, ALL_REASON_CODES};
pub use self::subscribe::{
    RetainHandling, SubAck, SubAckReturnCode, SubAckV5, Subscribe, SubscribeV5, SubscriptionOptions,
};
pub use self::unsubscribe::{UnsubAck, Unsubscribe, UnsubscribeV5};
pub use crate::topic::{TopicFilter, TopicName};

/// Every control packet, as the broker and its clients exchange them: the MQTT 3.1/3.1.1
/// layouts, and the MQTT 5 ones in the `…V5` variants and [`Packet::Auth`] (PINGREQ and
/// PINGRESP are the same in every version).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// Client request to connect (boxed: it is large and rare).
    Connect(Box<Connect>),
    /// Connect acknowledgment.
    ConnAck(ConnAck),
    /// Application message.
    Publish(Publish),
    /// QoS 1 acknowledgment.
    PubAck(PacketId),
    /// QoS 2 step 1: publish received.
    PubRec(PacketId),
    /// QoS 2 step 2: publish release.
    PubRel(PacketId),
    /// QoS 2 step 3: publish complete.
    PubComp(PacketId),
    /// Subscription request.
    Subscribe(Subscribe),
    /// Subscription acknowledgment.
    SubAck(SubAck),
    /// Unsubscription request.
    Unsubscribe(Unsubscribe),
    /// Unsubscription acknowledgment.
    UnsubAck(PacketId),
    /// Keep-alive probe.
    PingReq,
    /// Keep-alive answer.
    PingResp,
    /// Clean client disconnect.
    Disconnect,
    /// MQTT 5 request to connect (boxed: it is large and rare).
    ConnectV5(Box<ConnectV5>),
    /// MQTT 5 connect acknowledgment.
    ConnAckV5(ConnAckV5),
    /// MQTT 5 application message.
    PublishV5(PublishV5),
    /// MQTT 5 QoS 1 acknowledgment.
    PubAckV5(Ack),
    /// MQTT 5 QoS 2 step 1.
    PubRecV5(Ack),
    /// MQTT 5 QoS 2 step 2.
    PubRelV5(Ack),
    /// MQTT 5 QoS 2 step 3.
    PubCompV5(Ack),
    /// MQTT 5 subscription request.
    SubscribeV5(SubscribeV5),
    /// MQTT 5 subscription acknowledgment.
    SubAckV5(SubAckV5),
    /// MQTT 5 unsubscription request.
    UnsubscribeV5(UnsubscribeV5),
    /// MQTT 5 unsubscription acknowledgment.
    UnsubAckV5(UnsubAck),
    /// MQTT 5 disconnect, from either side.
    DisconnectV5(Disconnect),
    /// MQTT 5 authentication exchange.
    Auth(Auth),
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) | Self::ConnectV5(_) => PacketType::Connect,
            Self::ConnAck(_) | Self::ConnAckV5(_) => PacketType::ConnAck,
            Self::Publish(_) | Self::PublishV5(_) => PacketType::Publish,
            Self::PubAck(_) | Self::PubAckV5(_) => PacketType::PubAck,
            Self::PubRec(_) | Self::PubRecV5(_) => PacketType::PubRec,
            Self::PubRel(_) | Self::PubRelV5(_) => PacketType::PubRel,
            Self::PubComp(_) | Self::PubCompV5(_) => PacketType::PubComp,
            Self::Subscribe(_) | Self::SubscribeV5(_) => PacketType::Subscribe,
            Self::SubAck(_) | Self::SubAckV5(_) => PacketType::SubAck,
            Self::Unsubscribe(_) | Self::UnsubscribeV5(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) | Self::UnsubAckV5(_) => PacketType::UnsubAck,
            Self::PingReq => PacketType::PingReq,
            Self::PingResp => PacketType::PingResp,
            Self::Disconnect | Self::DisconnectV5(_) => PacketType::Disconnect,
            Self::Auth(_) => PacketType::Auth,
        }
    }

    /// The specification's name of the packet ("CONNECT", "PUBLISH", ...), for logs.
    pub fn name(&self) -> &'static str {
        self.packet_type().name()
    }

    /// Total encoded size in bytes: what [`encode`] appends.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::Connect(connect) => connect.encoded_len(),
            Self::ConnAck(connack) => connack.encoded_len(),
            Self::Publish(publish) => publish.encoded_len(),
            Self::PubAck(_)
            | Self::PubRec(_)
            | Self::PubRel(_)
            | Self::PubComp(_)
            | Self::UnsubAck(_) => ack::ENCODED_LEN,
            Self::Subscribe(subscribe) => subscribe.encoded_len(),
            Self::SubAck(suback) => suback.encoded_len(),
            Self::Unsubscribe(unsubscribe) => unsubscribe.encoded_len(),
            Self::PingReq | Self::PingResp | Self::Disconnect => empty::ENCODED_LEN,
            Self::ConnectV5(connect) => connect.encoded_len(),
            Self::ConnAckV5(connack) => connack.encoded_len(),
            Self::PublishV5(publish) => publish.encoded_len(),
            Self::PubAckV5(ack)
            | Self::PubRecV5(ack)
            | Self::PubRelV5(ack)
            | Self::PubCompV5(ack) => ack.encoded_len(),
            Self::SubscribeV5(subscribe) => subscribe.encoded_len(),
            Self::SubAckV5(suback) => suback.encoded_len(),
            Self::UnsubscribeV5(unsubscribe) => unsubscribe.encoded_len(),
            Self::UnsubAckV5(unsuback) => unsuback.encoded_len(),
            Self::DisconnectV5(disconnect) => disconnect.encoded_len(),
            Self::Auth(auth) => auth.encoded_len(),
        }
    }

    /// Makes the packet fit the receiver's maximum packet size where MQTT 5 allows it (by
    /// dropping the reason string, then the user properties, of packets that have them) and
    /// returns whether it fits. A packet that does not fit must not be sent [MQTT-3.1.2-24]:
    /// a PUBLISH is then dropped as if delivered [MQTT-3.1.2-25].
    pub fn fit_within(&mut self, max_packet_size: usize) -> bool {
        match self {
            Self::ConnAckV5(connack) => connack.fit_within(max_packet_size),
            Self::PubAckV5(ack)
            | Self::PubRecV5(ack)
            | Self::PubRelV5(ack)
            | Self::PubCompV5(ack) => ack.fit_within(max_packet_size),
            Self::SubAckV5(suback) => suback.fit_within(max_packet_size),
            Self::UnsubAckV5(unsuback) => unsuback.fit_within(max_packet_size),
            Self::DisconnectV5(disconnect) => disconnect.fit_within(max_packet_size),
            Self::Auth(auth) => auth.fit_within(max_packet_size),
            other => other.encoded_len() <= max_packet_size,
        }
    }
}

/// Decodes one packet from the front of `buf`.
///
/// `Ok(None)` means the packet is incomplete: nothing was consumed; call again when more
/// bytes have arrived. A packet whose total size (fixed header + remaining length) exceeds
/// `max_packet_size` is refused from its fixed header alone, before its body is buffered,
/// with [`DecodeError::PacketTooLarge`]. On success the packet's bytes are split off `buf`
/// and PUBLISH topic and payload are zero-copy slices of them. After an error the connection
/// must be closed; what is left in `buf` is unspecified.
///
/// A CONNECT of any version decodes (MQTT 5 to [`Packet::ConnectV5`]); other packets by the
/// MQTT 3.1.1 rules. Once a connection's version is known, use [`decode_with`].
pub fn decode(buf: &mut BytesMut, max_packet_size: usize) -> Result<Option<Packet>, DecodeError> {
    decode_with(buf, max_packet_size, None)
}

/// [`decode`] for a connection whose protocol version is known (from its CONNECT).
///
/// With `Some(ProtocolVersion::V5)` packets decode to their MQTT 5 layouts (the `…V5`
/// variants and [`Packet::Auth`]). With `Some(ProtocolVersion::V3_1)` the flag bits of packets
/// other than PUBLISH are not enforced, as MQTT 3.1 gives them no fixed value (its PUBREL,
/// SUBSCRIBE and UNSUBSCRIBE may carry DUP on retransmission). `None` (not yet connected)
/// applies the 3.1.1 rules.
pub fn decode_with(
    buf: &mut BytesMut,
    max_packet_size: usize,
    protocol: Option<ProtocolVersion>,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = FixedHeader::parse(buf, max_packet_size, protocol)? else {
        return Ok(None);
    };
    if buf.len() < header.packet_len() {
        return Ok(None);
    }
    let mut body = buf.split_to(header.packet_len()).freeze();
    body.advance(header.header_len);
    if header.packet_type == PacketType::Connect {
        connect::decode(body).map(Some)
    } else if protocol == Some(ProtocolVersion::V5) {
        decode_v5_body(header.packet_type, header.flags, body).map(Some)
    } else {
        decode_body(header.packet_type, header.flags, body).map(Some)
    }
}

/// Decodes the body (the `remaining_len` bytes after the fixed header) of an MQTT 3.1/3.1.1
/// packet other than CONNECT whose fixed header has been checked.
fn decode_body(packet_type: PacketType, flags: u8, body: Bytes) -> Result<Packet, DecodeError> {
    Ok(match packet_type {
        PacketType::Connect => connect::decode(body)?,
        PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(body)?),
        PacketType::Publish => Packet::Publish(Publish::decode(flags, body)?),
        PacketType::PubAck => Packet::PubAck(ack::decode(packet_type, body)?),
        PacketType::PubRec => Packet::PubRec(ack::decode(packet_type, body)?),
        PacketType::PubRel => Packet::PubRel(ack::decode(packet_type, body)?),
        PacketType::PubComp => Packet::PubComp(ack::decode(packet_type, body)?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(body)?),
        PacketType::SubAck => Packet::SubAck(SubAck::decode(body)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(body)?),
        PacketType::UnsubAck => Packet::UnsubAck(ack::decode(packet_type, body)?),
        PacketType::PingReq => {
            empty::decode(packet_type, body)?;
            Packet::PingReq
        }
        PacketType::PingResp => {
            empty::decode(packet_type, body)?;
            Packet::PingResp
        }
        PacketType::Disconnect => {
            empty::decode(packet_type, body)?;
            Packet::Disconnect
        }
        // The fixed header refuses type 15 outside MQTT 5.
        PacketType::Auth => return Err(DecodeError::ReservedPacketType(packet_type as u8)),
    })
}

/// Decodes the body of an MQTT 5 packet other than CONNECT whose fixed header has been
/// checked.
fn decode_v5_body(packet_type: PacketType, flags: u8, body: Bytes) -> Result<Packet, DecodeError> {
    Ok(match packet_type {
        PacketType::Connect => connect::decode(body)?,
        PacketType::ConnAck => Packet::ConnAckV5(ConnAckV5::decode(body)?),
        PacketType::Publish => Packet::PublishV5(PublishV5::decode(flags, body)?),
        PacketType::PubAck => Packet::PubAckV5(Ack::decode(packet_type, body)?),
        PacketType::PubRec => Packet::PubRecV5(Ack::decode(packet_type, body)?),
        PacketType::PubRel => Packet::PubRelV5(Ack::decode(packet_type, body)?),
        PacketType::PubComp => Packet::PubCompV5(Ack::decode(packet_type, body)?),
        PacketType::Subscribe => Packet::SubscribeV5(SubscribeV5::decode(body)?),
        PacketType::SubAck => Packet::SubAckV5(SubAckV5::decode(body)?),
        PacketType::Unsubscribe => Packet::UnsubscribeV5(UnsubscribeV5::decode(body)?),
        PacketType::UnsubAck => Packet::UnsubAckV5(UnsubAck::decode(body)?),
        PacketType::PingReq => {
            empty::decode(packet_type, body)?;
            Packet::PingReq
        }
        PacketType::PingResp => {
            empty::decode(packet_type, body)?;
            Packet::PingResp
        }
        PacketType::Disconnect => Packet::DisconnectV5(Disconnect::decode(body)?),
        PacketType::Auth => Packet::Auth(Auth::decode(body)?),
    })
}

/// Encodes any packet (server-sent ones for the broker, client-sent ones for the load
/// generator and tests) and appends it to `out`: the `…V5` variants and [`Packet::Auth`] in
/// their MQTT 5 layout (acknowledgements, DISCONNECT and AUTH in their shortest form), the
/// others in the MQTT 3.1/3.1.1 one. CONNECT is encoded with the protocol name and level of
/// `connect.protocol`.
///
/// The packet must fit the wire format: strings and binary fields at most 65535 bytes
/// ([`MAX_FIELD_LEN`]) and a body at most [`MAX_REMAINING_LEN`] bytes; a QoS 1/2 PUBLISH
/// carries a packet id. Everything decoded, or built from validated topics and a payload under
/// the broker's packet size limit, does.
pub fn encode(packet: &Packet, out: &mut BytesMut) {
    let packet_type = packet.packet_type();
    match packet {
        Packet::Connect(connect) => connect.encode(out),
        Packet::ConnAck(connack) => connack.encode(out),
        Packet::Publish(publish) => publish.encode(out),
        Packet::PubAck(id)
        | Packet::PubRec(id)
        | Packet::PubRel(id)
        | Packet::PubComp(id)
        | Packet::UnsubAck(id) => ack::encode(packet_type, *id, out),
        Packet::Subscribe(subscribe) => subscribe.encode(out),
        Packet::SubAck(suback) => suback.encode(out),
        Packet::Unsubscribe(unsubscribe) => unsubscribe.encode(out),
        Packet::PingReq | Packet::PingResp | Packet::Disconnect => empty::encode(packet_type, out),
        Packet::ConnectV5(connect) => connect.encode(out),
        Packet::ConnAckV5(connack) => connack.encode(out),
        Packet::PublishV5(publish) => publish.encode(out),
        Packet::PubAckV5(ack)
        | Packet::PubRecV5(ack)
        | Packet::PubRelV5(ack)
        | Packet::PubCompV5(ack) => ack.encode(packet_type, out),
        Packet::SubscribeV5(subscribe) => subscribe.encode(out),
        Packet::SubAckV5(suback) => suback.encode(out),
        Packet::UnsubscribeV5(unsubscribe) => unsubscribe.encode(out),
        Packet::UnsubAckV5(unsuback) => unsuback.encode(out),
        Packet::DisconnectV5(disconnect) => disconnect.encode(out),
        Packet::Auth(auth) => auth.encode(out),
    }
}

#[cfg(test)]
mod tests {
    use smallvec::{smallvec, SmallVec};

    use super::testing::{assert_samples_round_trip, sample_packets, sample_packets_v5};
    use super::*;

    #[test]
    fn every_packet_type_has_a_name() {
        let names: Vec<&str> = sample_packets().iter().map(Packet::name).collect();
        assert_eq!(
            names,
            [
                "CONNECT",
                "CONNECT",
                "CONNACK",
                "PUBLISH",
                "PUBLISH",
                "PUBACK",
                "PUBREC",
                "PUBREL",
                "PUBCOMP",
                "SUBSCRIBE",
                "SUBACK",
                "UNSUBSCRIBE",
                "UNSUBACK",
                "PINGREQ",
                "PINGRESP",
                "DISCONNECT",
            ]
        );
    }

    #[test]
    fn every_sample_round_trips_and_decodes_back_to_back() {
        assert_samples_round_trip(None, &sample_packets());
    }

    #[test]
    fn v31_connections_tolerate_dup_on_qos1_control_packets() {
        let wire = [0x6A, 0x02, 0x00, 0x05];
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(
            decode(&mut buf, 16),
            Err(DecodeError::InvalidFixedHeaderFlags {
                packet: "PUBREL",
                flags: 0x0A
            })
        );
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(
            decode_with(&mut buf, 16, Some(ProtocolVersion::V3_1)),
            Ok(PacketId::new(5).map(Packet::PubRel))
        );
        let mut buf = BytesMut::from(&wire[..]);
        assert!(decode_with(&mut buf, 16, Some(ProtocolVersion::V3_1_1)).is_err());
    }

    #[test]
    fn oversized_packet_is_refused_before_its_body_arrives() {
        let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0x03][..]);
        assert_eq!(
            decode(&mut buf, 65_536),
            Err(DecodeError::PacketTooLarge {
                size: 65_535 + 4,
                max: 65_536
            })
        );
        let mut buf = BytesMut::from(&[0x82, 0x80, 0x80, 0x80, 0x01][..]);
        assert_eq!(
            decode(&mut buf, 1024),
            Err(DecodeError::PacketTooLarge {
                size: 2_097_152 + 5,
                max: 1024
            })
        );
    }

    #[test]
    fn subscribe_with_many_filters_spills_the_small_vec() {
        let filters: SmallVec<[(TopicFilter, QoS); 4]> = (0..10)
            .map(|i| {
                let filter = TopicFilter::try_from(format!("f/{i}").as_str()).unwrap();
                (filter, QoS::AtLeastOnce)
            })
            .collect();
        let packet = Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(3).unwrap(),
            filters,
        });
        let mut wire = BytesMut::new();
        encode(&packet, &mut wire);
        assert_eq!(decode(&mut wire, 1024), Ok(Some(packet)));
        let suback = Packet::SubAck(SubAck {
            packet_id: PacketId::new(3).unwrap(),
            return_codes: smallvec![SubAckReturnCode::Failure; 10],
        });
        encode(&suback, &mut wire);
        assert_eq!(decode(&mut wire, 1024), Ok(Some(suback)));
    }

    /// xorshift64: a tiny deterministic generator, so the test needs no extra crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, bound: usize) -> usize {
            // The modulo keeps the value below `bound`, a usize.
            (self.next() % bound as u64) as usize
        }
    }

    /// Decodes `input` until it is exhausted, incomplete or refused; must never panic.
    fn decode_everything(input: &[u8], rng: &mut XorShift) {
        let mut buf = BytesMut::from(input);
        let protocol = match rng.below(4) {
            0 => None,
            1 => Some(ProtocolVersion::V3_1),
            2 => Some(ProtocolVersion::V3_1_1),
            _ => Some(ProtocolVersion::V5),
        };
        let max = if rng.below(2) == 0 { usize::MAX } else { 64 };
        while let Ok(Some(packet)) = decode_with(&mut buf, max, protocol) {
            // Whatever decodes must encode back to something that decodes to the same packet.
            let mut again = BytesMut::new();
            encode(&packet, &mut again);
            assert_eq!(again.len(), packet.encoded_len());
            assert_eq!(
                decode_with(&mut again, usize::MAX, protocol),
                Ok(Some(packet))
            );
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let len = rng.below(64);
            let mut input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Bias the first byte towards real packet types so bodies get exercised too.
            if let Some(first) = input.first_mut() {
                if rng.below(2) == 0 {
                    *first = (*first & 0xF0).max(0x10);
                }
            }
            decode_everything(&input, &mut rng);
        }
    }

    #[test]
    fn mutated_valid_packets_never_panic() {
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let samples: Vec<Vec<u8>> = sample_packets()
            .iter()
            .chain(&sample_packets_v5())
            .map(|packet| {
                let mut wire = BytesMut::new();
                encode(packet, &mut wire);
                wire.to_vec()
            })
            .collect();
        for _ in 0..50_000 {
            let mut input = samples[rng.below(samples.len())].clone();
            for _ in 0..=rng.below(3) {
                match rng.below(3) {
                    0 => {
                        let at = rng.below(input.len());
                        input[at] = rng.next() as u8;
                    }
                    1 => {
                        let at = rng.below(input.len());
                        input[at] ^= 1 << rng.below(8);
                    }
                    _ => input.truncate(rng.below(input.len()) + 1),
                }
            }
            decode_everything(&input, &mut rng);
        }
    }
}
