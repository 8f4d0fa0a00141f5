//! TLS for the generator's clients: the rustls client configuration, built once per run from
//! `--cafile`, `--certfile`/`--keyfile`, `--insecure` and `--server-name` and shared by every
//! connection (so churning clients resume sessions as real ones do), the handshake, and errors
//! that say what to check when the broker's certificate is refused.

use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_rustls::client::TlsStream;
use futures_rustls::TlsConnector;
use glommio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::{is_hang_up, TransportError};
use crate::client::ClientError;

/// The system's CA certificates on Debian and its relatives; `SSL_CERT_FILE` overrides it.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The TLS options a run was given.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// PEM CA certificates the broker's certificate must chain to; `None`: the system's.
    pub cafile: Option<PathBuf>,
    /// PEM client certificate chain, sent when the broker asks for one.
    pub certfile: Option<PathBuf>,
    /// PEM private key of `certfile`.
    pub keyfile: Option<PathBuf>,
    /// Accept any broker certificate (self-signed benchmarking).
    pub insecure: bool,
    /// The name the broker's certificate must be valid for, also sent as SNI.
    pub server_name: String,
}

/// A run's TLS client side, shared by all its connections.
#[derive(Clone, Debug)]
pub struct TlsClient {
    /// The rustls configuration (with its session cache).
    config: Arc<ClientConfig>,
    /// The name verified in the broker's certificate.
    server_name: ServerName<'static>,
    /// Where the trusted CAs come from, for error messages.
    trust: String,
}

impl TlsClient {
    /// Builds the configuration; with `insecure` it prints its one warning.
    pub fn new(options: &TlsOptions) -> Result<TlsClient, TransportError> {
        let server_name = ServerName::try_from(options.server_name.clone()).map_err(|_| {
            TransportError::Invalid(format!(
                "'{}' is not a host name or IP address the broker's certificate can be \
                 verified for (set --server-name)",
                options.server_name
            ))
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::Invalid(format!("TLS set-up: {e}")))?;
        let (builder, trust) = if options.insecure {
            eprintln!(
                "hydrant-loadtest: warning: --insecure: the broker's certificate is not verified"
            );
            let verifier = AcceptAnyCertificate(provider.signature_verification_algorithms);
            let builder = builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier));
            (builder, "nothing (--insecure)".to_owned())
        } else {
            let (option, path) = match &options.cafile {
                Some(path) => ("--cafile", path.clone()),
                None => ("the system's CA file", system_ca_file()?),
            };
            let roots = load_roots(option, &path)?;
            let trust = format!("{option} {}", path.display());
            (builder.with_root_certificates(roots), trust)
        };
        let config = match (&options.certfile, &options.keyfile) {
            (Some(certfile), Some(keyfile)) => {
                let chain = load_certificates("--certfile", certfile)?;
                let key = load_key(keyfile)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    TransportError::Invalid(format!(
                        "--certfile/--keyfile cannot be used together: {e}"
                    ))
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(TransportError::Invalid(
                    "--certfile and --keyfile go together".into(),
                ))
            }
        };
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
            trust,
        })
    }

    /// Runs the TLS handshake over `tcp`.
    pub async fn handshake(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, ClientError> {
        TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|error| self.handshake_failure(error))
    }

    /// What a failed handshake means.
    fn handshake_failure(&self, error: io::Error) -> ClientError {
        if let Some(tls) = rustls_error(&error) {
            return match tls {
                rustls::Error::InvalidCertificate(reason) => ClientError::CertificateRejected {
                    server_name: self.server_name.to_str().into_owned(),
                    reason: self.describe_certificate_error(reason),
                },
                rustls::Error::InvalidMessage(_) => {
                    ClientError::Tls(format!("{tls}: is this a TLS listener?"))
                }
                other => ClientError::Tls(other.to_string()),
            };
        }
        if is_hang_up(&error) {
            return ClientError::HandshakeClosed {
                during: "the TLS handshake",
                listener: "TLS",
            };
        }
        ClientError::Io(error.to_string())
    }

    /// Why the broker's certificate was refused, with what to check.
    fn describe_certificate_error(&self, error: &CertificateError) -> String {
        match error {
            CertificateError::UnknownIssuer => {
                format!("it is not signed by a CA of {}", self.trust)
            }
            other => other.to_string(),
        }
    }
}

/// The rustls error inside an I/O error of a TLS stream, if it carries one.
pub fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// The system's CA file: `SSL_CERT_FILE`, else [`SYSTEM_CA_FILE`] if it exists.
fn system_ca_file() -> Result<PathBuf, TransportError> {
    let path = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_FILE));
    if path.exists() {
        Ok(path)
    } else {
        Err(TransportError::Invalid(format!(
            "no CA certificates to verify the broker with ({} does not exist): give --cafile, \
             or --insecure to skip verification",
            path.display()
        )))
    }
}

/// Opens a PEM file named by `option`.
fn open(option: &'static str, path: &Path) -> Result<BufReader<std::fs::File>, TransportError> {
    std::fs::File::open(path)
        .map(BufReader::new)
        .map_err(|e| TransportError::Unreadable {
            option,
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// The certificates of a PEM file; at least one.
fn load_certificates(
    option: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certificates = rustls_pemfile::certs(&mut open(option, path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::Unreadable {
            option,
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TransportError::Empty {
            option,
            path: path.display().to_string(),
            what: "PEM certificate",
        });
    }
    Ok(certificates)
}

/// The CA certificates of a PEM file; at least one usable.
fn load_roots(option: &'static str, path: &Path) -> Result<RootCertStore, TransportError> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(load_certificates(option, path)?);
    if added == 0 {
        return Err(TransportError::Empty {
            option,
            path: path.display().to_string(),
            what: "usable CA certificate",
        });
    }
    Ok(roots)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TransportError> {
    let option = "--keyfile";
    rustls_pemfile::private_key(&mut open(option, path)?)
        .map_err(|e| TransportError::Unreadable {
            option,
            path: path.display().to_string(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| TransportError::Empty {
            option,
            path: path.display().to_string(),
            what: "PEM private key",
        })
}

/// `--insecure`: accepts any certificate, but still checks that the broker holds the key of
/// the certificate it sent, so the handshake itself stays sound.
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(cafile: Option<&str>) -> TlsOptions {
        TlsOptions {
            cafile: cafile.map(PathBuf::from),
            server_name: "localhost".into(),
            ..TlsOptions::default()
        }
    }

    #[test]
    fn unusable_files_are_named_in_the_error() {
        let missing = TlsClient::new(&options(Some("/nonexistent/ca.pem"))).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot read --cafile /nonexistent/ca.pem:"),
            "{missing}"
        );
        let dir = std::env::temp_dir().join(format!("hl-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = TlsClient::new(&options(empty.to_str())).unwrap_err();
        assert!(
            error.to_string().contains("holds no PEM certificate"),
            "{error}"
        );
        let mut insecure = options(None);
        insecure.insecure = true;
        insecure.certfile = Some(empty.clone());
        insecure.keyfile = Some(empty.clone());
        let error = TlsClient::new(&insecure).unwrap_err();
        assert!(error.to_string().contains("--certfile"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn server_names_may_be_host_names_or_addresses() {
        let mut insecure = options(None);
        insecure.insecure = true;
        for name in ["localhost", "broker.example.org", "127.0.0.1", "::1"] {
            insecure.server_name = name.into();
            assert!(TlsClient::new(&insecure).is_ok(), "{name}");
        }
        insecure.server_name = "not a name".into();
        assert!(TlsClient::new(&insecure).is_err());
    }
}
