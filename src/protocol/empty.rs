//! The packets without a body: PINGREQ, PINGRESP [MQTT-3.12, 3.13] and DISCONNECT [MQTT-3.14].

use bytes::{Bytes, BytesMut};

use super::error::DecodeError;
use super::fields::FieldReader;
use super::fixed_header::{self, PacketType};

/// Total size of every bodiless packet.
pub(crate) const ENCODED_LEN: usize = 2;

/// Checks that the body of a bodiless packet is indeed empty.
pub(crate) fn decode(packet_type: PacketType, body: Bytes) -> Result<(), DecodeError> {
    FieldReader::new(packet_type.name(), body).finish()
}

/// Appends a bodiless packet of `packet_type`.
pub(crate) fn encode(packet_type: PacketType, out: &mut BytesMut) {
    fixed_header::write(out, packet_type.first_byte(0), 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::{assert_wire, decode_error};
    use crate::protocol::Packet;

    #[test]
    fn bodiless_wire_bytes() {
        assert_wire(&Packet::PingReq, &[0xC0, 0x00]);
        assert_wire(&Packet::PingResp, &[0xD0, 0x00]);
        assert_wire(&Packet::Disconnect, &[0xE0, 0x00]);
    }

    #[test]
    fn bodies_and_flags_are_refused() {
        for (first, name) in [(0xC0, "PINGREQ"), (0xD0, "PINGRESP"), (0xE0, "DISCONNECT")] {
            assert_eq!(
                decode_error(&[first, 0x01, 0x00]),
                DecodeError::TrailingBytes {
                    packet: name,
                    extra: 1
                }
            );
            assert_eq!(
                decode_error(&[first | 0x01, 0x00]),
                DecodeError::InvalidFixedHeaderFlags {
                    packet: name,
                    flags: 1
                }
            );
        }
    }
}
