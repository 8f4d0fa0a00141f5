//! The typed fields packet bodies are made of [MQTT-1.5]: big-endian integers, variable byte
//! integers, packet identifiers, length-prefixed UTF-8 strings and binary data. Reading
//! borrows from the packet's `Bytes` (no copy); writing appends to an output buffer.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::DecodeError;
use super::fixed_header::{remaining_len_size, write_remaining_len};
use super::mqtt_string::{MqttString, StringError};
use super::qos::PacketId;
use crate::topic::{TopicFilter, TopicName};

/// Largest string or binary field the 16-bit length prefix can announce.
pub const MAX_FIELD_LEN: usize = u16::MAX as usize;

/// A cursor over one packet's body (the bytes after the fixed header). Every read checks the
/// body's end, so a field that runs past the remaining length is `Truncated`, never a panic.
pub(crate) struct FieldReader {
    /// What is left of the body; reads advance it (`Bytes::advance` is O(1), no copy).
    rest: Bytes,
    /// The packet's name, for errors.
    packet: &'static str,
}

impl FieldReader {
    /// Starts reading `body`, the remaining-length bytes of a `packet`.
    pub(crate) fn new(packet: &'static str, body: Bytes) -> Self {
        Self { rest: body, packet }
    }

    fn truncated(&self) -> DecodeError {
        DecodeError::Truncated {
            packet: self.packet,
        }
    }

    /// Takes the next `len` bytes, sharing the packet's memory.
    pub(crate) fn bytes(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        if self.rest.len() < len {
            return Err(self.truncated());
        }
        Ok(self.rest.split_to(len))
    }

    /// Reads one byte.
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.rest.is_empty() {
            return Err(self.truncated());
        }
        Ok(self.rest.get_u8())
    }

    /// Reads a big-endian two-byte integer.
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.rest.len() < 2 {
            return Err(self.truncated());
        }
        Ok(self.rest.get_u16())
    }

    /// Reads a big-endian four-byte integer.
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.rest.len() < 4 {
            return Err(self.truncated());
        }
        Ok(self.rest.get_u32())
    }

    /// Reads a variable byte integer [MQTT-1.5.5]: one to four bytes, seven bits each.
    pub(crate) fn var_int(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for index in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7F) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::MalformedVariableByteInteger {
            packet: self.packet,
        })
    }

    /// Splits off the next `len` bytes as a reader of their own (a property block), so
    /// nothing read from it can run past its end.
    pub(crate) fn sub_reader(&mut self, len: usize) -> Result<FieldReader, DecodeError> {
        Ok(FieldReader::new(self.packet, self.bytes(len)?))
    }

    /// Reads a packet identifier, refusing 0 [MQTT-2.3.1-1].
    pub(crate) fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?).ok_or(DecodeError::ZeroPacketId {
            packet: self.packet,
        })
    }

    /// Reads binary data: a two-byte length, then that many bytes.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.bytes(usize::from(len))
    }

    /// Reads a UTF-8 string [MQTT-1.5.3]: well-formed and free of U+0000. `field` names it
    /// in errors.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let raw = self.binary()?;
        let text = std::str::from_utf8(&raw).map_err(|_| DecodeError::InvalidUtf8 { field })?;
        if text.contains('\0') {
            return Err(DecodeError::NullCharacter { field });
        }
        Ok(text.to_owned())
    }

    /// Reads a UTF-8 string without copying it. `field` names it in errors.
    pub(crate) fn mqtt_string(&mut self, field: &'static str) -> Result<MqttString, DecodeError> {
        MqttString::new(self.binary()?).map_err(|error| match error {
            StringError::NullCharacter => DecodeError::NullCharacter { field },
            StringError::InvalidUtf8 | StringError::TooLong => DecodeError::InvalidUtf8 { field },
        })
    }

    /// Reads a topic name (validated, sharing the packet's memory).
    pub(crate) fn topic_name(&mut self) -> Result<TopicName, DecodeError> {
        Ok(TopicName::new(self.binary()?)?)
    }

    /// Reads a topic filter (validated, sharing the packet's memory).
    pub(crate) fn topic_filter(&mut self) -> Result<TopicFilter, DecodeError> {
        Ok(TopicFilter::new(self.binary()?)?)
    }

    /// Whether the body has been read to its end.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Takes everything left (a PUBLISH payload).
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.rest)
    }

    /// Ends a packet whose fields fill the body exactly: leftovers are `TrailingBytes`.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                packet: self.packet,
                extra: self.rest.len(),
            })
        }
    }
}

/// Encoded size of a string or binary field holding `len` bytes.
pub(crate) fn field_len(len: usize) -> usize {
    2 + len
}

/// Encoded size of a variable byte integer.
pub(crate) fn var_int_len(value: usize) -> usize {
    remaining_len_size(value)
}

/// Appends a variable byte integer; `value` must be below 2^28 (every length and identifier
/// this codec writes is).
pub(crate) fn put_var_int(out: &mut BytesMut, value: usize) {
    write_remaining_len(out, value);
}

/// Appends binary data (or the bytes of a UTF-8 string) with its length prefix. The caller
/// guarantees `data` fits a 16-bit length: topics are validated to, and the other strings
/// are documented preconditions of `encode`.
pub(crate) fn put_binary(out: &mut BytesMut, data: &[u8]) {
    debug_assert!(data.len() <= MAX_FIELD_LEN, "field longer than 65535 bytes");
    // Lossless for every field within the documented 65535-byte limit.
    out.put_u16(data.len() as u16);
    out.put_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &'static [u8]) -> FieldReader {
        FieldReader::new("TEST", Bytes::from_static(bytes))
    }

    #[test]
    fn strings_are_length_prefixed_utf8() {
        let mut r = reader(b"\x00\x03abc\x00\x00");
        assert_eq!(r.string("s").unwrap(), "abc");
        assert_eq!(r.string("s").unwrap(), "");
        assert!(r.finish().is_ok());

        let mut out = BytesMut::new();
        put_binary(&mut out, "h\u{e9}".as_bytes());
        assert_eq!(&out[..], b"\x00\x03h\xc3\xa9");
    }

    #[test]
    fn malformed_strings_are_refused() {
        assert_eq!(
            reader(b"\x00\x01\xff").string("f"),
            Err(DecodeError::InvalidUtf8 { field: "f" })
        );
        // An encoded UTF-16 surrogate (U+D800) is not well-formed UTF-8 [MQTT-1.5.3-1].
        assert_eq!(
            reader(b"\x00\x03\xed\xa0\x80").string("f"),
            Err(DecodeError::InvalidUtf8 { field: "f" })
        );
        assert_eq!(
            reader(b"\x00\x02a\x00").string("f"),
            Err(DecodeError::NullCharacter { field: "f" })
        );
    }

    #[test]
    fn reads_past_the_end_are_truncated() {
        let truncated = DecodeError::Truncated { packet: "TEST" };
        assert_eq!(reader(b"\x00\x05abc").binary(), Err(truncated));
        assert_eq!(reader(b"\x00").binary(), Err(truncated));
        assert_eq!(reader(b"").u8(), Err(truncated));
        assert_eq!(reader(b"\x01").u16(), Err(truncated));
    }

    #[test]
    fn variable_byte_integers_take_one_to_four_bytes() {
        let cases: [(u32, &[u8]); 5] = [
            (0, b"\x00"),
            (127, b"\x7f"),
            (128, b"\x80\x01"),
            (16_384, b"\x80\x80\x01"),
            (268_435_455, b"\xff\xff\xff\x7f"),
        ];
        for (value, wire) in cases {
            let mut r = FieldReader::new("TEST", Bytes::copy_from_slice(wire));
            assert_eq!(r.var_int(), Ok(value));
            assert!(r.is_empty());
            let mut out = BytesMut::new();
            put_var_int(&mut out, value as usize);
            assert_eq!(&out[..], wire);
            assert_eq!(var_int_len(value as usize), wire.len());
        }
        assert_eq!(
            reader(b"\xff\xff\xff\xff\x01").var_int(),
            Err(DecodeError::MalformedVariableByteInteger { packet: "TEST" })
        );
        assert_eq!(
            reader(b"\x80\x80").var_int(),
            Err(DecodeError::Truncated { packet: "TEST" })
        );
    }

    #[test]
    fn sub_readers_end_where_they_were_told() {
        let mut r = reader(b"\x01\x02\x03");
        let mut sub = r.sub_reader(2).unwrap();
        assert_eq!(sub.u16(), Ok(0x0102));
        assert_eq!(sub.u8(), Err(DecodeError::Truncated { packet: "TEST" }));
        assert_eq!(r.u8(), Ok(3));
        assert!(r.sub_reader(1).is_err());
        assert_eq!(reader(b"\x00\x00\x00\x07").u32(), Ok(7));
        assert_eq!(
            reader(b"\x00\x02a\x00").mqtt_string("f"),
            Err(DecodeError::NullCharacter { field: "f" })
        );
        assert_eq!(reader(b"\x00\x01a").mqtt_string("f").unwrap(), "a");
    }

    #[test]
    fn packet_id_zero_is_refused_and_leftovers_are_trailing() {
        assert_eq!(
            reader(b"\x00\x00").packet_id(),
            Err(DecodeError::ZeroPacketId { packet: "TEST" })
        );
        let mut r = reader(b"\x01\x02\x03");
        assert_eq!(r.packet_id().unwrap().get(), 0x0102);
        assert_eq!(
            r.finish(),
            Err(DecodeError::TrailingBytes {
                packet: "TEST",
                extra: 1
            })
        );
    }
}
