//! WebSocket frames (RFC 6455 §5) as a client writes and reads them, free of I/O.
//!
//! A write batch of MQTT bytes becomes one masked binary frame. Received frames are decoded as
//! a stream: MQTT over WebSocket is a byte stream (a frame may carry part of a packet or
//! several), so a data frame's payload is appended to the MQTT read buffer as its bytes arrive,
//! without waiting for the frame's end; control frames are handed to the caller.

use bytes::{Buf, BufMut, BytesMut};
use thiserror::Error;

/// Opcode of a frame that continues a fragmented message.
const CONTINUATION: u8 = 0x0;
/// Opcode of a text frame (not allowed for MQTT).
const TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const PONG: u8 = 0xA;

/// First header byte: the frame ends its message.
const FIN: u8 = 0x80;
/// First header byte: the reserved bits, which stay clear when no extension is negotiated.
const RSV: u8 = 0x70;
/// Second header byte: the payload is masked.
const MASKED: u8 = 0x80;
/// Longest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Longest header of an unmasked frame (a server's): 2 bytes and a 64-bit length.
const MAX_UNMASKED_HEADER: usize = 10;

/// Why the broker's frames cannot be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// MQTT travels in binary frames; a text frame means the peer is not speaking MQTT.
    #[error("the broker sent a text frame (MQTT travels in binary frames)")]
    Text,
    /// A server must not mask its frames.
    #[error("the broker sent a masked frame")]
    Masked,
    /// Reserved bits set although no extension was negotiated.
    #[error("the broker set reserved frame bits {0:#04x} without a negotiated extension")]
    Reserved(u8),
    /// An opcode RFC 6455 does not define.
    #[error("the broker sent a frame with unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame that is fragmented or longer than 125 bytes.
    #[error("the broker sent a fragmented or oversized control frame")]
    BadControl,
    /// A continuation with no message to continue, or a new message before the last ended.
    #[error("the broker sent a frame out of its message's sequence")]
    Sequence,
    /// A 64-bit length with its most significant bit set.
    #[error("the broker sent a frame length above 2^63")]
    Length,
}

/// A control frame received from the broker.
#[derive(Debug, PartialEq, Eq)]
pub enum Control<'a> {
    /// A ping, to be answered with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong (nothing to do).
    Pong,
    /// The broker closes the WebSocket, with its status code if it gave one.
    Close(Option<u16>),
}

/// Appends one masked frame with `opcode` and `payload` to `out`.
pub fn encode(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut BytesMut) {
    put_header(opcode, payload.len(), mask, out);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// Moves all of `data` into `out` as one masked binary frame and returns how many payload
/// bytes the frame carries.
pub fn encode_binary(data: &mut BytesMut, mask: [u8; 4], out: &mut BytesMut) -> usize {
    let len = data.len();
    encode(BINARY, data, mask, out);
    data.clear();
    len
}

/// Appends a frame header (FIN set, masking key included) to `out`, with room reserved for
/// the payload.
fn put_header(opcode: u8, len: usize, mask: [u8; 4], out: &mut BytesMut) {
    out.reserve(14 + len);
    out.put_u8(FIN | opcode);
    if len < 126 {
        // Below 126, so the cast cannot truncate.
        out.put_u8(MASKED | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.put_u8(MASKED | 126);
        out.put_u16(short);
    } else {
        out.put_u8(MASKED | 127);
        out.put_u64(len as u64);
    }
    out.put_slice(&mask);
}

/// XORs `bytes` with the repeated masking key, eight bytes at a time.
fn apply_mask(bytes: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut words = bytes.chunks_exact_mut(8);
    for word in &mut words {
        let mut value = [0u8; 8];
        value.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(value) ^ wide).to_ne_bytes());
    }
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// Where the reader is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a frame header.
    Header,
    /// Inside a data frame's payload, `left` bytes to go.
    Data {
        /// Payload bytes still to come.
        left: u64,
    },
    /// Inside a control frame's payload, `left` bytes to go.
    Control {
        /// The control opcode.
        opcode: u8,
        /// Payload bytes still to come.
        left: usize,
    },
}

/// Decodes the broker's frames as their bytes arrive, in any split.
#[derive(Debug)]
pub struct FrameReader {
    /// The header read so far.
    header: [u8; MAX_UNMASKED_HEADER],
    /// How many bytes of `header` are filled.
    header_len: usize,
    /// Where the reader is.
    state: State,
    /// A binary message has begun and its final frame has not come yet.
    in_message: bool,
    /// The payload of the control frame being read (at most 125 bytes).
    control: Vec<u8>,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            header: [0; MAX_UNMASKED_HEADER],
            header_len: 0,
            state: State::Header,
            in_message: false,
            control: Vec::new(),
        }
    }
}

impl FrameReader {
    /// Decodes `input`: data payload bytes are appended to `data`, control frames passed to
    /// `on_control` as they complete. Returns how many payload bytes were appended.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        data: &mut BytesMut,
        mut on_control: impl FnMut(Control<'_>),
    ) -> Result<usize, FrameError> {
        let mut appended = 0;
        while !input.is_empty() {
            match self.state {
                State::Header => {
                    let need = self.header_needed()?;
                    let take = (need - self.header_len).min(input.len());
                    self.header[self.header_len..self.header_len + take]
                        .copy_from_slice(&input[..take]);
                    self.header_len += take;
                    input.advance(take);
                    if self.header_len == need && self.header_needed()? == need {
                        self.start_frame(&mut on_control)?;
                    }
                }
                State::Data { left } => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    data.extend_from_slice(&input[..take]);
                    appended += take;
                    input.advance(take);
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::Header
                    } else {
                        State::Data { left }
                    };
                }
                State::Control { opcode, left } => {
                    let take = left.min(input.len());
                    self.control.extend_from_slice(&input[..take]);
                    input.advance(take);
                    if left == take {
                        self.state = State::Header;
                        dispatch(opcode, &self.control, &mut on_control);
                    } else {
                        self.state = State::Control {
                            opcode,
                            left: left - take,
                        };
                    }
                }
            }
        }
        Ok(appended)
    }

    /// The length of the header being read, as far as its first two bytes tell.
    fn header_needed(&self) -> Result<usize, FrameError> {
        if self.header_len < 2 {
            return Ok(2);
        }
        if self.header[1] & MASKED != 0 {
            return Err(FrameError::Masked);
        }
        Ok(match self.header[1] & 0x7F {
            126 => 4,
            127 => 10,
            _ => 2,
        })
    }

    /// Checks the complete header in `header` and moves to its payload.
    fn start_frame(&mut self, on_control: &mut impl FnMut(Control<'_>)) -> Result<(), FrameError> {
        let first = self.header[0];
        let len = match self.header[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => {
                let mut wide = [0u8; 8];
                wide.copy_from_slice(&self.header[2..10]);
                let len = u64::from_be_bytes(wide);
                if len >> 63 != 0 {
                    return Err(FrameError::Length);
                }
                len
            }
            short => u64::from(short),
        };
        self.header_len = 0;
        if first & RSV != 0 {
            return Err(FrameError::Reserved(first & RSV));
        }
        let fin = first & FIN != 0;
        let opcode = first & 0x0F;
        match opcode {
            CONTINUATION | BINARY => {
                if (opcode == CONTINUATION) != self.in_message {
                    return Err(FrameError::Sequence);
                }
                self.in_message = !fin;
                self.state = if len == 0 {
                    State::Header
                } else {
                    State::Data { left: len }
                };
            }
            TEXT => return Err(FrameError::Text),
            CLOSE | PING | PONG => {
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&len| fin && len <= MAX_CONTROL_PAYLOAD)
                    .ok_or(FrameError::BadControl)?;
                self.control.clear();
                if len == 0 {
                    dispatch(opcode, &[], on_control);
                } else {
                    self.state = State::Control { opcode, left: len };
                }
            }
            other => return Err(FrameError::UnknownOpcode(other)),
        }
        Ok(())
    }
}

/// Hands a complete control frame to `on_control`.
fn dispatch(opcode: u8, payload: &[u8], on_control: &mut impl FnMut(Control<'_>)) {
    match opcode {
        PING => on_control(Control::Ping(payload)),
        PONG => on_control(Control::Pong),
        _ => on_control(Control::Close(
            (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns the data and the control frames seen.
    fn read_in_steps(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<String>), FrameError> {
        let mut reader = FrameReader::default();
        let mut data = BytesMut::new();
        let mut controls = Vec::new();
        let mut appended = 0;
        for piece in input.chunks(step) {
            appended += reader.feed(piece, &mut data, |c| controls.push(format!("{c:?}")))?;
        }
        assert_eq!(appended, data.len());
        Ok((data.to_vec(), controls))
    }

    #[test]
    fn masked_frame_matches_rfc_6455_example() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let mut out = BytesMut::new();
        encode(TEXT, b"Hello", [0x37, 0xfa, 0x21, 0x3d], &mut out);
        assert_eq!(
            &out[..],
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn binary_frames_use_the_shortest_length_form_and_mask_every_byte() {
        let mask = [1, 2, 3, 4];
        for (len, header) in [(1, 6), (125, 6), (126, 8), (65_535, 8), (65_536, 14)] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut data = BytesMut::from(&payload[..]);
            let mut out = BytesMut::new();
            assert_eq!(encode_binary(&mut data, mask, &mut out), len);
            assert!(data.is_empty());
            assert_eq!(out.len(), header + len, "length {len}");
            assert_eq!(out[0], 0x82);
            assert_eq!(out[1] & 0x80, 0x80, "masked");
            assert_eq!(&out[header - 4..header], mask);
            let unmasked: Vec<u8> = out[header..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(unmasked, payload, "length {len}");
        }
    }

    #[test]
    fn unmasked_binary_frames_decode_in_any_split() {
        // RFC 6455 §5.7: 256 bytes (16-bit length) and 65536 bytes (64-bit length), then a
        // ping "Hello" between the two fragments of a third message.
        let big: Vec<u8> = (0..65_536u32).map(|i| (i % 253) as u8).collect();
        let mut wire = vec![0x82, 0x7E, 0x01, 0x00];
        wire.extend_from_slice(&big[..256]);
        wire.extend_from_slice(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        wire.extend_from_slice(&big);
        wire.extend_from_slice(&[0x02, 0x03, b'a', b'b', b'c']);
        wire.extend_from_slice(&[0x89, 0x05, b'H', b'e', b'l', b'l', b'o']);
        wire.extend_from_slice(&[0x80, 0x02, b'd', b'e']);
        wire.extend_from_slice(&[0x8A, 0x00]);
        let mut expected = big[..256].to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"abcde");
        for step in [1, 2, 3, 7, 100, 4096, wire.len()] {
            let (data, controls) = read_in_steps(&wire, step).unwrap();
            assert!(data == expected, "step {step}");
            assert_eq!(controls, ["Ping([72, 101, 108, 108, 111])", "Pong"]);
        }
    }

    #[test]
    fn close_frames_carry_their_status_code() {
        let (_, controls) = read_in_steps(&[0x88, 0x02, 0x03, 0xE8], 1).unwrap();
        assert_eq!(controls, ["Close(Some(1000))"]);
        let (_, controls) = read_in_steps(&[0x88, 0x00], 1).unwrap();
        assert_eq!(controls, ["Close(None)"]);
    }

    #[test]
    fn frames_a_client_must_refuse_are_errors() {
        let refused: [(&[u8], FrameError); 8] = [
            (&[0x81, 0x01, b'x'], FrameError::Text),
            (&[0x82, 0x81, 1, 2, 3, 4, 0], FrameError::Masked),
            (&[0xC2, 0x00], FrameError::Reserved(0x40)),
            (&[0x83, 0x00], FrameError::UnknownOpcode(3)),
            (&[0x80, 0x01, 0], FrameError::Sequence),
            (&[0x02, 0x01, 0, 0x82, 0x00], FrameError::Sequence),
            (&[0x09, 0x00], FrameError::BadControl),
            (&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0], FrameError::Length),
        ];
        for (wire, error) in refused {
            assert_eq!(read_in_steps(wire, 1).unwrap_err(), error, "{wire:x?}");
            assert_eq!(read_in_steps(wire, wire.len()).unwrap_err(), error);
        }
        let mut long_ping = vec![0x89, 126, 0, 126];
        long_ping.extend_from_slice(&[0; 126]);
        assert_eq!(
            read_in_steps(&long_ping, 3).unwrap_err(),
            FrameError::BadControl
        );
    }

    #[test]
    fn what_the_client_writes_the_reader_would_read_back_unmasked() {
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut out = BytesMut::new();
        encode_binary(&mut BytesMut::from(&payload[..]), [9, 8, 7, 6], &mut out);
        // Unmask in place and clear the mask bit: a server's view of the frame.
        let mut wire = out.to_vec();
        let header = 8;
        let mask = [wire[4], wire[5], wire[6], wire[7]];
        apply_mask(&mut wire[header..], mask);
        wire[1] &= 0x7F;
        wire.drain(4..8);
        let (data, _) = read_in_steps(&wire, 13).unwrap();
        assert_eq!(data, payload);
    }
}
