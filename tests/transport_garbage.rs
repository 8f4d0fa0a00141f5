//! Garbage on the TLS and WebSocket transports: bytes that are not TLS on a TLS port, a
//! truncated or stalled ClientHello, and malformed WebSocket frames (unmasked, text, reserved
//! opcode, reserved bits, oversize or impossible lengths, fragmented control frames, a
//! continuation without a start). Each must close only the offending connection: a healthy
//! plain-MQTT pair, a fresh TLS client and a fresh WebSocket client keep working on the same
//! broker, and the broker never panics.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use common::raw::Connect;
use common::{Broker, HealthyPair};

/// How long the broker may take to close a connection that sent garbage.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on every read and write of a well-behaved client.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;

/// A CA and a server certificate for 127.0.0.1 written to a fresh directory.
struct Pki {
    dir: PathBuf,
    ca_der: CertificateDer<'static>,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hydrant-transport-garbage-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the certificate directory");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("self-signed CA");
        let server_key = KeyPair::generate().expect("server key");
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server params")
            .signed_by(&server_key, &ca, &ca_key)
            .expect("server certificate");
        let cert = dir.join("server.cert.pem");
        let key = dir.join("server.key.pem");
        std::fs::write(&cert, server.pem()).expect("write the certificate");
        std::fs::write(&key, server_key.serialize_pem()).expect("write the key");
        Pki {
            dir,
            ca_der: ca.der().clone(),
            cert,
            key,
        }
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("trust the test CA");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Arc::new(config)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A broker with a plain listener (the `--bind` one), a TLS, a ws and a wss listener.
fn start_broker(pki: &Pki) -> Broker {
    let cert = pki.cert.display();
    let key = pki.key.display();
    let config = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"mqtt\"\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"mqtt+tls\"\n\
         certfile = \"{cert}\"\nkeyfile = \"{key}\"\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"wss\"\n\
         certfile = \"{cert}\"\nkeyfile = \"{key}\"\n"
    );
    Broker::with_config(&config, &[])
}

/// The port of the first listener announced with `(protocol)`.
fn port_of(broker: &Broker, protocol: &str) -> u16 {
    let suffix = format!(" ({protocol})");
    broker
        .listening
        .iter()
        .find_map(|line| {
            let addr = line
                .strip_prefix("hydrant: listening on ")?
                .strip_suffix(&suffix)?;
            addr.rsplit(':').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no `({protocol})` listener in {:?}", broker.listening))
}

/// Reads until the peer closes; Ok(bytes read) or Err(bytes read) if still open at `wait`.
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, stream.read(&mut chunk)).await {
            Err(_) => return Err(seen),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn tcp(port: u16) -> TcpStream {
    timeout(IO_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
        .await
        .expect("TCP connect timed out")
        .expect("TCP connect")
}

/// A TLS client that completes a handshake, CONNECTs and pings: the TLS port still serves.
async fn assert_tls_serves(pki: &Pki, port: u16, client_id: &str) {
    let config = pki.client_config();
    let connect = Connect::v311(client_id).encode();
    let what = format!("TLS client {client_id}");
    tokio::task::spawn_blocking(move || {
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let connection = rustls::ClientConnection::new(config, name).expect("TLS client");
        let socket = StdTcpStream::connect(("127.0.0.1", port)).expect("TCP connect");
        socket
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("read timeout");
        socket
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("write timeout");
        let mut tls = rustls::StreamOwned::new(connection, socket);
        tls.write_all(&connect).expect("TLS handshake and CONNECT");
        let mut connack = [0u8; 4];
        tls.read_exact(&mut connack).expect("CONNACK over TLS");
        assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK over TLS");
        tls.write_all(&[0xC0, 0]).expect("PINGREQ over TLS");
        let mut pingresp = [0u8; 2];
        tls.read_exact(&mut pingresp).expect("PINGRESP over TLS");
        assert_eq!(pingresp, [0xD0, 0], "PINGRESP over TLS");
    })
    .await
    .unwrap_or_else(|panic| panic!("{what}: {panic}"));
}

/// The ClientHello a real rustls client sends first.
fn client_hello(pki: &Pki) -> Vec<u8> {
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let mut connection =
        rustls::ClientConnection::new(pki.client_config(), name).expect("TLS client");
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).expect("ClientHello");
    assert!(
        hello.len() > 40 && hello[0] == 0x16,
        "a TLS handshake record"
    );
    hello
}

/// Everything that must still work after a bad connection was closed.
async fn assert_broker_healthy(broker: &Broker, pki: &Pki, pair: &mut HealthyPair, when: &str) {
    pair.check(when).await;
    assert_tls_serves(pki, port_of(broker, "mqtt+tls"), &format!("tls-{when}")).await;
    let mut ws = WsClient::connect(port_of(broker, "ws")).await;
    ws.mqtt_session(&format!("ws-{when}")).await;
    assert!(
        !broker.stderr_text().contains("panicked"),
        "the broker panicked ({when}):\n{}",
        broker.stderr_text()
    );
}

/// A WebSocket client written by hand, so it can send what no library would.
struct WsClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl WsClient {
    /// Upgrades a TCP connection on `/mqtt` with the `mqtt` subprotocol; panics unless 101.
    async fn connect(port: u16) -> WsClient {
        let mut stream = tcp(port).await;
        let request = format!(
            "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
        );
        timeout(IO_TIMEOUT, stream.write_all(request.as_bytes()))
            .await
            .expect("upgrade request timed out")
            .expect("send the upgrade request");
        let mut buf = Vec::new();
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = timeout(IO_TIMEOUT, stream.read(&mut chunk))
                .await
                .expect("upgrade response timed out")
                .expect("read the upgrade response");
            assert!(n > 0, "closed during the upgrade: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        // RFC 6455's example key has this accept value.
        assert!(
            head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "wrong Sec-WebSocket-Accept: {head}"
        );
        buf.drain(..end);
        WsClient { stream, buf }
    }

    /// A frame as written: any header bits, masked or not, any announced length.
    fn frame(first: u8, masked: bool, announced: u64, payload: &[u8]) -> Vec<u8> {
        let mask_bit = if masked { 0x80 } else { 0 };
        let mut out = vec![first];
        if announced < 126 {
            out.push(mask_bit | announced as u8);
        } else if announced <= u64::from(u16::MAX) {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(announced as u16).to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&announced.to_be_bytes());
        }
        if masked {
            let key = [0x37, 0xfa, 0x21, 0x3d];
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
        out
    }

    /// A well-formed, masked, final frame.
    fn good_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        Self::frame(0x80 | opcode, true, payload.len() as u64, payload)
    }

    async fn send(&mut self, bytes: &[u8]) {
        timeout(IO_TIMEOUT, self.stream.write_all(bytes))
            .await
            .expect("WebSocket write timed out")
            .expect("WebSocket write");
    }

    /// The payload of the next binary frame(s) until `count` bytes arrived.
    async fn recv_binary(&mut self, count: usize) -> Vec<u8> {
        let mut data = Vec::new();
        while data.len() < count {
            let (opcode, payload) = self.recv_frame().await;
            assert!(
                opcode == OP_BINARY || opcode == OP_CONTINUATION,
                "expected a binary frame, got opcode {opcode}"
            );
            data.extend_from_slice(&payload);
        }
        data
    }

    async fn fill(&mut self, count: usize) {
        while self.buf.len() < count {
            let mut chunk = [0u8; 4096];
            let n = timeout(IO_TIMEOUT, self.stream.read(&mut chunk))
                .await
                .expect("WebSocket read timed out")
                .expect("WebSocket read");
            assert!(n > 0, "the broker closed a healthy WebSocket connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn recv_frame(&mut self) -> (u8, Vec<u8>) {
        self.fill(2).await;
        assert_eq!(self.buf[1] & 0x80, 0, "the server masked a frame");
        let (len, header) = match self.buf[1] & 0x7f {
            126 => {
                self.fill(4).await;
                (u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4)
            }
            127 => {
                self.fill(10).await;
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(bytes), 10)
            }
            short => (u64::from(short), 2),
        };
        let len = usize::try_from(len).expect("frame length fits usize");
        self.fill(header + len).await;
        let opcode = self.buf[0] & 0x0f;
        let payload = self.buf[header..header + len].to_vec();
        self.buf.drain(..header + len);
        (opcode, payload)
    }

    /// CONNECT, CONNACK, PINGREQ, PINGRESP: an MQTT session works on this connection.
    async fn mqtt_session(&mut self, client_id: &str) {
        self.send(&Self::good_frame(
            OP_BINARY,
            &Connect::v311(client_id).encode(),
        ))
        .await;
        assert_eq!(
            self.recv_binary(4).await,
            [0x20, 2, 0, 0],
            "CONNACK over ws"
        );
        self.send(&Self::good_frame(OP_BINARY, &[0xC0, 0])).await;
        assert_eq!(self.recv_binary(2).await, [0xD0, 0], "PINGRESP over ws");
    }

    /// Asserts the broker closes the connection (a close frame before EOF is allowed).
    async fn assert_closed(mut self, what: &str) {
        match read_until_closed(&mut self.stream, CLOSE_TIMEOUT).await {
            Ok(rest) => {
                self.buf.extend_from_slice(&rest);
                if let Some(&first) = self.buf.first() {
                    assert_eq!(
                        first & 0x0f,
                        OP_CLOSE,
                        "{what}: the broker answered {:?} instead of closing",
                        self.buf
                    );
                }
            }
            Err(seen) => panic!("{what}: still open {CLOSE_TIMEOUT:?} later (read {seen:?})"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_tls_bytes_on_tls_ports_close_only_that_connection() {
    let pki = Pki::new();
    let broker = start_broker(&pki);
    let mut pair = HealthyPair::new(broker.port, "tls-garbage").await;
    for protocol in ["mqtt+tls", "wss"] {
        let port = port_of(&broker, protocol);
        let garbage: [(&str, Vec<u8>); 3] = [
            ("a clear-text CONNECT", Connect::v311("clear").encode()),
            (
                "an HTTP request",
                b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            ),
            (
                "a record header with an absurd length",
                vec![0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0, 0, 0],
            ),
        ];
        for (what, bytes) in garbage {
            let mut stream = tcp(port).await;
            stream.write_all(&bytes).await.expect("send garbage");
            if let Err(seen) = read_until_closed(&mut stream, CLOSE_TIMEOUT).await {
                panic!("{protocol}: {what} left the connection open (read {seen:?})");
            }
            assert_broker_healthy(&broker, &pki, &mut pair, &format!("after {what}")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_client_hello_closes_only_that_connection() {
    let pki = Pki::new();
    let broker = start_broker(&pki);
    let mut pair = HealthyPair::new(broker.port, "tls-truncated").await;
    let hello = client_hello(&pki);
    for protocol in ["mqtt+tls", "wss"] {
        let port = port_of(&broker, protocol);
        for cut in [3, 5, hello.len() / 2, hello.len() - 1] {
            let mut stream = tcp(port).await;
            stream
                .write_all(&hello[..cut])
                .await
                .expect("send half a hello");
            stream.shutdown().await.expect("half-close");
            if let Err(seen) = read_until_closed(&mut stream, CLOSE_TIMEOUT).await {
                panic!(
                    "{protocol}: a ClientHello cut at {cut} left the connection open ({seen:?})"
                );
            }
        }
        assert_broker_healthy(&broker, &pki, &mut pair, &format!("{protocol} truncated")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_do_not_block_other_clients() {
    let pki = Pki::new();
    let broker = start_broker(&pki);
    let mut pair = HealthyPair::new(broker.port, "tls-stalled").await;
    let hello = client_hello(&pki);
    let mut stalled = Vec::new();
    for protocol in ["mqtt+tls", "wss"] {
        for _ in 0..4 {
            let mut stream = tcp(port_of(&broker, protocol)).await;
            stream
                .write_all(&hello[..hello.len() / 2])
                .await
                .expect("send half a hello");
            stalled.push(stream);
        }
    }
    // Half-finished WebSocket upgrades too.
    for _ in 0..4 {
        let mut stream = tcp(port_of(&broker, "ws")).await;
        stream
            .write_all(b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .expect("send half an upgrade");
        stalled.push(stream);
    }
    assert_broker_healthy(&broker, &pki, &mut pair, "with stalled handshakes").await;
    drop(stalled);
}

/// One malformed frame after a working MQTT session on a ws connection.
struct BadFrame {
    what: &'static str,
    bytes: Vec<u8>,
}

fn bad_frames() -> Vec<BadFrame> {
    let pingreq = [0xC0u8, 0];
    vec![
        BadFrame {
            what: "an unmasked client frame",
            bytes: WsClient::frame(0x80 | OP_BINARY, false, 2, &pingreq),
        },
        BadFrame {
            what: "a text frame",
            bytes: WsClient::good_frame(OP_TEXT, b"\xc0\x00"),
        },
        BadFrame {
            what: "reserved opcode 3",
            bytes: WsClient::good_frame(0x3, &pingreq),
        },
        BadFrame {
            what: "reserved control opcode 0xB",
            bytes: WsClient::good_frame(0xB, b""),
        },
        BadFrame {
            what: "RSV1 set without an extension",
            bytes: WsClient::frame(0x80 | 0x40 | OP_BINARY, true, 2, &pingreq),
        },
        BadFrame {
            what: "a 64-bit length with the top bit set",
            bytes: WsClient::frame(0x80 | OP_BINARY, true, 1 << 63, &pingreq),
        },
        BadFrame {
            what: "an oversize length (1 TiB)",
            bytes: WsClient::frame(0x80 | OP_BINARY, true, 1 << 40, &pingreq),
        },
        BadFrame {
            what: "a fragmented ping",
            bytes: WsClient::frame(OP_PING, true, 1, b"x"),
        },
        BadFrame {
            what: "a control frame longer than 125 bytes",
            bytes: WsClient::frame(0x80 | OP_PING, true, 126, &[b'p'; 126]),
        },
        BadFrame {
            what: "a continuation without a first fragment",
            bytes: WsClient::good_frame(OP_CONTINUATION, &pingreq),
        },
        BadFrame {
            what: "a new data frame inside a fragmented message",
            bytes: [
                WsClient::frame(OP_BINARY, true, 1, &[0xC0]),
                WsClient::good_frame(OP_BINARY, &pingreq),
            ]
            .concat(),
        },
        BadFrame {
            what: "MQTT garbage inside a valid frame",
            bytes: WsClient::good_frame(OP_BINARY, &[0x00, 0x00]),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_websocket_frames_close_only_that_connection() {
    let pki = Pki::new();
    let broker = start_broker(&pki);
    let mut pair = HealthyPair::new(broker.port, "ws-garbage").await;
    let ws_port = port_of(&broker, "ws");
    for (index, bad) in bad_frames().into_iter().enumerate() {
        let client_id = format!("ws-bad-{index}");
        let mut ws = WsClient::connect(ws_port).await;
        ws.mqtt_session(&client_id).await;
        ws.send(&bad.bytes).await;
        ws.assert_closed(bad.what).await;
        assert!(
            broker
                .wait_disconnected(&client_id, common::LOG_TIMEOUT)
                .is_some(),
            "{}: no `client disconnected` line for {client_id}",
            bad.what
        );
        assert_broker_healthy(&broker, &pki, &mut pair, &format!("after {}", bad.what)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_upgrade_requests_close_only_that_connection() {
    let pki = Pki::new();
    let broker = start_broker(&pki);
    let mut pair = HealthyPair::new(broker.port, "ws-upgrade-garbage").await;
    let ws_port = port_of(&broker, "ws");
    let requests: [(&str, Vec<u8>); 4] = [
        ("binary noise", vec![0xff; 64]),
        ("an MQTT CONNECT", Connect::v311("not-http").encode()),
        (
            "a request line without headers end, then EOF",
            b"GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\n".to_vec(),
        ),
        (
            "an endless header line",
            [
                b"GET /mqtt HTTP/1.1\r\nX-Long: ".to_vec(),
                vec![b'a'; 256 * 1024],
            ]
            .concat(),
        ),
    ];
    for (what, bytes) in requests {
        let mut stream = tcp(ws_port).await;
        // The broker may close before reading everything: a failed write is fine.
        let _ = timeout(IO_TIMEOUT, stream.write_all(&bytes)).await;
        let _ = stream.shutdown().await;
        match read_until_closed(&mut stream, CLOSE_TIMEOUT).await {
            Ok(seen) => {
                let text = String::from_utf8_lossy(&seen);
                assert!(
                    !text.starts_with("HTTP/1.1 101"),
                    "{what}: upgraded anyway: {text}"
                );
            }
            Err(seen) => panic!("{what}: still open {CLOSE_TIMEOUT:?} later ({seen:?})"),
        }
        assert_broker_healthy(&broker, &pki, &mut pair, &format!("after {what}")).await;
    }
}
