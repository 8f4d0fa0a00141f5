//! Test helpers for the transports: a certificate authority with server and client
//! certificates on disk, an executor to run in, real TLS and WebSocket clients, and a
//! listener that accepts one connection through an [`Acceptor`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::header::{ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use tungstenite::http::HeaderValue;

use super::tls::TlsFiles;
use super::{AcceptError, Accepted, Acceptor};

/// Longest any single step of a test may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) use crate::testing::TempDir;

/// A client's TLS identity.
pub(crate) enum ClientAuth {
    /// No certificate.
    None,
    /// This chain and key.
    Certificate(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
}

/// The TLS version a test client insists on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TlsVersion {
    Tls12,
    Tls13,
}

/// A fresh CA, a server certificate for "localhost" and a client certificate with the
/// Common Name "sensor-17", all signed by the CA and written as PEM files.
pub(crate) struct TestPki {
    pub(crate) dir: TempDir,
    pub(crate) ca_cert: PathBuf,
    pub(crate) ca_der: CertificateDer<'static>,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) client_key: PathBuf,
    client_chain: Vec<CertificateDer<'static>>,
    client_key_der: Vec<u8>,
}

impl TestPki {
    pub(crate) fn new() -> TestPki {
        let dir = TempDir::new("tls");
        let write = |name: &str, contents: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, contents).expect("write a PEM file");
            path
        };

        let ca_key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "hydrant test CA");
        let ca = params.self_signed(&ca_key).expect("CA certificate");

        let server_key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = params
            .signed_by(&server_key, &ca, &ca_key)
            .expect("server certificate");

        let client_key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params
            .distinguished_name
            .push(DnType::CommonName, "sensor-17");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = params
            .signed_by(&client_key, &ca, &ca_key)
            .expect("client certificate");

        TestPki {
            ca_cert: write("ca.pem", ca.pem()),
            ca_der: ca.der().clone(),
            server_cert: write("server.pem", server.pem()),
            server_key: write("server.key", server_key.serialize_pem()),
            client_key: write("client.key", client_key.serialize_pem()),
            client_chain: vec![client.der().clone()],
            client_key_der: client_key.serialize_der(),
            dir,
        }
    }

    /// The server's files, with `cafile` to verify clients.
    pub(crate) fn server_files(&self, cafile: Option<PathBuf>, require: bool) -> TlsFiles {
        TlsFiles {
            certfile: self.server_cert.clone(),
            keyfile: self.server_key.clone(),
            cafile,
            require_certificate: require,
        }
    }

    /// The client certificate and its key.
    pub(crate) fn client_identity(&self) -> ClientAuth {
        ClientAuth::Certificate(
            self.client_chain.clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.client_key_der.clone())),
        )
    }
}

pub(crate) use crate::testing::run;

/// `future`'s output, failing the test if it takes longer than a few seconds.
pub(crate) async fn within<T>(future: impl Future<Output = T>) -> T {
    futures_lite::future::or(future, async {
        glommio::timer::sleep(STEP_TIMEOUT).await;
        panic!("a test step took longer than {STEP_TIMEOUT:?}");
    })
    .await
}

/// Writes `bytes` to `from` and flushes, then checks that `to` reads exactly those bytes.
pub(crate) async fn pass_bytes(
    from: &mut (impl AsyncWrite + Unpin),
    to: &mut (impl AsyncRead + Unpin),
    bytes: &[u8],
) {
    from.write_all(bytes).await.expect("write");
    from.flush().await.expect("flush");
    let mut received = vec![0u8; bytes.len()];
    within(to.read_exact(&mut received)).await.expect("read");
    assert_eq!(received, bytes);
}

/// Listens on an ephemeral loopback port and accepts one connection through `acceptor`.
pub(crate) async fn accept_one(
    acceptor: Rc<Acceptor>,
) -> (SocketAddr, glommio::Task<Result<Accepted, AcceptError>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("listener address");
    let server = glommio::spawn_local(async move {
        let stream = listener.accept().await.expect("accept");
        acceptor.accept(stream).await
    });
    (addr, server)
}

/// Connects to `addr` over TLS, trusting `ca` for the server name "localhost".
pub(crate) async fn tls_connect(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    auth: ClientAuth,
    version: TlsVersion,
) -> io::Result<futures_rustls::client::TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).expect("trust the test CA");
    let versions: &[&rustls::SupportedProtocolVersion] = match version {
        TlsVersion::Tls12 => &[&rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .expect("protocol versions")
            .with_root_certificates(roots);
    let config = match auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Certificate(chain, key) => builder
            .with_client_auth_cert(chain, key)
            .expect("client certificate"),
    };
    let stream = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("server name");
    futures_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
}

/// The answer to a WebSocket client's upgrade request.
pub(crate) type UpgradeResponse = tungstenite::handshake::client::Response;

/// Runs a WebSocket client's upgrade over `stream`, for `path`, offering `subprotocols`
/// (none: no Sec-WebSocket-Protocol header) and sending `origin`.
pub(crate) async fn ws_connect<S>(
    stream: S,
    path: &str,
    subprotocols: &[&str],
    origin: Option<&str>,
) -> Result<(async_tungstenite::WebSocketStream<S>, UpgradeResponse), tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = format!("ws://localhost{path}").into_client_request()?;
    let headers = request.headers_mut();
    if !subprotocols.is_empty() {
        let offered = HeaderValue::from_str(&subprotocols.join(", ")).expect("subprotocols");
        headers.insert(SEC_WEBSOCKET_PROTOCOL, offered);
    }
    if let Some(origin) = origin {
        headers.insert(ORIGIN, HeaderValue::from_str(origin).expect("origin"));
    }
    async_tungstenite::client_async(request, stream).await
}
