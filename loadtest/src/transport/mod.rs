//! How a client's bytes reach the broker (`--transport`): MQTT over plain TCP, over TLS
//! (`tls`), over WebSocket (`upgrade` opens it, `frame` frames it, `websocket` runs it), or over
//! WebSocket over TLS. A [`Link`] is one open connection of any of these; the MQTT client
//! (`client`) reads and writes MQTT bytes through it and never sees the layers below.
//!
//! Reads go through one scratch buffer per executor thread, borrowed only while a read is
//! polled, so thousands of connections cost no per-connection read buffer while idle. The
//! plain TCP link costs one enum match per read or write over the bare socket.

pub mod frame;
pub mod tls;
pub mod upgrade;
mod websocket;

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_lite::{future, AsyncRead, AsyncWrite};
use futures_rustls::client::TlsStream;
use glommio::net::TcpStream;
use thiserror::Error;

use crate::client::{within, ClientError};
use tls::{rustls_error, TlsClient};
use upgrade::UpgradeRequest;
use websocket::WebSocketLink;

/// Bytes read from a socket in one call at most.
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// The executor thread's read buffer, shared by all its connections.
    static READ_SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0u8; READ_CHUNK]);
}

/// The transports a broker listener may speak, named as hydrant's `protocol` key names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// MQTT over plain TCP.
    #[default]
    #[value(name = "mqtt")]
    Mqtt,
    /// MQTT over TLS.
    #[value(name = "mqtt+tls")]
    MqttTls,
    /// MQTT over WebSocket.
    #[value(name = "ws")]
    Ws,
    /// MQTT over WebSocket over TLS.
    #[value(name = "wss")]
    Wss,
}

impl Transport {
    /// True when the transport runs over TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, Transport::MqttTls | Transport::Wss)
    }

    /// True when the transport carries MQTT in WebSocket frames.
    pub fn uses_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// The option value that names it.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Mqtt => "mqtt",
            Transport::MqttTls => "mqtt+tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the transport options of a run cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TransportError {
    /// A file an option names cannot be read or parsed.
    #[error("cannot read {option} {path}: {reason}")]
    Unreadable {
        /// The option, e.g. "--cafile".
        option: &'static str,
        /// The file.
        path: String,
        /// The system's or parser's reason.
        reason: String,
    },
    /// A file holds nothing of what the option needs.
    #[error("{option} {path} holds no {what}")]
    Empty {
        /// The option.
        option: &'static str,
        /// The file.
        path: String,
        /// What was looked for.
        what: &'static str,
    },
    /// The options contradict each other or name something unusable.
    #[error("{0}")]
    Invalid(String),
}

/// Everything a connection needs to open its transport, built once per run.
#[derive(Clone, Debug, Default)]
pub struct TransportSetup {
    /// The transport.
    pub transport: Transport,
    /// TLS configuration, for `mqtt+tls` and `wss`.
    pub tls: Option<TlsClient>,
    /// The WebSocket upgrade request, for `ws` and `wss`.
    pub upgrade: Option<UpgradeRequest>,
}

impl TransportSetup {
    /// The set-up of `transport` towards `host`:`port`; `tls` is used by TLS transports and
    /// `ws_path` by WebSocket ones.
    pub fn new(
        transport: Transport,
        host: &str,
        port: u16,
        tls: Option<&tls::TlsOptions>,
        ws_path: &str,
    ) -> Result<TransportSetup, TransportError> {
        let tls = match (transport.uses_tls(), tls) {
            (true, Some(options)) => Some(TlsClient::new(options)?),
            (true, None) => {
                let options = tls::TlsOptions {
                    server_name: host.to_owned(),
                    ..tls::TlsOptions::default()
                };
                Some(TlsClient::new(&options)?)
            }
            (false, _) => None,
        };
        let upgrade = if transport.uses_websocket() {
            Some(UpgradeRequest::new(host, port, ws_path).map_err(TransportError::Invalid)?)
        } else {
            None
        };
        Ok(TransportSetup {
            transport,
            tls,
            upgrade,
        })
    }

    /// How reports name the broker: `host:port` for plain MQTT, else a URL-like form.
    pub fn describe(&self, host: &str, port: u16) -> String {
        match (&self.upgrade, self.transport) {
            (Some(upgrade), transport) => {
                format!("{transport}://{host}:{port}{}", upgrade.path())
            }
            (None, Transport::Mqtt) => format!("{host}:{port}"),
            (None, transport) => format!("{transport}://{host}:{port}"),
        }
    }
}

/// A byte stream under WebSocket framing: TCP or TLS.
pub enum ByteStream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ByteStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ByteStream::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            ByteStream::Tls(stream) => Pin::new(&mut **stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ByteStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ByteStream::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            ByteStream::Tls(stream) => Pin::new(&mut **stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ByteStream::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            ByteStream::Tls(stream) => Pin::new(&mut **stream).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ByteStream::Tcp(stream) => Pin::new(stream).poll_close(cx),
            ByteStream::Tls(stream) => Pin::new(&mut **stream).poll_close(cx),
        }
    }
}

/// One open connection to the broker, whatever its transport.
pub enum Link {
    /// MQTT over plain TCP.
    Tcp(TcpStream),
    /// MQTT over TLS.
    Tls(Box<TlsStream<TcpStream>>),
    /// MQTT over WebSocket, over TCP or TLS.
    WebSocket(Box<WebSocketLink>),
}

impl Link {
    /// Connects to `addr` and opens the transport of `setup` (TLS handshake, WebSocket
    /// upgrade), each step bounded by `timeout`. Bytes that arrive with the upgrade's answer
    /// are appended to `inbound`.
    pub async fn open(
        addr: SocketAddr,
        setup: &TransportSetup,
        timeout: Duration,
        inbound: &mut BytesMut,
    ) -> Result<Link, ClientError> {
        let tcp = connect_tcp(addr, timeout).await?;
        let stream = match &setup.tls {
            None => ByteStream::Tcp(tcp),
            Some(tls) => ByteStream::Tls(Box::new(
                within(timeout, "the TLS handshake", tls.handshake(tcp)).await?,
            )),
        };
        match (&setup.upgrade, stream) {
            (None, ByteStream::Tcp(tcp)) => Ok(Link::Tcp(tcp)),
            (None, ByteStream::Tls(tls)) => Ok(Link::Tls(tls)),
            (Some(request), stream) => {
                let link = within(
                    timeout,
                    "the WebSocket upgrade",
                    WebSocketLink::upgrade(stream, request, inbound),
                )
                .await?;
                Ok(Link::WebSocket(Box::new(link)))
            }
        }
    }

    /// Reads what the link has and appends the MQTT bytes to `inbound`; returns how many.
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        inbound: &mut BytesMut,
    ) -> Poll<Result<usize, ClientError>> {
        match self {
            Link::Tcp(stream) => match poll_read_scratch(stream, cx, |bytes| {
                inbound.extend_from_slice(bytes);
                bytes.len()
            }) {
                Poll::Ready(Ok(Some(read))) => Poll::Ready(Ok(read)),
                Poll::Ready(Ok(None)) => Poll::Ready(Err(ClientError::Closed)),
                Poll::Ready(Err(e)) => Poll::Ready(Err(ClientError::Io(e.to_string()))),
                Poll::Pending => Poll::Pending,
            },
            Link::Tls(stream) => match poll_read_scratch(&mut **stream, cx, |bytes| {
                inbound.extend_from_slice(bytes);
                bytes.len()
            }) {
                Poll::Ready(Ok(Some(read))) => Poll::Ready(Ok(read)),
                Poll::Ready(Ok(None)) => Poll::Ready(Err(ClientError::Closed)),
                Poll::Ready(Err(e)) => Poll::Ready(Err(io_failure(e))),
                Poll::Pending => Poll::Pending,
            },
            Link::WebSocket(link) => link.poll_read_into(cx, inbound),
        }
    }

    /// Writes `outbound` (the bytes leave it as they are taken) until all of it is on its way
    /// to the broker, or the link takes no more for now (`Pending`). Cancel-safe.
    pub fn poll_write_from(
        &mut self,
        cx: &mut Context<'_>,
        outbound: &mut BytesMut,
    ) -> Poll<Result<(), ClientError>> {
        match self {
            Link::Tcp(stream) => {
                while !outbound.is_empty() {
                    match Pin::new(&mut *stream).poll_write(cx, &outbound[..]) {
                        Poll::Ready(Ok(0)) => return Poll::Ready(Err(ClientError::Closed)),
                        Poll::Ready(Ok(written)) => outbound.advance(written),
                        Poll::Ready(Err(e)) => {
                            return Poll::Ready(Err(ClientError::Io(e.to_string())))
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Poll::Ready(Ok(()))
            }
            Link::Tls(stream) => poll_write_all(&mut **stream, cx, outbound),
            Link::WebSocket(link) => link.poll_write_from(cx, outbound),
        }
    }

    /// MQTT bytes the link took from the write buffer but has not written yet (a WebSocket
    /// frame in progress); TCP and TLS hold none.
    pub fn unwritten(&self) -> usize {
        match self {
            Link::WebSocket(link) => link.unwritten(),
            Link::Tcp(_) | Link::Tls(_) => 0,
        }
    }
}

/// Opens the TCP connection, bounded by `timeout`, with Nagle's algorithm off.
async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ClientError> {
    let connect_error = |reason: String| ClientError::Connect { addr, reason };
    let stream = future::or(
        async {
            TcpStream::connect(addr)
                .await
                .map_err(|e| connect_error(e.to_string()))
        },
        async {
            glommio::timer::sleep(timeout).await;
            Err(connect_error(format!("no answer within {timeout:?}")))
        },
    )
    .await?;
    stream
        .set_nodelay(true)
        .map_err(|e| ClientError::Io(e.to_string()))?;
    Ok(stream)
}

/// Reads once from `stream` into the thread's scratch buffer and hands the bytes read to
/// `take`; `Ok(None)` at the end of the stream.
fn poll_read_scratch<S: AsyncRead + Unpin, T>(
    stream: &mut S,
    cx: &mut Context<'_>,
    take: impl FnOnce(&[u8]) -> T,
) -> Poll<io::Result<Option<T>>> {
    READ_SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        match Pin::new(stream).poll_read(cx, &mut scratch[..]) {
            Poll::Ready(Ok(0)) => Poll::Ready(Ok(None)),
            Poll::Ready(Ok(read)) => Poll::Ready(Ok(Some(take(&scratch[..read])))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
}

/// Writes all of `outbound` to a stream that may buffer (TLS), then flushes it.
fn poll_write_all<S: AsyncWrite + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    outbound: &mut BytesMut,
) -> Poll<Result<(), ClientError>> {
    while !outbound.is_empty() {
        match Pin::new(&mut *stream).poll_write(cx, &outbound[..]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(ClientError::Closed)),
            Poll::Ready(Ok(written)) => outbound.advance(written),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(io_failure(e))),
            Poll::Pending => return Poll::Pending,
        }
    }
    Pin::new(stream).poll_flush(cx).map_err(io_failure)
}

/// True for the I/O errors of a peer that hung up.
fn is_hang_up(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// The client error an I/O error of a TLS or WebSocket link means: a TLS failure (an alert
/// from the broker) is reported as such, and a connection closed without TLS's close_notify
/// is a closed connection.
fn io_failure(error: io::Error) -> ClientError {
    if let Some(tls) = rustls_error(&error) {
        return ClientError::Tls(tls.to_string());
    }
    if error.kind() == io::ErrorKind::UnexpectedEof {
        return ClientError::Closed;
    }
    ClientError::Io(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_name_the_transport() {
        let plain = TransportSetup::default();
        assert_eq!(plain.describe("127.0.0.1", 1883), "127.0.0.1:1883");
        let ws = TransportSetup::new(Transport::Ws, "localhost", 8080, None, "/mqtt").unwrap();
        assert_eq!(ws.describe("localhost", 8080), "ws://localhost:8080/mqtt");
        assert!(ws.tls.is_none());
        let tls_options = tls::TlsOptions {
            insecure: true,
            server_name: "localhost".into(),
            ..tls::TlsOptions::default()
        };
        let tls = TransportSetup::new(
            Transport::MqttTls,
            "localhost",
            8883,
            Some(&tls_options),
            "/mqtt",
        )
        .unwrap();
        assert_eq!(tls.describe("localhost", 8883), "mqtt+tls://localhost:8883");
        assert!(tls.upgrade.is_none());
        assert!(TransportSetup::new(Transport::Ws, "h", 1, None, "mqtt").is_err());
    }
}
