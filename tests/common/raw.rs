//! A raw MQTT 3.1/3.1.1/5 client over a tokio `TcpStream`: packets are written byte by byte
//! here (independent of hydrant's own codec) so tests control every bit, including broken ones.
//! MQTT 5 packets the broker sends (CONNACK with properties, DISCONNECT) arrive as
//! `Incoming::Other` and are read with the `v5` helpers.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};

/// The default wait for one expected packet.
pub const PACKET_TIMEOUT: Duration = Duration::from_secs(5);

/// Appends the variable-length "remaining length" encoding of `len`.
pub fn put_remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

/// Appends a two-byte length followed by `bytes`.
pub fn put_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).expect("field shorter than 64 KiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A whole packet: first byte, remaining length, body.
pub fn packet(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    put_remaining_length(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// A will message carried in CONNECT.
#[derive(Clone, Debug)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// The fields of a CONNECT packet.
#[derive(Clone, Debug)]
pub struct Connect {
    /// "MQTT" for 3.1.1, "MQIsdp" for 3.1.
    pub protocol_name: String,
    /// 4 for 3.1.1, 3 for 3.1.
    pub level: u8,
    pub client_id: String,
    pub clean_session: bool,
    pub keep_alive: u16,
    pub will: Option<Will>,
    /// Extra bits OR-ed into the connect flags byte (e.g. the reserved bit 0).
    pub extra_flags: u8,
    /// MQTT 5: the bytes of the CONNECT's property block (without its length); `None` for
    /// 3.1/3.1.1, which have no properties.
    pub properties: Option<Vec<u8>>,
}

impl Connect {
    /// A 3.1.1 clean-session CONNECT with keep-alive 60.
    pub fn v311(client_id: &str) -> Connect {
        Connect {
            protocol_name: "MQTT".into(),
            level: 4,
            client_id: client_id.into(),
            clean_session: true,
            keep_alive: 60,
            will: None,
            extra_flags: 0,
            properties: None,
        }
    }

    /// An MQTT 5 clean-start CONNECT with keep-alive 60 and no properties.
    pub fn v5(client_id: &str) -> Connect {
        Connect {
            level: 5,
            properties: Some(Vec::new()),
            ..Connect::v311(client_id)
        }
    }

    /// MQTT 5: sets the raw bytes of the property block.
    pub fn properties(mut self, properties: &[u8]) -> Connect {
        self.properties = Some(properties.to_vec());
        self
    }

    /// A 3.1 clean-session CONNECT with keep-alive 60.
    pub fn v31(client_id: &str) -> Connect {
        Connect {
            protocol_name: "MQIsdp".into(),
            level: 3,
            ..Connect::v311(client_id)
        }
    }

    /// Sets clean_session.
    pub fn clean(mut self, clean_session: bool) -> Connect {
        self.clean_session = clean_session;
        self
    }

    /// Sets the keep-alive in seconds.
    pub fn keep_alive(mut self, seconds: u16) -> Connect {
        self.keep_alive = seconds;
        self
    }

    /// Sets a will.
    pub fn will(mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) -> Connect {
        self.will = Some(Will {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
        });
        self
    }

    /// The packet bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        put_prefixed(&mut body, self.protocol_name.as_bytes());
        body.push(self.level);
        let mut flags = self.extra_flags;
        if self.clean_session {
            flags |= 0x02;
        }
        if let Some(will) = &self.will {
            flags |= 0x04 | (will.qos << 3);
            if will.retain {
                flags |= 0x20;
            }
        }
        body.push(flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        if let Some(properties) = &self.properties {
            put_remaining_length(&mut body, properties.len());
            body.extend_from_slice(properties);
        }
        put_prefixed(&mut body, self.client_id.as_bytes());
        if let Some(will) = &self.will {
            if self.properties.is_some() {
                body.push(0);
            }
            put_prefixed(&mut body, will.topic.as_bytes());
            put_prefixed(&mut body, &will.payload);
        }
        packet(0x10, &body)
    }
}

/// PUBLISH bytes (`packet_id` is ignored for QoS 0).
pub fn publish(
    topic: &[u8],
    payload: &[u8],
    qos: u8,
    retain: bool,
    dup: bool,
    packet_id: u16,
) -> Vec<u8> {
    let mut first = 0x30 | (qos << 1);
    if retain {
        first |= 0x01;
    }
    if dup {
        first |= 0x08;
    }
    let mut body = Vec::new();
    put_prefixed(&mut body, topic);
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    packet(first, &body)
}

/// SUBSCRIBE bytes for `(filter, qos)` pairs.
pub fn subscribe(packet_id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    for (filter, qos) in filters {
        put_prefixed(&mut body, filter.as_bytes());
        body.push(*qos);
    }
    packet(0x82, &body)
}

/// PUBACK bytes.
pub fn puback(packet_id: u16) -> Vec<u8> {
    packet(0x40, &packet_id.to_be_bytes())
}

/// PUBREC bytes.
pub fn pubrec(packet_id: u16) -> Vec<u8> {
    packet(0x50, &packet_id.to_be_bytes())
}

/// PUBREL bytes.
pub fn pubrel(packet_id: u16) -> Vec<u8> {
    packet(0x62, &packet_id.to_be_bytes())
}

/// PUBCOMP bytes.
pub fn pubcomp(packet_id: u16) -> Vec<u8> {
    packet(0x70, &packet_id.to_be_bytes())
}

/// PINGREQ bytes.
pub fn pingreq() -> Vec<u8> {
    vec![0xC0, 0x00]
}

/// DISCONNECT bytes.
pub fn disconnect() -> Vec<u8> {
    vec![0xE0, 0x00]
}

/// MQTT 5 PUBLISH bytes: topic, packet id (QoS > 0), the raw property block, payload.
pub fn publish_v5(
    topic: &[u8],
    payload: &[u8],
    qos: u8,
    packet_id: u16,
    properties: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    put_prefixed(&mut body, topic);
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    put_remaining_length(&mut body, properties.len());
    body.extend_from_slice(properties);
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &body)
}

/// MQTT 5 SUBSCRIBE bytes: `(filter, options byte)` pairs and the raw property block.
pub fn subscribe_v5(packet_id: u16, filters: &[(&str, u8)], properties: &[u8]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    put_remaining_length(&mut body, properties.len());
    body.extend_from_slice(properties);
    for (filter, options) in filters {
        put_prefixed(&mut body, filter.as_bytes());
        body.push(*options);
    }
    packet(0x82, &body)
}

/// A packet received from the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    ConnAck {
        session_present: bool,
        code: u8,
    },
    Publish(RawPublish),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    SubAck {
        packet_id: u16,
        codes: Vec<u8>,
    },
    UnsubAck(u16),
    PingResp,
    /// Anything else: first byte and body.
    Other(u8, Vec<u8>),
}

/// A PUBLISH received from the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawPublish {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    pub topic: Vec<u8>,
    pub packet_id: Option<u16>,
    pub payload: Vec<u8>,
}

/// Why `RawClient::recv` returned no packet.
#[derive(Debug)]
pub enum RecvError {
    Timeout,
    /// The broker closed the connection (EOF) or reset it.
    Closed(String),
    /// The broker sent bytes this decoder cannot read.
    Garbage(String),
}

/// How a connection ended in `RawClient::read_until_closed`.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// Orderly EOF.
    Eof,
    /// Reset or another read error.
    Error(String),
}

/// Splits the first complete packet off `buf`; Ok(None) if more bytes are needed.
pub fn take_packet(buf: &mut Vec<u8>) -> Result<Option<Incoming>, String> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut len = 0usize;
    let mut shift = 0;
    let mut header = 1;
    loop {
        let Some(&byte) = buf.get(header) else {
            return Ok(None);
        };
        len |= usize::from(byte & 0x7F) << shift;
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if header > 4 {
            return Err(format!(
                "remaining length too long: {:02x?}",
                &buf[..header]
            ));
        }
    }
    if buf.len() < header + len {
        return Ok(None);
    }
    let first = buf[0];
    let body: Vec<u8> = buf[header..header + len].to_vec();
    buf.drain(..header + len);
    let id = |body: &[u8]| -> Result<u16, String> {
        match body {
            [a, b, ..] => Ok(u16::from_be_bytes([*a, *b])),
            _ => Err(format!("short packet {first:#04x}: {body:02x?}")),
        }
    };
    Ok(Some(match first >> 4 {
        2 if body.len() == 2 => Incoming::ConnAck {
            session_present: body[0] & 1 == 1,
            code: body[1],
        },
        3 => {
            let qos = (first >> 1) & 3;
            let topic_len = usize::from(id(&body)?);
            let mut at = 2 + topic_len;
            if body.len() < at {
                return Err(format!("short PUBLISH {body:02x?}"));
            }
            let topic = body[2..at].to_vec();
            let packet_id = if qos > 0 {
                let pid = id(&body[at..])?;
                at += 2;
                Some(pid)
            } else {
                None
            };
            Incoming::Publish(RawPublish {
                dup: first & 0x08 != 0,
                qos,
                retain: first & 0x01 != 0,
                topic,
                packet_id,
                payload: body[at..].to_vec(),
            })
        }
        // With a reason code (MQTT 5), acknowledgements are `Other`.
        4 if body.len() == 2 => Incoming::PubAck(id(&body)?),
        5 if body.len() == 2 => Incoming::PubRec(id(&body)?),
        6 if body.len() == 2 => Incoming::PubRel(id(&body)?),
        7 if body.len() == 2 => Incoming::PubComp(id(&body)?),
        9 => Incoming::SubAck {
            packet_id: id(&body)?,
            codes: body[2..].to_vec(),
        },
        11 => Incoming::UnsubAck(id(&body)?),
        13 => Incoming::PingResp,
        _ => Incoming::Other(first, body),
    }))
}

/// One raw TCP connection to the broker.
pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    /// Opens a TCP connection to 127.0.0.1:`port`.
    pub async fn connect_tcp(port: u16) -> RawClient {
        let stream = timeout(PACKET_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .expect("TCP connect timed out")
            .expect("TCP connect failed");
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// Opens a TCP connection whose receive buffer is `recv_buffer` bytes (a slow reader).
    pub async fn connect_tcp_small_buffer(port: u16, recv_buffer: u32) -> RawClient {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(recv_buffer).expect("SO_RCVBUF");
        let addr = format!("127.0.0.1:{port}").parse().expect("address");
        let stream = timeout(PACKET_TIMEOUT, socket.connect(addr))
            .await
            .expect("TCP connect timed out")
            .expect("TCP connect failed");
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// TCP connect, send `connect`, and return the CONNACK's (session_present, code).
    pub async fn handshake(port: u16, connect: &Connect) -> (RawClient, bool, u8) {
        let mut client = RawClient::connect_tcp(port).await;
        client.send(&connect.encode()).await.expect("send CONNECT");
        match client.recv(PACKET_TIMEOUT).await {
            Ok(Incoming::ConnAck {
                session_present,
                code,
            }) => (client, session_present, code),
            other => panic!("expected CONNACK for {connect:?}, got {other:?}"),
        }
    }

    /// MQTT 5: TCP connect, send `connect`, and return the CONNACK's body (flags, reason code,
    /// properties).
    pub async fn handshake_v5(port: u16, connect: &Connect) -> (RawClient, Vec<u8>) {
        let mut client = RawClient::connect_tcp(port).await;
        client.send(&connect.encode()).await.expect("send CONNECT");
        match client.recv(PACKET_TIMEOUT).await {
            Ok(Incoming::Other(0x20, body)) => (client, body),
            other => panic!("expected an MQTT 5 CONNACK for {connect:?}, got {other:?}"),
        }
    }

    /// MQTT 5 handshake that must be accepted (reason code 0).
    pub async fn connected_v5(port: u16, connect: &Connect) -> RawClient {
        let (client, body) = RawClient::handshake_v5(port, connect).await;
        assert_eq!(body.get(1), Some(&0), "CONNACK reason code for {connect:?}");
        client
    }

    /// MQTT 5: reads until the broker closes the connection and returns the reason code of
    /// the DISCONNECT it sent before closing (panics if there was none).
    pub async fn disconnect_reason(&mut self, wait: Duration) -> u8 {
        let (_, packets) = self
            .read_until_closed(wait)
            .await
            .unwrap_or_else(|packets| panic!("still open after {wait:?}; read {packets:?}"));
        match packets.last() {
            Some(Incoming::Other(0xE0, body)) if !body.is_empty() => body[0],
            other => panic!("expected a DISCONNECT with a reason code last, got {other:?}"),
        }
    }

    /// Handshake that must be accepted (return code 0).
    pub async fn connected(port: u16, connect: &Connect) -> RawClient {
        let (client, _, code) = RawClient::handshake(port, connect).await;
        assert_eq!(code, 0, "CONNACK return code for {connect:?}");
        client
    }

    /// The local port of this connection (identifies it in the broker's `addr=` fields).
    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().expect("local address").port()
    }

    /// Writes all of `bytes`.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match timeout(PACKET_TIMEOUT, self.stream.write_all(bytes)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        }
    }

    /// Writes all of `bytes` with no time limit (the caller bounds it).
    pub async fn stream_write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads the next packet.
    pub async fn recv(&mut self, wait: Duration) -> Result<Incoming, RecvError> {
        let deadline = Instant::now() + wait;
        loop {
            match take_packet(&mut self.buf) {
                Ok(Some(packet)) => return Ok(packet),
                Ok(None) => {}
                Err(e) => return Err(RecvError::Garbage(e)),
            }
            let mut chunk = [0u8; 16 * 1024];
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(RecvError::Timeout),
                Ok(Ok(0)) => return Err(RecvError::Closed("EOF".into())),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(RecvError::Closed(e.to_string())),
            }
        }
    }

    /// Subscribes and returns the SUBACK return codes.
    pub async fn subscribe(&mut self, packet_id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        self.subscribe_within(packet_id, filters, PACKET_TIMEOUT)
            .await
    }

    /// Subscribes and returns the SUBACK return codes, waiting up to `wait` for the SUBACK
    /// (for tests where the broker has much other work queued first).
    pub async fn subscribe_within(
        &mut self,
        packet_id: u16,
        filters: &[(&str, u8)],
        wait: Duration,
    ) -> Vec<u8> {
        self.send(&subscribe(packet_id, filters))
            .await
            .expect("send SUBSCRIBE");
        loop {
            match self.recv(wait).await {
                Ok(Incoming::SubAck {
                    packet_id: acked,
                    codes,
                }) => {
                    assert_eq!(acked, packet_id, "SUBACK packet id");
                    return codes;
                }
                Ok(Incoming::Publish(_)) => {}
                other => panic!("expected SUBACK, got {other:?}"),
            }
        }
    }

    /// Next PUBLISH, skipping other packets; None on timeout or close.
    pub async fn next_publish(&mut self, wait: Duration) -> Option<RawPublish> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Ok(Incoming::Publish(p)) => return Some(p),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Reads (and discards) until the broker closes the connection; Err if it is still open
    /// after `wait`. Returns how the connection ended and the packets read before that.
    pub async fn read_until_closed(
        &mut self,
        wait: Duration,
    ) -> Result<(Closed, Vec<Incoming>), Vec<Incoming>> {
        let deadline = Instant::now() + wait;
        let mut packets = Vec::new();
        loop {
            while let Ok(Some(packet)) = take_packet(&mut self.buf) {
                packets.push(packet);
            }
            let mut chunk = [0u8; 16 * 1024];
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(packets),
                Ok(Ok(0)) => return Ok((Closed::Eof, packets)),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Ok((Closed::Error(e.to_string()), packets)),
            }
        }
    }

    /// Closes the socket with an RST instead of a FIN (SO_LINGER 0), as a crashed peer would.
    pub fn reset(self) {
        self.stream.set_zero_linger().expect("SO_LINGER 0");
        drop(self.stream);
    }
}
