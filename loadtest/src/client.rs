//! One MQTT client connection, spoken with hydrant's codec: connect and CONNACK, queue packets
//! into a write buffer and flush them with one write, read whatever the link has and decode
//! every complete packet of it. The bytes travel over the run's transport (`transport`): plain
//! TCP, TLS, WebSocket or WebSocket over TLS.

use std::future::Future;
use std::net::SocketAddr;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use hydrant::protocol::{
    decode_with, encode, ConnAck, Connect, ConnectReturnCode, DecodeError, Packet, PacketId,
    ProtocolVersion, QoS, SubAck, SubAckReturnCode, Subscribe, TopicFilter,
};
use thiserror::Error;

use crate::transport::frame::FrameError;
use crate::transport::upgrade::UpgradeError;
use crate::transport::{Link, TransportSetup};

/// Largest packet the generator accepts from a broker.
pub const MAX_INBOUND_PACKET: usize = 16 * 1024 * 1024;

/// Output that `fill` writes even while input keeps arriving.
const EAGER_FLUSH: usize = 16 * 1024;

/// An empty read buffer larger than this is given back before the next read, so thousands of
/// mostly idle connections do not each keep the largest buffer they ever needed.
const KEEP_IDLE_INBOUND: usize = 8 * 1024;

/// Why a client connection failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The broker address.
        addr: SocketAddr,
        /// The system's reason.
        reason: String,
    },
    /// The broker answered CONNECT with a refusal.
    #[error("the broker refused CONNECT: {}", describe_refusal(*.0))]
    Refused(ConnectReturnCode),
    /// The broker refused a subscription.
    #[error("the broker refused the subscription to {0}")]
    SubscriptionRefused(String),
    /// A step did not finish in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long.
        after: Duration,
    },
    /// The broker closed the connection.
    #[error("the broker closed the connection")]
    Closed,
    /// Reading or writing failed.
    #[error("connection error: {0}")]
    Io(String),
    /// The broker sent bytes that are not a valid MQTT packet.
    #[error("the broker sent a malformed packet: {0}")]
    Protocol(#[from] DecodeError),
    /// The broker sent a valid packet that makes no sense at this point.
    #[error("the broker sent an unexpected {0}")]
    Unexpected(&'static str),
    /// TLS failed: the handshake, or an alert from the broker afterwards.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// The broker's certificate did not pass verification.
    #[error(
        "the broker's certificate is not trusted for '{server_name}': {reason} (check \
         --cafile and --server-name, or skip verification with --insecure)"
    )]
    CertificateRejected {
        /// The name it was verified for.
        server_name: String,
        /// What verification found.
        reason: String,
    },
    /// The broker closed the connection in the middle of a transport handshake, as a listener
    /// of another transport does.
    #[error("the broker closed the connection during {during}: is this a {listener} listener?")]
    HandshakeClosed {
        /// Which handshake.
        during: &'static str,
        /// The kind of listener the handshake needs.
        listener: &'static str,
    },
    /// The broker answered CONNECT in the protocol of another transport.
    #[error(
        "the broker answered in {answered}: is this a {listener} listener? \
         (--transport {transports})"
    )]
    WrongTransport {
        /// The protocol it answered in.
        answered: &'static str,
        /// The kind of listener that answers so.
        listener: &'static str,
        /// The transports that speak to such a listener.
        transports: &'static str,
    },
    /// The WebSocket upgrade was refused or answered wrongly.
    #[error(transparent)]
    Upgrade(#[from] UpgradeError),
    /// The broker broke the WebSocket framing rules.
    #[error("WebSocket protocol error: {0}")]
    WebSocket(#[from] FrameError),
}

impl ClientError {
    /// True for errors that will not go away by retrying (refused credentials, protocol or
    /// client id, refused subscriptions, TLS failures, an untrusted certificate, a refused
    /// WebSocket upgrade): they end a run at once. "Server unavailable" is a broker at
    /// capacity, which a run counts rather than stops for; so is a connection closed during a
    /// handshake.
    pub fn is_fatal(&self) -> bool {
        match self {
            ClientError::Refused(code) => *code != ConnectReturnCode::ServerUnavailable,
            ClientError::SubscriptionRefused(_)
            | ClientError::Tls(_)
            | ClientError::CertificateRejected { .. }
            | ClientError::WrongTransport { .. }
            | ClientError::Upgrade(_) => true,
            _ => false,
        }
    }
}

/// The human meaning of a CONNACK refusal.
fn describe_refusal(code: ConnectReturnCode) -> &'static str {
    match code {
        ConnectReturnCode::Accepted => "accepted (not a refusal)",
        ConnectReturnCode::UnacceptableProtocolVersion => {
            "unacceptable protocol version (return code 1)"
        }
        ConnectReturnCode::IdentifierRejected => "client identifier rejected (return code 2)",
        ConnectReturnCode::ServerUnavailable => "server unavailable (return code 3)",
        ConnectReturnCode::BadUserNameOrPassword => {
            "bad user name or password (return code 4): check --username/--password"
        }
        ConnectReturnCode::NotAuthorized => {
            "not authorized (return code 5): check --username/--password"
        }
    }
}

/// How to open a connection.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Broker address.
    pub addr: SocketAddr,
    /// User name sent in CONNECT, if any.
    pub username: Option<String>,
    /// Password sent in CONNECT, if any.
    pub password: Option<Bytes>,
    /// Keep-alive in seconds (0 = off).
    pub keep_alive: u16,
    /// Longest wait for TCP connect, each transport handshake, and CONNACK.
    pub timeout: Duration,
    /// Subscribers connect with a persistent session (clean session 0).
    pub persistent_subscribers: bool,
    /// The transport and its TLS and WebSocket settings.
    pub transport: TransportSetup,
}

impl ConnectOptions {
    /// How often a client that may stay silent sends PINGREQ: half the keep-alive, or never
    /// when keep-alive is off.
    pub fn ping_interval(&self) -> Option<Duration> {
        (self.keep_alive > 0).then(|| Duration::from_secs(u64::from(self.keep_alive)) / 2)
    }
}

/// Awaits `work` for at most `limit`, naming `what` in the timeout error.
pub async fn within<T>(
    limit: Duration,
    what: &'static str,
    work: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    future::or(work, async move {
        glommio::timer::sleep(limit).await;
        Err(ClientError::Timeout { what, after: limit })
    })
    .await
}

/// An open, accepted MQTT connection.
pub struct Connection {
    /// The transport.
    link: Link,
    /// Received bytes not yet decoded.
    inbound: BytesMut,
    /// Encoded packets not yet written.
    outbound: BytesMut,
}

impl Connection {
    /// Connects, opens the transport, sends CONNECT with `client_id` (clean session) and
    /// waits for an accepting CONNACK. Returns the connection and the time from TCP connect to
    /// CONNACK.
    pub async fn open(
        options: &ConnectOptions,
        client_id: String,
    ) -> Result<(Connection, Duration), ClientError> {
        Self::open_session(options, client_id, true).await
    }

    /// [`Connection::open`] with the CONNECT's clean session flag: `false` asks the broker to
    /// keep a persistent session.
    pub async fn open_session(
        options: &ConnectOptions,
        client_id: String,
        clean_session: bool,
    ) -> Result<(Connection, Duration), ClientError> {
        let started = Instant::now();
        let mut inbound = BytesMut::new();
        let link = Link::open(
            options.addr,
            &options.transport,
            options.timeout,
            &mut inbound,
        )
        .await?;
        let mut connection = Connection {
            link,
            inbound,
            outbound: BytesMut::new(),
        };
        connection.queue(&Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V3_1_1,
            clean_session,
            keep_alive: options.keep_alive,
            client_id,
            will: None,
            username: options.username.clone(),
            password: options.password.clone(),
        })));
        let connack = within(options.timeout, "CONNACK", async {
            connection.flush().await?;
            connection.read_packet().await
        })
        .await
        .map_err(|error| match error {
            ClientError::Protocol(_) => connection.foreign_answer().unwrap_or(error),
            other => other,
        })?;
        match connack {
            Packet::ConnAck(ConnAck {
                code: ConnectReturnCode::Accepted,
                ..
            }) => Ok((connection, started.elapsed())),
            Packet::ConnAck(ConnAck { code, .. }) => Err(ClientError::Refused(code)),
            other => Err(ClientError::Unexpected(other.name())),
        }
    }

    /// When the bytes that failed to decode as CONNACK are HTTP or a TLS record, the error
    /// that says which transport the listener speaks.
    fn foreign_answer(&self) -> Option<ClientError> {
        let start = &self.inbound[..self.inbound.len().min(5)];
        if start == b"HTTP/" {
            Some(ClientError::WrongTransport {
                answered: "HTTP",
                listener: "WebSocket",
                transports: "ws or wss",
            })
        } else if matches!(start, [0x15 | 0x16, 0x03, ..]) {
            Some(ClientError::WrongTransport {
                answered: "TLS",
                listener: "TLS",
                transports: "mqtt+tls or wss",
            })
        } else {
            None
        }
    }

    /// Subscribes to one filter and waits for its SUBACK; a refusal is an error.
    pub async fn subscribe(
        &mut self,
        filter: &TopicFilter,
        qos: QoS,
        timeout: Duration,
    ) -> Result<QoS, ClientError> {
        let packet_id = PacketId::MIN;
        self.queue(&Packet::Subscribe(Subscribe {
            packet_id,
            filters: std::iter::once((filter.clone(), qos)).collect(),
        }));
        let answer = within(timeout, "SUBACK", async {
            self.flush().await?;
            loop {
                match self.read_packet().await? {
                    Packet::SubAck(SubAck {
                        packet_id: id,
                        return_codes,
                    }) if id == packet_id => return Ok(return_codes),
                    Packet::Publish(_) | Packet::PingResp => continue,
                    other => return Err(ClientError::Unexpected(other.name())),
                }
            }
        })
        .await?;
        match answer.first() {
            Some(SubAckReturnCode::Success(granted)) => Ok(*granted),
            _ => Err(ClientError::SubscriptionRefused(filter.as_str().to_owned())),
        }
    }

    /// Appends an encoded packet to the write buffer.
    pub fn queue(&mut self, packet: &Packet) {
        encode(packet, &mut self.outbound);
    }

    /// The write buffer, for callers that encode in place.
    pub fn outbound(&mut self) -> &mut BytesMut {
        &mut self.outbound
    }

    /// MQTT bytes queued and not written yet: the write buffer, after what the link took from
    /// it and still holds (a WebSocket frame in progress).
    pub fn pending_output(&self) -> usize {
        self.link.unwritten() + self.outbound.len()
    }

    /// Writes the whole write buffer with as few calls as the link allows. Cancel-safe:
    /// written bytes leave the buffer as they go, so after a cancelled flush the buffer (with
    /// what the link holds) is exactly what was not written.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        let link = &mut self.link;
        let outbound = &mut self.outbound;
        future::poll_fn(|cx| link.poll_write_from(cx, outbound)).await
    }

    /// Waits until the link has bytes and appends them to the read buffer, writing the write
    /// buffer whenever there is nothing to read (or it has grown past [`EAGER_FLUSH`]), so
    /// that a peer waiting for our acknowledgements is never blocked by our waiting for its
    /// data, and acknowledgements of a burst go out in one write. Cancel-safe: dropping the
    /// future loses no byte in either direction.
    ///
    /// It first yields when the executor asks for it: a read of a socket that always has data
    /// is ready at once, so without this a loop of reads from a peer that never stops sending
    /// would never let a timeout or stop signal raced against it be polled.
    pub async fn fill(&mut self) -> Result<usize, ClientError> {
        glommio::yield_if_needed().await;
        if self.inbound.is_empty() && self.inbound.capacity() > KEEP_IDLE_INBOUND {
            self.inbound = BytesMut::new();
        }
        let link = &mut self.link;
        let inbound = &mut self.inbound;
        let outbound = &mut self.outbound;
        future::poll_fn(|cx| {
            let read = link.poll_read_into(cx, inbound);
            if read.is_pending() || outbound.len() >= EAGER_FLUSH {
                if let Poll::Ready(Err(e)) = link.poll_write_from(cx, outbound) {
                    return Poll::Ready(Err(e));
                }
            }
            read
        })
        .await
    }

    /// Drops everything received and not yet decoded.
    pub fn discard_input(&mut self) {
        self.inbound.clear();
    }

    /// The next complete packet in the read buffer, if there is one.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, ClientError> {
        Ok(decode_with(
            &mut self.inbound,
            MAX_INBOUND_PACKET,
            Some(ProtocolVersion::V3_1_1),
        )?)
    }

    /// Waits for the next packet.
    pub async fn read_packet(&mut self) -> Result<Packet, ClientError> {
        loop {
            if let Some(packet) = self.next_packet()? {
                return Ok(packet);
            }
            self.fill().await?;
        }
    }

    /// Sends DISCONNECT and waits (briefly) for the broker to close, so that the broker, not
    /// the generator, holds the closed socket's TIME_WAIT and nothing in flight is reset.
    pub async fn disconnect(mut self, linger: Duration) {
        self.queue(&Packet::Disconnect);
        let _: Result<(), ClientError> = within(linger, "the broker to close", async {
            self.flush().await?;
            loop {
                self.inbound.clear();
                self.fill().await?;
            }
        })
        .await;
    }
}
