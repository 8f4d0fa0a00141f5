//! The MQTT 3.1 / 3.1.1 codec: bytes to [`Packet`]s and back, free of I/O.
//!
//! [`decode`] takes one packet off the front of a read buffer: it checks the fixed header
//! first (so an oversized packet is refused before its body is buffered), waits (`Ok(None)`)
//! until the whole packet has arrived, then splits it off the buffer and validates every field
//! a server must check. PUBLISH topics and payloads stay zero-copy slices of the read buffer.
//! [`encode`] appends any packet to a write buffer; [`EncodedPublish`] encodes a PUBLISH once
//! and appends it for many subscribers.
//!
//! One file per packet family: `connect`, `connack`, `publish`, `ack` (the packet-id-only
//! packets), `subscribe` (with SUBACK), `unsubscribe`, `empty` (PINGREQ, PINGRESP,
//! DISCONNECT); `fixed_header` and `fields` hold what they share.

mod ack;
mod connack;
mod connect;
mod empty;
mod error;
mod fields;
mod fixed_header;
mod publish;
mod qos;
mod subscribe;
mod unsubscribe;

#[cfg(test)]
mod rumqttc_interop;
#[cfg(test)]
mod testing;

use bytes::{Buf, Bytes, BytesMut};

pub use self::connack::{ConnAck, ConnectReturnCode};
pub use self::connect::{Connect, LastWill, ProtocolVersion};
pub use self::error::DecodeError;
pub use self::fields::MAX_FIELD_LEN;
pub use self::fixed_header::{FixedHeader, PacketType, MAX_FIXED_HEADER_LEN, MAX_REMAINING_LEN};
pub use self::publish::{EncodedPublish, Publish};
pub use self::qos::{PacketId, QoS};
pub use self::subscribe::{SubAck, SubAckReturnCode, Subscribe};
pub use self::unsubscribe::Unsubscribe;
pub use crate::topic::{TopicFilter, TopicName};

/// Every MQTT 3.1/3.1.1 control packet, as the broker and its clients exchange them.
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
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::ConnAck(_) => PacketType::ConnAck,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubRel(_) => PacketType::PubRel,
            Self::PubComp(_) => PacketType::PubComp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::SubAck(_) => PacketType::SubAck,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) => PacketType::UnsubAck,
            Self::PingReq => PacketType::PingReq,
            Self::PingResp => PacketType::PingResp,
            Self::Disconnect => PacketType::Disconnect,
        }
    }

    /// The specification's name of the packet ("CONNECT", "PUBLISH", ...), for logs.
    pub fn name(&self) -> &'static str {
        self.packet_type().name()
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
/// Fixed-header flags are checked by the MQTT 3.1.1 rules; once a connection is known to
/// speak MQTT 3.1, use [`decode_with`].
pub fn decode(buf: &mut BytesMut, max_packet_size: usize) -> Result<Option<Packet>, DecodeError> {
    decode_with(buf, max_packet_size, None)
}

/// [`decode`] for a connection whose protocol version is known (from its CONNECT). With
/// `Some(ProtocolVersion::V3_1)` the flag bits of packets other than PUBLISH are not
/// enforced, as MQTT 3.1 gives them no fixed value (its PUBREL, SUBSCRIBE and UNSUBSCRIBE may
/// carry DUP on retransmission). `None` (not yet connected) applies the 3.1.1 rules.
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
    decode_body(header.packet_type, header.flags, body).map(Some)
}

/// Decodes the body (the `remaining_len` bytes after the fixed header) of a packet whose fixed
/// header has been checked.
fn decode_body(packet_type: PacketType, flags: u8, body: Bytes) -> Result<Packet, DecodeError> {
    Ok(match packet_type {
        PacketType::Connect => Packet::Connect(Box::new(Connect::decode(body)?)),
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
    })
}

/// Encodes any packet (server-sent ones for the broker, client-sent ones for the load
/// generator and tests) and appends it to `out`. CONNECT is encoded with the protocol name and
/// level of `connect.protocol`.
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
    }
}

#[cfg(test)]
mod tests {
    use smallvec::{smallvec, SmallVec};

    use super::testing::{assert_wire, sample_packets};
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
    fn every_sample_round_trips_at_every_split_point() {
        for packet in sample_packets() {
            let mut wire = BytesMut::new();
            encode(&packet, &mut wire);
            assert_wire(&packet, &wire);
        }
    }

    #[test]
    fn back_to_back_packets_decode_in_order() {
        let packets = sample_packets();
        let mut stream = BytesMut::new();
        for packet in &packets {
            encode(packet, &mut stream);
        }
        for expected in &packets {
            assert_eq!(
                decode(&mut stream, 1 << 20).as_ref(),
                Ok(&Some(expected.clone()))
            );
        }
        assert!(stream.is_empty());
        assert_eq!(decode(&mut stream, 1 << 20), Ok(None));
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
        let protocol = match rng.below(3) {
            0 => None,
            1 => Some(ProtocolVersion::V3_1),
            _ => Some(ProtocolVersion::V3_1_1),
        };
        let max = if rng.below(2) == 0 { usize::MAX } else { 64 };
        while let Ok(Some(packet)) = decode_with(&mut buf, max, protocol) {
            // Whatever decodes must encode back to something that decodes to the same packet.
            let mut again = BytesMut::new();
            encode(&packet, &mut again);
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
