//! The fixed header every packet starts with: packet type, four flag bits and the remaining
//! length (a base-128 varint of one to four bytes). It is checked on its own, before the body
//! has arrived, so an oversized or nonsensical packet is refused without buffering it.

use bytes::{BufMut, BytesMut};

use super::connect::ProtocolVersion;
use super::error::DecodeError;

/// Largest remaining length four varint bytes can carry (256 MiB - 1) [MQTT-2.2.3].
pub const MAX_REMAINING_LEN: usize = 268_435_455;

/// Largest fixed header: one type byte and four remaining-length bytes.
pub const MAX_FIXED_HEADER_LEN: usize = 5;

/// Bytes the remaining length may occupy at most.
const MAX_REMAINING_LEN_BYTES: usize = 4;

/// Flag bits PUBREL, SUBSCRIBE and UNSUBSCRIBE must carry [MQTT-3.6.1-1, 3.8.1-1, 3.10.1-1].
const QOS1_FLAGS: u8 = 0b0010;

/// PUBLISH flag bits: DUP, the two QoS bits and RETAIN.
pub(crate) const PUBLISH_DUP: u8 = 0b1000;
pub(crate) const PUBLISH_QOS_SHIFT: u8 = 1;
pub(crate) const PUBLISH_RETAIN: u8 = 0b0001;

/// The control packet types, by their wire value (the high nibble of byte 1): fourteen in
/// MQTT 3.1/3.1.1, fifteen in MQTT 5 (which adds AUTH).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// Client request to connect.
    Connect = 1,
    /// Connect acknowledgment.
    ConnAck = 2,
    /// Application message.
    Publish = 3,
    /// QoS 1 acknowledgment.
    PubAck = 4,
    /// QoS 2 step 1: publish received.
    PubRec = 5,
    /// QoS 2 step 2: publish release.
    PubRel = 6,
    /// QoS 2 step 3: publish complete.
    PubComp = 7,
    /// Subscription request.
    Subscribe = 8,
    /// Subscription acknowledgment.
    SubAck = 9,
    /// Unsubscription request.
    Unsubscribe = 10,
    /// Unsubscription acknowledgment.
    UnsubAck = 11,
    /// Keep-alive probe.
    PingReq = 12,
    /// Keep-alive answer.
    PingResp = 13,
    /// Clean client disconnect (MQTT 5: either side, with a reason).
    Disconnect = 14,
    /// MQTT 5 enhanced authentication exchange.
    Auth = 15,
}

impl PacketType {
    /// The type for a wire value; 0 (and anything wider than a nibble) is refused. 15 is AUTH,
    /// which only MQTT 5 connections may send: [`FixedHeader::parse`] refuses it otherwise.
    pub fn from_u8(value: u8) -> Result<Self, DecodeError> {
        Ok(match value {
            1 => Self::Connect,
            2 => Self::ConnAck,
            3 => Self::Publish,
            4 => Self::PubAck,
            5 => Self::PubRec,
            6 => Self::PubRel,
            7 => Self::PubComp,
            8 => Self::Subscribe,
            9 => Self::SubAck,
            10 => Self::Unsubscribe,
            11 => Self::UnsubAck,
            12 => Self::PingReq,
            13 => Self::PingResp,
            14 => Self::Disconnect,
            15 => Self::Auth,
            other => return Err(DecodeError::ReservedPacketType(other)),
        })
    }

    /// The name the specification uses, for logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::ConnAck => "CONNACK",
            Self::Publish => "PUBLISH",
            Self::PubAck => "PUBACK",
            Self::PubRec => "PUBREC",
            Self::PubRel => "PUBREL",
            Self::PubComp => "PUBCOMP",
            Self::Subscribe => "SUBSCRIBE",
            Self::SubAck => "SUBACK",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::UnsubAck => "UNSUBACK",
            Self::PingReq => "PINGREQ",
            Self::PingResp => "PINGRESP",
            Self::Disconnect => "DISCONNECT",
            Self::Auth => "AUTH",
        }
    }

    /// The flag bits every packet of this type carries (PUBLISH: the base its flags are
    /// added to).
    pub(crate) fn fixed_flags(self) -> u8 {
        match self {
            Self::PubRel | Self::Subscribe | Self::Unsubscribe => QOS1_FLAGS,
            _ => 0,
        }
    }

    /// Byte 1 of a packet of this type with `flags` in its low nibble.
    pub(crate) fn first_byte(self, flags: u8) -> u8 {
        ((self as u8) << 4) | (flags & 0x0F)
    }
}

/// A checked fixed header: what the packet is and how many bytes it occupies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedHeader {
    /// The packet type.
    pub packet_type: PacketType,
    /// The low nibble of byte 1 (meaningful for PUBLISH only).
    pub flags: u8,
    /// Bytes taken by the fixed header itself (2 to 5).
    pub header_len: usize,
    /// Bytes that follow the fixed header.
    pub remaining_len: usize,
}

impl FixedHeader {
    /// Checks the fixed header at the front of `buf`.
    ///
    /// `Ok(None)` means the header itself is incomplete. A reserved type or invalid flags are
    /// reported from the first byte alone; a packet whose total size exceeds
    /// `max_packet_size` is refused as soon as its remaining length is known.
    ///
    /// `protocol` is the connection's protocol once its CONNECT was accepted: MQTT 3.1 gives no
    /// meaning to the flag bits of packets other than PUBLISH (its PUBREL, SUBSCRIBE and
    /// UNSUBSCRIBE may even carry DUP), so they are only enforced for 3.1.1 or when unknown.
    pub fn parse(
        buf: &[u8],
        max_packet_size: usize,
        protocol: Option<ProtocolVersion>,
    ) -> Result<Option<Self>, DecodeError> {
        let Some((&first, length_bytes)) = buf.split_first() else {
            return Ok(None);
        };
        let packet_type = PacketType::from_u8(first >> 4)?;
        if packet_type == PacketType::Auth && protocol != Some(ProtocolVersion::V5) {
            return Err(DecodeError::ReservedPacketType(first >> 4));
        }
        let flags = first & 0x0F;
        check_flags(packet_type, flags, protocol)?;

        let mut remaining_len = 0usize;
        for (index, &byte) in length_bytes
            .iter()
            .take(MAX_REMAINING_LEN_BYTES)
            .enumerate()
        {
            remaining_len |= usize::from(byte & 0x7F) << (7 * index);
            if byte & 0x80 == 0 {
                let header_len = 2 + index;
                let size = header_len + remaining_len;
                if size > max_packet_size {
                    return Err(DecodeError::PacketTooLarge {
                        size,
                        max: max_packet_size,
                    });
                }
                return Ok(Some(Self {
                    packet_type,
                    flags,
                    header_len,
                    remaining_len,
                }));
            }
        }
        if length_bytes.len() >= MAX_REMAINING_LEN_BYTES {
            Err(DecodeError::MalformedRemainingLength)
        } else {
            Ok(None)
        }
    }

    /// Total size of the packet: fixed header plus remaining length.
    pub fn packet_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Enforces the flag bits of [MQTT-2.2.2] and the PUBLISH QoS/DUP rules.
fn check_flags(
    packet_type: PacketType,
    flags: u8,
    protocol: Option<ProtocolVersion>,
) -> Result<(), DecodeError> {
    if packet_type == PacketType::Publish {
        let qos = (flags >> PUBLISH_QOS_SHIFT) & 0b11;
        if qos == 3 {
            return Err(DecodeError::InvalidQoS(qos));
        }
        if qos == 0 && flags & PUBLISH_DUP != 0 {
            return Err(DecodeError::DupOnQoS0);
        }
        return Ok(());
    }
    if protocol == Some(ProtocolVersion::V3_1) || flags == packet_type.fixed_flags() {
        return Ok(());
    }
    Err(DecodeError::InvalidFixedHeaderFlags {
        packet: packet_type.name(),
        flags,
    })
}

/// Bytes the varint encoding of `remaining_len` occupies.
pub fn remaining_len_size(remaining_len: usize) -> usize {
    match remaining_len {
        0..=0x7F => 1,
        0x80..=0x3FFF => 2,
        0x4000..=0x1F_FFFF => 3,
        _ => 4,
    }
}

/// Total encoded size of a packet whose body is `remaining_len` bytes.
pub fn packet_len(remaining_len: usize) -> usize {
    1 + remaining_len_size(remaining_len) + remaining_len
}

/// Appends a fixed header and reserves room for the body that follows. `remaining_len` must
/// not exceed [`MAX_REMAINING_LEN`] (every packet built from decoded or validated parts fits).
pub(crate) fn write(out: &mut BytesMut, first_byte: u8, remaining_len: usize) {
    out.reserve(packet_len(remaining_len));
    out.put_u8(first_byte);
    write_remaining_len(out, remaining_len);
}

/// Appends the remaining-length varint alone.
pub(crate) fn write_remaining_len(out: &mut BytesMut, remaining_len: usize) {
    let (bytes, len) = remaining_len_bytes(remaining_len);
    out.put_slice(&bytes[..len]);
}

/// The remaining-length varint: its bytes (the first `len` are used) and `len`, 1 to 4.
/// `remaining_len` must not exceed [`MAX_REMAINING_LEN`].
pub(crate) fn remaining_len_bytes(remaining_len: usize) -> ([u8; MAX_REMAINING_LEN_BYTES], usize) {
    debug_assert!(
        remaining_len <= MAX_REMAINING_LEN,
        "packet too large to encode"
    );
    let mut bytes = [0u8; MAX_REMAINING_LEN_BYTES];
    let mut rest = remaining_len;
    let mut len = 0;
    // Four 7-bit groups hold every valid length; a larger one (a caller bug) is cut short
    // rather than overrunning the array.
    for byte in &mut bytes {
        // The mask keeps 7 bits, so the cast cannot truncate.
        *byte = (rest & 0x7F) as u8;
        rest >>= 7;
        len += 1;
        if rest == 0 {
            break;
        }
        *byte |= 0x80;
    }
    (bytes, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
        FixedHeader::parse(bytes, usize::MAX, None)
    }

    #[test]
    fn remaining_length_boundaries_round_trip() {
        let cases: [(usize, &[u8]); 8] = [
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (MAX_REMAINING_LEN, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for (len, varint) in cases {
            let mut out = BytesMut::new();
            write(&mut out, 0x30, len);
            let mut expected = vec![0x30];
            expected.extend_from_slice(varint);
            assert_eq!(&out[..], &expected[..], "{len}");
            assert_eq!(remaining_len_size(len), varint.len());
            let header = parse(&expected).unwrap().unwrap();
            assert_eq!(header.remaining_len, len);
            assert_eq!(header.header_len, 1 + varint.len());
            assert_eq!(header.packet_len(), packet_len(len));
        }
    }

    #[test]
    fn non_minimal_remaining_length_is_accepted() {
        let header = parse(&[0xC0, 0x80, 0x00]).unwrap().unwrap();
        assert_eq!(header.remaining_len, 0);
        assert_eq!(header.header_len, 3);
    }

    #[test]
    fn fifth_length_byte_is_malformed() {
        assert_eq!(
            parse(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(DecodeError::MalformedRemainingLength)
        );
        assert_eq!(
            parse(&[0x30, 0x80, 0x80, 0x80, 0x80]),
            Err(DecodeError::MalformedRemainingLength)
        );
    }

    #[test]
    fn incomplete_headers_wait() {
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(parse(&[0x30]), Ok(None));
        assert_eq!(parse(&[0x30, 0x80]), Ok(None));
        assert_eq!(parse(&[0x30, 0xFF, 0xFF, 0xFF]), Ok(None));
    }

    #[test]
    fn reserved_types_are_refused_from_the_first_byte() {
        assert_eq!(parse(&[0x00]), Err(DecodeError::ReservedPacketType(0)));
        assert_eq!(parse(&[0xF0]), Err(DecodeError::ReservedPacketType(15)));
        for v3 in [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1] {
            assert_eq!(
                FixedHeader::parse(&[0xF0, 0], usize::MAX, Some(v3)),
                Err(DecodeError::ReservedPacketType(15))
            );
        }
        let v5 = Some(ProtocolVersion::V5);
        let auth = FixedHeader::parse(&[0xF0, 0], usize::MAX, v5)
            .unwrap()
            .unwrap();
        assert_eq!(auth.packet_type, PacketType::Auth);
        assert_eq!(
            FixedHeader::parse(&[0xF1, 0], usize::MAX, v5),
            Err(DecodeError::InvalidFixedHeaderFlags {
                packet: "AUTH",
                flags: 1
            })
        );
        assert_eq!(
            FixedHeader::parse(&[0x60, 0], usize::MAX, v5),
            Err(DecodeError::InvalidFixedHeaderFlags {
                packet: "PUBREL",
                flags: 0
            })
        );
    }

    #[test]
    fn flags_are_enforced_per_type() {
        for value in 1..=14u8 {
            let packet_type = PacketType::from_u8(value).unwrap();
            if packet_type == PacketType::Publish {
                continue;
            }
            let good = packet_type.fixed_flags();
            assert!(parse(&[packet_type.first_byte(good), 0]).is_ok());
            for flags in (0..16u8).filter(|&f| f != good) {
                assert_eq!(
                    parse(&[packet_type.first_byte(flags), 0]),
                    Err(DecodeError::InvalidFixedHeaderFlags {
                        packet: packet_type.name(),
                        flags
                    })
                );
                let v31 = FixedHeader::parse(
                    &[packet_type.first_byte(flags), 0],
                    usize::MAX,
                    Some(ProtocolVersion::V3_1),
                );
                assert!(v31.is_ok(), "3.1 ignores flags of {}", packet_type.name());
            }
        }
    }

    #[test]
    fn publish_flags_refuse_qos_3_and_dup_on_qos_0() {
        assert_eq!(parse(&[0x36, 0]), Err(DecodeError::InvalidQoS(3)));
        assert_eq!(parse(&[0x3F, 0]), Err(DecodeError::InvalidQoS(3)));
        assert_eq!(parse(&[0x38, 0]), Err(DecodeError::DupOnQoS0));
        for ok in [0x30, 0x31, 0x32, 0x33, 0x34, 0x3A, 0x3D] {
            assert!(parse(&[ok, 0]).is_ok(), "{ok:#x}");
        }
    }

    #[test]
    fn oversized_packets_are_refused_from_the_header_alone() {
        assert_eq!(
            FixedHeader::parse(&[0x30, 0x80, 0x01], 130, None),
            Err(DecodeError::PacketTooLarge {
                size: 131,
                max: 130
            })
        );
        assert!(FixedHeader::parse(&[0x30, 0x80, 0x01], 131, None).is_ok());
    }
}
