//! MQTT over WebSocket (RFC 6455), server side: the upgrade of an HTTP request, with the
//! listener's checks, and the byte stream carried in binary frames afterwards.
//!
//! MQTT does not align its packets with frames: a client may split a packet over several
//! frames or join several packets in one, so [`WebSocketStream`] reads as a plain byte stream
//! (each binary message's bytes in order) and sends each write as one binary frame. Pings are
//! answered, a Close frame is answered and then ends the stream, and a text frame or any
//! framing error ends the connection with an error (after a Close frame saying why).
//!
//! The framing is tungstenite's; it is driven through `sync_io`, which lets reads and writes
//! in progress share one WebSocket (a connection's task polls both side by side; a relayed
//! one has a task for each).

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_tungstenite::tungstenite;
use futures_lite::{AsyncRead, AsyncWrite};
use tungstenite::handshake::server::{Callback, ErrorResponse, Request, Response, ServerHandshake};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::http::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, ORIGIN, SEC_WEBSOCKET_PROTOCOL,
};
use tungstenite::http::{HeaderValue, StatusCode};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::sync_io::SyncIo;
use super::Carrier;

/// The path upgrade requests must ask for unless configured otherwise.
pub const DEFAULT_PATH: &str = "/mqtt";

/// The largest WebSocket message a client may send unless told otherwise (a message is held
/// whole before its bytes are read, so this bounds a connection's memory).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;

/// The subprotocols a client may ask for (MQTT 3.1.1 and 5 name it "mqtt"; MQTT 3.1
/// clients used "mqttv3.1").
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// The largest upgrade request read (a client cannot make the server buffer more).
const MAX_UPGRADE_REQUEST: usize = 16 * 1024;

/// A WebSocket listener's checks on upgrade requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSocketSettings {
    /// The request path clients must use (`websocket_path`); others get HTTP 404.
    pub path: String,
    /// The `Origin` values accepted (`websocket_origins`); empty accepts any (and none).
    pub allowed_origins: Vec<String>,
}

impl Default for WebSocketSettings {
    fn default() -> WebSocketSettings {
        WebSocketSettings {
            path: DEFAULT_PATH.to_owned(),
            allowed_origins: Vec::new(),
        }
    }
}

/// Why an upgrade request was refused, with the HTTP status it was answered with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeRefusal {
    /// The request was for another path (404).
    #[error("path {path:?} is not {expected:?}")]
    WrongPath {
        /// The path requested.
        path: String,
        /// The listener's path.
        expected: String,
    },
    /// The `Origin` header is missing or not in the allowed list (403).
    #[error("origin {origin:?} is not allowed")]
    OriginNotAllowed {
        /// The origin sent, if any.
        origin: Option<String>,
    },
    /// The client did not offer the "mqtt" subprotocol (400).
    #[error("the \"mqtt\" subprotocol was not offered (offered: {offered:?})")]
    NoMqttSubprotocol {
        /// What the client offered instead.
        offered: Vec<String>,
    },
}

impl UpgradeRefusal {
    /// The HTTP status code the request was answered with.
    pub fn status(&self) -> u16 {
        self.status_code().as_u16()
    }

    fn status_code(&self) -> StatusCode {
        match self {
            UpgradeRefusal::WrongPath { .. } => StatusCode::NOT_FOUND,
            UpgradeRefusal::OriginNotAllowed { .. } => StatusCode::FORBIDDEN,
            UpgradeRefusal::NoMqttSubprotocol { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// The body of the HTTP answer: a fixed text, which repeats nothing the client sent.
    fn body(&self) -> &'static str {
        match self {
            UpgradeRefusal::WrongPath { .. } => "no MQTT endpoint at this path\n",
            UpgradeRefusal::OriginNotAllowed { .. } => "origin not allowed\n",
            UpgradeRefusal::NoMqttSubprotocol { .. } => "the mqtt subprotocol is required\n",
        }
    }
}

/// Why a WebSocket upgrade did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The request broke one of the listener's rules and was answered with an HTTP error.
    #[error("WebSocket upgrade refused with HTTP {status}: {0}", status = .0.status())]
    Refused(
        /// What was wrong.
        UpgradeRefusal,
    ),
    /// The request was not a valid WebSocket upgrade, or the connection failed.
    #[error("WebSocket upgrade failed: {0}")]
    Failed(#[source] Box<tungstenite::Error>),
}

/// Checks an upgrade request against the listener's rules; returns the subprotocol to
/// answer with.
fn check_upgrade(
    settings: &WebSocketSettings,
    request: &Request,
) -> Result<&'static str, UpgradeRefusal> {
    let path = request.uri().path();
    if path != settings.path {
        return Err(UpgradeRefusal::WrongPath {
            path: path.to_owned(),
            expected: settings.path.clone(),
        });
    }
    if !settings.allowed_origins.is_empty() {
        let origin = request
            .headers()
            .get(ORIGIN)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let allowed = origin
            .as_ref()
            .is_some_and(|origin| settings.allowed_origins.contains(origin));
        if !allowed {
            return Err(UpgradeRefusal::OriginNotAllowed { origin });
        }
    }
    let offered = request
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or_default().split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty());
    let mut others = Vec::new();
    for token in offered {
        if let Some(known) = SUBPROTOCOLS.iter().find(|known| **known == token) {
            return Ok(known);
        }
        others.push(token.to_owned());
    }
    Err(UpgradeRefusal::NoMqttSubprotocol { offered: others })
}

/// The listener's checks, as tungstenite's handshake callback; a refusal is kept in
/// `refusal` so that the caller learns why the handshake failed.
struct UpgradeCheck<'a> {
    settings: &'a WebSocketSettings,
    refusal: &'a Cell<Option<UpgradeRefusal>>,
}

impl Callback for UpgradeCheck<'_> {
    fn on_request(
        self,
        request: &Request,
        mut response: Response,
    ) -> Result<Response, ErrorResponse> {
        match check_upgrade(self.settings, request) {
            Ok(subprotocol) => {
                response.headers_mut().insert(
                    SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_static(subprotocol),
                );
                Ok(response)
            }
            Err(refusal) => {
                let body = refusal.body();
                let mut response = ErrorResponse::new(Some(body.to_owned()));
                *response.status_mut() = refusal.status_code();
                let headers = response.headers_mut();
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
                self.refusal.set(Some(refusal));
                Err(response)
            }
        }
    }
}

/// Reads an upgrade request from `stream`, checks it against `settings` and answers it:
/// `101 Switching Protocols` with the chosen subprotocol, or an HTTP error. The client may
/// then send messages (and frames) of at most `max_message_size` bytes.
///
/// Not bounded in time: the caller bounds it.
pub async fn upgrade<S>(
    stream: S,
    settings: &WebSocketSettings,
    max_message_size: usize,
) -> Result<WebSocketStream<S>, UpgradeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = WebSocketConfig {
        // Each write is a batch already: send it at once rather than gather more.
        write_buffer_size: 0,
        max_message_size: Some(max_message_size),
        max_frame_size: Some(max_message_size),
        ..WebSocketConfig::default()
    };
    let refusal = Cell::new(None);
    let mut io = SyncIo::new(stream);
    io.limit_reads(Some(MAX_UPGRADE_REQUEST));
    let mut start = Some((
        io,
        UpgradeCheck {
            settings,
            refusal: &refusal,
        },
    ));
    let mut pending: Option<MidHandshake<ServerHandshake<SyncIo<S>, UpgradeCheck<'_>>>> = None;
    let handshake = futures_lite::future::poll_fn(|cx| {
        let attempt = if let Some((io, check)) = start.take() {
            io.register_reader(cx.waker());
            io.register_writer(cx.waker());
            ServerHandshake::start(io, check, Some(config)).handshake()
        } else if let Some(interrupted) = pending.take() {
            let io = interrupted.get_ref().get_ref();
            io.register_reader(cx.waker());
            io.register_writer(cx.waker());
            interrupted.handshake()
        } else {
            // Polled again after it finished, which `await` never does.
            return Poll::Ready(Err(tungstenite::Error::AlreadyClosed));
        };
        match attempt {
            Ok(socket) => Poll::Ready(Ok(socket)),
            Err(HandshakeError::Interrupted(interrupted)) => {
                pending = Some(interrupted);
                Poll::Pending
            }
            Err(HandshakeError::Failure(error)) => Poll::Ready(Err(error)),
        }
    });
    match handshake.await {
        Ok(mut socket) => {
            socket.get_mut().limit_reads(None);
            Ok(WebSocketStream {
                socket,
                unread: Vec::new(),
                unread_from: 0,
                backlogged: false,
            })
        }
        Err(error) => Err(match refusal.take() {
            Some(refusal) => UpgradeError::Refused(refusal),
            None => UpgradeError::Failed(Box::new(error)),
        }),
    }
}

/// An upgraded WebSocket seen as a byte stream of MQTT (see the module documentation).
///
/// Reads and writes may come from two tasks (the connection's reader and writer); each call
/// records its task's waker for the side it is on.
pub struct WebSocketStream<S = Carrier> {
    socket: WebSocket<SyncIo<S>>,
    /// The bytes of the last binary message that did not fit the caller's buffer.
    unread: Vec<u8>,
    /// How many bytes of `unread` were read already.
    unread_from: usize,
    /// A written frame is still (partly) in tungstenite's buffer: it goes out before another
    /// write is taken.
    backlogged: bool,
}

impl<S> WebSocketStream<S> {
    /// The stream the WebSocket runs over.
    pub fn get_ref(&self) -> &S {
        self.socket.get_ref().get_ref()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketStream<S> {
    /// Starts the closing handshake with `code` after a client broke the rules; best effort,
    /// since the connection ends anyway (the writer's `close` finishes sending it).
    fn close_with(&mut self, code: CloseCode, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        if let Err(error) = self.socket.close(Some(frame)) {
            tracing::trace!(%error, "WebSocket Close frame not sent yet");
        }
    }

    /// Moves the unread bytes into `buf`; returns how many.
    fn take_unread(&mut self, buf: &mut [u8]) -> usize {
        let rest = &self.unread[self.unread_from..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.unread_from += n;
        if self.unread_from == self.unread.len() {
            // Let go of the message's allocation.
            self.unread = Vec::new();
            self.unread_from = 0;
        }
        n
    }
}

/// A tungstenite error that is not about the peer's framing, as an I/O error.
fn io_error(error: tungstenite::Error) -> io::Error {
    match error {
        tungstenite::Error::Io(error) => error,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::ErrorKind::NotConnected.into()
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

/// Whether `error` only means the operation must wait for the socket.
fn is_would_block(error: &tungstenite::Error) -> bool {
    matches!(error, tungstenite::Error::Io(error) if error.kind() == io::ErrorKind::WouldBlock)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WebSocketStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.unread_from < this.unread.len() {
            return Poll::Ready(Ok(this.take_unread(buf)));
        }
        this.socket.get_ref().register_reader(cx.waker());
        loop {
            // Each call also sends what is owed: a pong, or the answer to a Close frame.
            match this.socket.read() {
                Ok(Message::Binary(data)) => {
                    this.unread = data;
                    this.unread_from = 0;
                    if !this.unread.is_empty() {
                        return Poll::Ready(Ok(this.take_unread(buf)));
                    }
                }
                // Answered by tungstenite (pong; Close answered on the next call, which
                // then ends the stream).
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_)) => {
                }
                Ok(Message::Text(_)) => {
                    this.close_with(CloseCode::Unsupported, "MQTT needs binary frames");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "WebSocket text frame received (MQTT needs binary frames)",
                    )));
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Poll::Ready(Ok(0));
                }
                Err(tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                )) => {
                    // The client closed TCP without a Close frame: for MQTT, the end of the
                    // stream all the same.
                    return Poll::Ready(Ok(0));
                }
                Err(error) if is_would_block(&error) => return Poll::Pending,
                Err(error) => {
                    let code = match &error {
                        tungstenite::Error::Capacity(_) => Some(CloseCode::Size),
                        tungstenite::Error::Protocol(_) => Some(CloseCode::Protocol),
                        _ => None,
                    };
                    if let Some(code) = code {
                        this.close_with(code, "");
                    }
                    return Poll::Ready(Err(io_error(error)));
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WebSocketStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.socket.get_ref().register_writer(cx.waker());
        if this.backlogged {
            match this.socket.flush() {
                Ok(()) => this.backlogged = false,
                Err(error) if is_would_block(&error) => return Poll::Pending,
                Err(error) => return Poll::Ready(Err(io_error(error))),
            }
        }
        match this.socket.write(Message::Binary(buf.to_vec())) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(error) if is_would_block(&error) => {
                // The frame is queued whole; it goes out before the next one.
                this.backlogged = true;
                Poll::Ready(Ok(buf.len()))
            }
            Err(error) => Poll::Ready(Err(io_error(error))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.socket.get_ref().register_writer(cx.waker());
        match this.socket.flush() {
            Ok(())
            | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                this.backlogged = false;
                Poll::Ready(Ok(()))
            }
            Err(error) if is_would_block(&error) => Poll::Pending,
            Err(error) => Poll::Ready(Err(io_error(error))),
        }
    }

    /// Sends a Close frame (unless the closing handshake is done already), then closes the
    /// sending side of the stream underneath: the server closes TCP first (RFC 6455 7.1.1).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.socket.get_ref().register_writer(cx.waker());
        match this.socket.close(None) {
            Ok(())
            | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {}
            Err(error) if is_would_block(&error) => return Poll::Pending,
            Err(error) => return Poll::Ready(Err(io_error(error))),
        }
        this.backlogged = false;
        this.socket.get_mut().poll_close()
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
    use glommio::net::TcpStream;
    use tungstenite::http::Request as HttpRequest;

    use super::*;
    use crate::transport::testing::{
        accept_one, run, tls_connect, within, ws_connect, TestPki, TlsVersion,
    };
    use crate::transport::{load_server_config, AcceptError, Acceptor, Transport, TransportKind};

    /// A CONNECT packet (MQTT 3.1.1, client id "test"), to be split over frames.
    const CONNECT: [u8; 18] = [
        0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x04, b't',
        b'e', b's', b't',
    ];
    /// PINGREQ and DISCONNECT, to be joined in one frame.
    const PING_AND_DISCONNECT: [u8; 4] = [0xc0, 0x00, 0xe0, 0x00];

    fn request(path: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = HttpRequest::builder().uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request")
    }

    #[test]
    fn the_upgrade_rules_are_checked_in_order() {
        let settings = WebSocketSettings {
            path: "/mqtt".to_owned(),
            allowed_origins: vec!["https://a.example".to_owned()],
        };
        let check = |path: &str, headers: &[(&str, &str)]| {
            check_upgrade(&settings, &request(path, headers))
        };
        let good = [
            ("Origin", "https://a.example"),
            ("Sec-WebSocket-Protocol", "mqtt"),
        ];
        assert_eq!(check("/mqtt", &good), Ok("mqtt"));
        assert_eq!(
            check("/mqtt?client=1", &good),
            Ok("mqtt"),
            "the query is not part of the path"
        );
        assert_eq!(check("/other", &good).map_err(|e| e.status()), Err(404));
        assert_eq!(
            check("/mqtt", &[("Sec-WebSocket-Protocol", "mqtt")]),
            Err(UpgradeRefusal::OriginNotAllowed { origin: None })
        );
        let foreign_origin = [
            ("Origin", "https://b.example"),
            ("Sec-WebSocket-Protocol", "mqtt"),
        ];
        assert_eq!(
            check("/mqtt", &foreign_origin).map_err(|e| e.status()),
            Err(403)
        );
        let no_mqtt = [
            ("Origin", "https://a.example"),
            ("Sec-WebSocket-Protocol", "chat, superchat"),
        ];
        assert_eq!(
            check("/mqtt", &no_mqtt),
            Err(UpgradeRefusal::NoMqttSubprotocol {
                offered: vec!["chat".to_owned(), "superchat".to_owned()]
            })
        );
        let repeated = [
            ("Origin", "https://a.example"),
            ("Sec-WebSocket-Protocol", "chat"),
            ("Sec-WebSocket-Protocol", "mqttv3.1, mqtt"),
        ];
        assert_eq!(
            check("/mqtt", &repeated),
            Ok("mqttv3.1"),
            "the client's first acceptable choice wins, across repeated headers"
        );
    }

    /// Accepts one WebSocket connection with `settings` and connects a client to it.
    async fn websocket_pair(
        settings: WebSocketSettings,
        path: &str,
        subprotocols: &[&str],
        origin: Option<&str>,
    ) -> (
        Result<
            (
                async_tungstenite::WebSocketStream<TcpStream>,
                crate::transport::testing::UpgradeResponse,
            ),
            tungstenite::Error,
        >,
        Result<crate::transport::Accepted, AcceptError>,
    ) {
        let (addr, server) = accept_one(Rc::new(Acceptor::websocket(settings))).await;
        let stream = TcpStream::connect(addr).await.expect("connect");
        let client = within(ws_connect(stream, path, subprotocols, origin)).await;
        (client, within(server).await)
    }

    /// A client offering `subprotocol` upgraded on a default listener, which must have chosen
    /// that subprotocol, and the server's side of the connection.
    async fn upgraded(
        subprotocol: &'static str,
    ) -> (
        async_tungstenite::WebSocketStream<TcpStream>,
        crate::transport::Accepted,
    ) {
        let (client, server) =
            websocket_pair(WebSocketSettings::default(), "/mqtt", &[subprotocol], None).await;
        let (client, response) = client.expect("client upgrade");
        assert_eq!(
            response.headers().get(SEC_WEBSOCKET_PROTOCOL),
            Some(&HeaderValue::from_static(subprotocol))
        );
        (client, server.expect("server upgrade"))
    }

    /// The next binary message the client receives (failing on anything else).
    async fn next_binary<S: AsyncRead + AsyncWrite + Unpin>(
        client: &mut async_tungstenite::WebSocketStream<S>,
    ) -> Vec<u8> {
        match within(client.next()).await {
            Some(Ok(Message::Binary(data))) => data,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }

    #[test]
    fn mqtt_bytes_pass_both_ways_split_and_joined_across_frames() {
        run(|| async {
            let (mut client, accepted) = upgraded("mqtt").await;
            assert_eq!(accepted.client_certificate_cn, None);
            let mut transport = accepted.transport;
            assert_eq!(transport.kind(), TransportKind::WebSocket);
            assert!(transport.tcp_socket().is_none());
            assert!(transport.peer_addr().is_ok());

            // One packet over three frames, then two packets in one frame.
            for part in [&CONNECT[..3], &CONNECT[3..11], &CONNECT[11..]] {
                client
                    .send(Message::Binary(part.to_vec()))
                    .await
                    .expect("send");
            }
            client
                .send(Message::Binary(PING_AND_DISCONNECT.to_vec()))
                .await
                .expect("send");
            // Read through a small buffer, so that messages are also cut by the reader.
            let mut received = Vec::new();
            while received.len() < CONNECT.len() + PING_AND_DISCONNECT.len() {
                let mut chunk = [0u8; 5];
                let n = within(transport.read(&mut chunk)).await.expect("read");
                assert_ne!(n, 0, "the stream ended early");
                received.extend_from_slice(&chunk[..n]);
            }
            assert_eq!(received, [&CONNECT[..], &PING_AND_DISCONNECT[..]].concat());

            // Each write is one binary frame.
            transport
                .write_all(&[0x20, 0x02, 0x00, 0x00])
                .await
                .expect("write");
            transport.write_all(&[0xd0, 0x00]).await.expect("write");
            transport.flush().await.expect("flush");
            assert_eq!(next_binary(&mut client).await, [0x20, 0x02, 0x00, 0x00]);
            assert_eq!(next_binary(&mut client).await, [0xd0, 0x00]);
        });
    }

    #[test]
    fn a_ping_is_answered_and_a_close_frame_ends_the_stream() {
        run(|| async {
            let (mut client, accepted) = upgraded("mqttv3.1").await;
            let mut transport = accepted.transport;
            let reader = glommio::spawn_local(async move {
                let mut received = Vec::new();
                let end = transport.read_to_end(&mut received).await;
                (end, received)
            });

            client
                .send(Message::Ping(b"are you there".to_vec()))
                .await
                .expect("ping");
            match within(client.next()).await {
                Some(Ok(Message::Pong(data))) => assert_eq!(data, b"are you there"),
                other => panic!("expected a pong, got {other:?}"),
            }

            client
                .send(Message::Binary(vec![0xc0, 0x00]))
                .await
                .expect("send");
            client.close(None).await.expect("close");
            // The server answers the Close frame, then closes the connection.
            assert!(matches!(
                within(client.next()).await,
                Some(Ok(Message::Close(_)))
            ));
            assert!(within(client.next()).await.is_none());
            let (end, received) = within(reader).await;
            assert_eq!(end.ok(), Some(2), "the stream ended cleanly");
            assert_eq!(received, [0xc0, 0x00]);
        });
    }

    #[test]
    fn a_text_frame_ends_the_connection_with_an_error() {
        run(|| async {
            let (mut client, accepted) = upgraded("mqtt").await;
            let mut transport = accepted.transport;

            client
                .send(Message::Text("hello".to_owned()))
                .await
                .expect("send");
            let mut buf = [0u8; 16];
            let error = within(transport.read(&mut buf)).await.err();
            assert_eq!(error.map(|e| e.kind()), Some(io::ErrorKind::InvalidData));
            // What the connection's writer does as the connection ends.
            let _ = transport.close().await;
            match within(client.next()).await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    assert_eq!(frame.code, CloseCode::Unsupported)
                }
                other => panic!("expected a Close frame, got {other:?}"),
            }
        });
    }

    /// The HTTP status a refused client was answered with, and the server's log line.
    async fn refused(
        settings: WebSocketSettings,
        path: &str,
        subprotocols: &[&str],
        origin: Option<&str>,
    ) -> (Option<u16>, String) {
        let (client, server) = websocket_pair(settings, path, subprotocols, origin).await;
        let status = match client {
            Err(tungstenite::Error::Http(response)) => Some(response.status().as_u16()),
            _ => None,
        };
        let log = match server {
            Err(error) => error.to_string(),
            Ok(_) => "accepted".to_owned(),
        };
        (status, log)
    }

    #[test]
    fn requests_breaking_the_listener_rules_get_http_errors() {
        run(|| async {
            let (status, log) =
                refused(WebSocketSettings::default(), "/other", &["mqtt"], None).await;
            assert_eq!(status, Some(404));
            assert_eq!(
                log,
                "WebSocket upgrade refused with HTTP 404: path \"/other\" is not \"/mqtt\""
            );

            let (status, log) = refused(WebSocketSettings::default(), "/mqtt", &[], None).await;
            assert_eq!(status, Some(400));
            assert!(
                log.starts_with("WebSocket upgrade refused with HTTP 400"),
                "{log}"
            );

            let only_a = WebSocketSettings {
                allowed_origins: vec!["https://a.example".to_owned()],
                ..WebSocketSettings::default()
            };
            let (status, log) = refused(
                only_a.clone(),
                "/mqtt",
                &["mqtt"],
                Some("https://b.example"),
            )
            .await;
            assert_eq!(status, Some(403));
            assert_eq!(
                log,
                "WebSocket upgrade refused with HTTP 403: origin Some(\"https://b.example\") is not allowed"
            );
            let (client, server) =
                websocket_pair(only_a, "/mqtt", &["mqtt"], Some("https://a.example")).await;
            assert!(
                client.is_ok() && server.is_ok(),
                "an allowed origin is accepted"
            );

            let custom = WebSocketSettings {
                path: "/ws".to_owned(),
                ..WebSocketSettings::default()
            };
            let (client, server) = websocket_pair(custom, "/ws", &["mqtt"], None).await;
            assert!(
                client.is_ok() && server.is_ok(),
                "the configured path is used"
            );
        });
    }

    #[test]
    fn an_oversized_message_ends_the_connection() {
        run(|| async {
            let acceptor =
                Acceptor::websocket(WebSocketSettings::default()).with_max_websocket_message(64);
            let (addr, server) = accept_one(Rc::new(acceptor)).await;
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut client, _) = within(ws_connect(stream, "/mqtt", &["mqtt"], None))
                .await
                .expect("client upgrade");
            let mut transport = within(server).await.expect("server upgrade").transport;
            client
                .send(Message::Binary(vec![0x30; 65]))
                .await
                .expect("send");
            let mut buf = [0u8; 128];
            assert!(within(transport.read(&mut buf)).await.is_err());
        });
    }

    #[test]
    fn secure_websocket_carries_bytes_and_the_client_identity() {
        let pki = TestPki::new();
        let config =
            load_server_config(&pki.server_files(Some(pki.ca_cert.clone()), true)).expect("config");
        let ca = pki.ca_der.clone();
        let identity = pki.client_identity();
        run(move || async move {
            let acceptor = Acceptor::secure_websocket(config, WebSocketSettings::default());
            assert_eq!(acceptor.kind(), TransportKind::SecureWebSocket);
            let (addr, server) = accept_one(Rc::new(acceptor)).await;
            let tls = tls_connect(addr, &ca, identity, TlsVersion::Tls13)
                .await
                .expect("TLS");
            let (mut client, _) = within(ws_connect(tls, "/mqtt", &["mqtt"], None))
                .await
                .expect("client upgrade");
            let accepted = within(server).await.expect("server upgrade");
            assert_eq!(accepted.client_certificate_cn.as_deref(), Some("sensor-17"));
            let mut transport = accepted.transport;
            assert_eq!(transport.kind(), TransportKind::SecureWebSocket);
            assert!(matches!(transport, Transport::WebSocket(_)));

            client
                .send(Message::Binary(CONNECT.to_vec()))
                .await
                .expect("send");
            let mut received = [0u8; CONNECT.len()];
            within(transport.read_exact(&mut received))
                .await
                .expect("read");
            assert_eq!(received, CONNECT);
            transport
                .write_all(&[0x20, 0x02, 0x00, 0x00])
                .await
                .expect("write");
            transport.flush().await.expect("flush");
            assert_eq!(next_binary(&mut client).await, [0x20, 0x02, 0x00, 0x00]);
        });
    }

    #[test]
    fn a_client_that_is_not_tls_fails_the_tls_handshake() {
        let pki = TestPki::new();
        let config = load_server_config(&pki.server_files(None, false)).expect("config");
        run(move || async move {
            let acceptor = Acceptor::secure_websocket(config, WebSocketSettings::default());
            let (addr, server) = accept_one(Rc::new(acceptor)).await;
            let stream = TcpStream::connect(addr).await.expect("connect");
            let _ = within(ws_connect(stream, "/mqtt", &["mqtt"], None)).await;
            let error = within(server).await.err();
            assert!(
                matches!(error, Some(AcceptError::TlsHandshake(_))),
                "{error:?}"
            );
        });
    }
}
