//! A WebSocket link: the upgrade over a TCP or TLS stream, then MQTT bytes in binary frames.
//! Each write batch goes out as one masked frame, built when the previous frame is fully
//! written; the broker's frames are decoded as they arrive, pings answered between frames.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_tungstenite::tungstenite::handshake::client::generate_key;
use bytes::{Buf, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::frame::{self, Control, FrameReader};
use super::upgrade::{check_response, UpgradeRequest};
use super::{io_failure, is_hang_up, poll_read_scratch, ByteStream};
use crate::client::ClientError;
use crate::rng::Rng;

/// Bytes read at a time while waiting for the upgrade's answer.
const HANDSHAKE_READ: usize = 4096;

/// An open WebSocket to the broker.
pub struct WebSocketLink {
    /// The TCP or TLS stream under the frames.
    stream: ByteStream,
    /// Decodes the broker's frames.
    frames: FrameReader,
    /// Frames being written: one data frame, or control frames (pongs).
    framed: BytesMut,
    /// MQTT bytes carried by the data frame in `framed` (0 for control frames).
    framed_payload: usize,
    /// Control frames waiting for `framed` to be written.
    control: BytesMut,
    /// Masking keys.
    masks: Rng,
    /// The broker sent a close frame after data still to be decoded: the next read fails.
    closed: bool,
}

impl WebSocketLink {
    /// Sends the upgrade request over `stream` and checks the answer; frame bytes that came
    /// with the answer are decoded into `inbound`.
    pub async fn upgrade(
        mut stream: ByteStream,
        request: &UpgradeRequest,
        inbound: &mut BytesMut,
    ) -> Result<WebSocketLink, ClientError> {
        let key = generate_key();
        let closed = || ClientError::HandshakeClosed {
            during: "the WebSocket upgrade",
            listener: "WebSocket",
        };
        let failure = |error: std::io::Error| {
            if is_hang_up(&error) {
                closed()
            } else {
                io_failure(error)
            }
        };
        stream
            .write_all(&request.encode(&key))
            .await
            .map_err(failure)?;
        stream.flush().await.map_err(failure)?;
        let mut received = Vec::new();
        let head = loop {
            let start = received.len();
            received.resize(start + HANDSHAKE_READ, 0);
            let read = stream.read(&mut received[start..]).await.map_err(failure)?;
            received.truncate(start + read);
            if read == 0 {
                return Err(closed());
            }
            if let Some(head) = check_response(&received, &key)? {
                break head;
            }
        };
        let mut link = WebSocketLink {
            stream,
            frames: FrameReader::default(),
            framed: BytesMut::new(),
            framed_payload: 0,
            control: BytesMut::new(),
            masks: Rng::new(seed_from(&key)),
            closed: false,
        };
        link.decode(&received[head..], inbound)?;
        Ok(link)
    }

    /// Reads frames until MQTT bytes arrive (appended to `inbound`) or nothing is left to read.
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        inbound: &mut BytesMut,
    ) -> Poll<Result<usize, ClientError>> {
        loop {
            if self.closed {
                return Poll::Ready(Err(ClientError::Closed));
            }
            let WebSocketLink {
                stream,
                frames,
                control,
                masks,
                closed,
                ..
            } = self;
            let decoded = match poll_read_scratch(stream, cx, |bytes| {
                decode_into(frames, control, masks, closed, bytes, inbound)
            }) {
                Poll::Ready(Ok(Some(decoded))) => decoded?,
                Poll::Ready(Ok(None)) => return Poll::Ready(Err(ClientError::Closed)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(io_failure(e))),
                Poll::Pending => return Poll::Pending,
            };
            if decoded > 0 {
                return Poll::Ready(Ok(decoded));
            }
        }
    }

    /// Writes pending frames, then `outbound` as one binary frame, until everything is written
    /// and flushed or the stream takes no more for now.
    pub fn poll_write_from(
        &mut self,
        cx: &mut Context<'_>,
        outbound: &mut BytesMut,
    ) -> Poll<Result<(), ClientError>> {
        loop {
            while !self.framed.is_empty() {
                match Pin::new(&mut self.stream).poll_write(cx, &self.framed[..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(ClientError::Closed)),
                    Poll::Ready(Ok(written)) => self.framed.advance(written),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(io_failure(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            self.framed_payload = 0;
            if !self.control.is_empty() {
                std::mem::swap(&mut self.framed, &mut self.control);
            } else if !outbound.is_empty() {
                let mask = self.next_mask();
                self.framed_payload = frame::encode_binary(outbound, mask, &mut self.framed);
            } else {
                return Pin::new(&mut self.stream)
                    .poll_flush(cx)
                    .map_err(io_failure);
            }
        }
    }

    /// MQTT bytes framed but not written yet: the frame's tail is its payload's tail.
    pub fn unwritten(&self) -> usize {
        self.framed_payload.min(self.framed.len())
    }

    /// Decodes received frame bytes into `inbound`.
    fn decode(&mut self, bytes: &[u8], inbound: &mut BytesMut) -> Result<usize, ClientError> {
        let WebSocketLink {
            frames,
            control,
            masks,
            closed,
            ..
        } = self;
        decode_into(frames, control, masks, closed, bytes, inbound)
    }

    /// A fresh masking key.
    fn next_mask(&mut self) -> [u8; 4] {
        next_mask(&mut self.masks)
    }
}

/// Decodes `bytes` with `frames`: data into `inbound`, pings answered into `control`, a close
/// noted in `closed` (an immediate error when it brought no data). Returns the MQTT bytes
/// appended.
fn decode_into(
    frames: &mut FrameReader,
    control: &mut BytesMut,
    masks: &mut Rng,
    closed: &mut bool,
    bytes: &[u8],
    inbound: &mut BytesMut,
) -> Result<usize, ClientError> {
    let appended = frames.feed(bytes, inbound, |frame| match frame {
        Control::Ping(payload) => {
            frame::encode(frame::PONG, payload, next_mask(masks), control);
        }
        Control::Pong => {}
        Control::Close(_) => *closed = true,
    })?;
    if *closed && appended == 0 {
        return Err(ClientError::Closed);
    }
    Ok(appended)
}

/// A masking key from the link's generator.
fn next_mask(masks: &mut Rng) -> [u8; 4] {
    // The low 32 bits of the generator's output; the cast keeps exactly those.
    (masks.next_u64() as u32).to_ne_bytes()
}

/// A generator seed from the handshake's random key, so masking keys differ per connection.
fn seed_from(key: &str) -> u64 {
    key.bytes().fold(0xCBF2_9CE4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}
