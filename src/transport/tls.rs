//! TLS for `mqtt+tls` and `wss` listeners: the server configuration built from a listener's
//! PEM files (certfile, keyfile, optional cafile for client certificates), and the identity
//! of a verified client certificate.
//!
//! TLS 1.2 and 1.3 with rustls' ring provider. The files are read with blocking I/O: at
//! start-up and on reload, never per connection.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

/// The PEM files of one TLS listener, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, leaf first.
    pub certfile: PathBuf,
    /// The server's private key (PKCS#8, PKCS#1/RSA or SEC1/EC).
    pub keyfile: PathBuf,
    /// CA certificates that client certificates are verified against (none: clients are not
    /// asked for one).
    pub cafile: Option<PathBuf>,
    /// Whether a client must present a certificate signed by `cafile`.
    pub require_certificate: bool,
}

/// Why a listener's TLS configuration cannot be built; the message names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A file is not valid PEM.
    #[error("{}: malformed PEM: {source}", path.display())]
    MalformedPem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        source: io::Error,
    },
    /// A certificate file holds no certificate.
    #[error("{}: no certificate found (expected PEM \"CERTIFICATE\" blocks)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error("{}: no private key found (expected a PEM PKCS#8, RSA or EC private key)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is not the one of the certificate's public key.
    #[error(
        "{}: the private key does not match the certificate in {}",
        keyfile.display(),
        certfile.display()
    )]
    KeyMismatch {
        /// The key file.
        keyfile: PathBuf,
        /// The certificate file.
        certfile: PathBuf,
    },
    /// The private key (or the certificate with it) cannot be used.
    #[error("{}: unusable private key: {reason}", keyfile.display())]
    UnusableKey {
        /// The key file.
        keyfile: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// A certificate in the file does not parse as X.509.
    #[error("{}: certificate #{number} is not a valid X.509 certificate: {reason}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// Which certificate of the file, from 1.
        number: usize,
        /// What the parser found wrong.
        reason: String,
    },
    /// The CA file's certificates cannot be used to verify clients.
    #[error("{}: unusable CA certificate: {reason}", path.display())]
    BadCa {
        /// The CA file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// `require_certificate` is set but no `cafile` says which certificates to accept.
    #[error("require_certificate = true needs a cafile to verify client certificates against")]
    RequireCertificateWithoutCa,
}

/// Builds the server configuration of a TLS listener from its files.
///
/// With a cafile, a client certificate is verified against it: mandatory when
/// `require_certificate`, optional (but verified when sent) otherwise.
pub fn load_server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certificates = read_certificates(&files.certfile)?;
    let key = read_key(&files.keyfile)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|reason| TlsError::UnusableKey {
            keyfile: files.keyfile.clone(),
            reason: reason.to_string(),
        })?;
    let builder = match &files.cafile {
        Some(cafile) => {
            let verifier = client_verifier(cafile, files.require_certificate, provider)?;
            builder.with_client_cert_verifier(verifier)
        }
        None if files.require_certificate => return Err(TlsError::RequireCertificateWithoutCa),
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certificates, key)
        .map_err(|reason| match reason {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                keyfile: files.keyfile.clone(),
                certfile: files.certfile.clone(),
            },
            reason => TlsError::UnusableKey {
                keyfile: files.keyfile.clone(),
                reason: reason.to_string(),
            },
        })?;
    Ok(Arc::new(config))
}

/// The subject Common Name of the client certificate verified during `connection`'s
/// handshake (for `use_identity_as_username`); `None` without a certificate or a CN.
pub fn client_certificate_cn(connection: &ServerConnection) -> Option<String> {
    let leaf = connection.peer_certificates()?.first()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let common_name = certificate.subject().iter_common_name().next()?;
    common_name.as_str().ok().map(str::to_owned)
}

/// Reads a whole file, naming it on failure.
fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Unreadable {
        path: path.to_owned(),
        source,
    })
}

/// The certificates of a PEM file: at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path)?;
    let certificates = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::MalformedPem {
            path: path.to_owned(),
            source,
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    // A block that is valid PEM but not a certificate would otherwise surface later as a
    // key problem, naming the wrong file.
    for (index, certificate) in certificates.iter().enumerate() {
        if let Err(error) = x509_parser::parse_x509_certificate(certificate) {
            return Err(TlsError::BadCertificate {
                path: path.to_owned(),
                number: index + 1,
                reason: error.to_string(),
            });
        }
    }
    Ok(certificates)
}

/// The first private key of a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| TlsError::MalformedPem {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: path.to_owned(),
        })
}

/// Verifies client certificates against the CAs of `cafile`.
fn client_verifier(
    cafile: &Path,
    require_certificate: bool,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let bad_ca = |reason: String| TlsError::BadCa {
        path: cafile.to_owned(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(cafile)? {
        roots
            .add(certificate)
            .map_err(|error| bad_ca(error.to_string()))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if require_certificate {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder.build().map_err(|error| bad_ca(error.to_string()))
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::transport::testing::{
        accept_one, pass_bytes, run, tls_connect, within, ClientAuth, TestPki, TlsVersion,
    };
    use crate::transport::{Acceptor, Transport};

    /// The message `load_server_config` refuses `files` with (empty when it accepts them).
    fn refusal(files: &TlsFiles) -> String {
        load_server_config(files)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_mismatched_key_is_refused_naming_the_key_file() {
        let pki = TestPki::new();
        let files = TlsFiles {
            keyfile: pki.client_key.clone(),
            ..pki.server_files(None, false)
        };
        let expected = format!(
            "{}: the private key does not match the certificate in {}",
            pki.client_key.display(),
            pki.server_cert.display()
        );
        assert_eq!(refusal(&files), expected);
    }

    #[test]
    fn unreadable_empty_and_keyless_files_are_named() {
        let pki = TestPki::new();
        let missing = pki.dir.path().join("missing.pem");
        let empty = pki.dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write empty file");

        let cases = [
            (
                TlsFiles {
                    certfile: missing.clone(),
                    ..pki.server_files(None, false)
                },
                format!("cannot read {}: ", missing.display()),
            ),
            (
                TlsFiles {
                    certfile: empty.clone(),
                    ..pki.server_files(None, false)
                },
                format!("{}: no certificate found", empty.display()),
            ),
            // A certificate where the key should be.
            (
                TlsFiles {
                    keyfile: pki.server_cert.clone(),
                    ..pki.server_files(None, false)
                },
                format!("{}: no private key found", pki.server_cert.display()),
            ),
            (
                pki.server_files(Some(empty.clone()), false),
                format!("{}: no certificate found", empty.display()),
            ),
        ];
        for (files, expected_start) in cases {
            let error = refusal(&files);
            assert!(error.starts_with(&expected_start), "{error}");
        }
    }

    #[test]
    fn require_certificate_needs_a_cafile() {
        let pki = TestPki::new();
        let error = load_server_config(&pki.server_files(None, true)).err();
        assert!(matches!(error, Some(TlsError::RequireCertificateWithoutCa)));
    }

    #[test]
    fn bytes_pass_both_ways_over_tls_1_2_and_1_3() {
        let pki = TestPki::new();
        let config = load_server_config(&pki.server_files(None, false)).expect("config");
        let ca = pki.ca_der.clone();
        run(move || async move {
            for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
                let acceptor = Rc::new(Acceptor::tls(config.clone()));
                let (addr, server) = accept_one(acceptor).await;
                let mut client = tls_connect(addr, &ca, ClientAuth::None, version)
                    .await
                    .expect("client handshake");
                let accepted = within(server).await.expect("server handshake");
                assert_eq!(accepted.client_certificate_cn, None);
                let mut transport = accepted.transport;
                assert!(matches!(transport, Transport::Tls(_)));
                assert!(transport.tcp_socket().is_none());
                assert_eq!(
                    transport.peer_addr().ok(),
                    client.get_ref().0.local_addr().ok()
                );

                pass_bytes(&mut client, &mut transport, b"\x10\x0cup").await;
                pass_bytes(&mut transport, &mut client, b"\x20\x02down").await;

                transport.close().await.expect("close");
                let mut rest = Vec::new();
                let read = within(client.read_to_end(&mut rest)).await;
                assert_eq!(read.ok(), Some(0), "close_notify ends the client's stream");
            }
        });
    }

    #[test]
    fn a_required_client_certificate_is_verified_and_its_cn_extracted() {
        let pki = TestPki::new();
        let config =
            load_server_config(&pki.server_files(Some(pki.ca_cert.clone()), true)).expect("config");
        let ca = pki.ca_der.clone();
        let client_identity = pki.client_identity();
        run(move || async move {
            let acceptor = Rc::new(Acceptor::tls(config));

            let (addr, server) = accept_one(acceptor.clone()).await;
            let client = tls_connect(addr, &ca, client_identity, TlsVersion::Tls13).await;
            let accepted = within(server).await.expect("server handshake");
            assert_eq!(accepted.client_certificate_cn.as_deref(), Some("sensor-17"));
            drop(client);

            // Without a certificate the handshake fails on the server (a TLS 1.3 client
            // learns it from the alert on its next read).
            let (addr, server) = accept_one(acceptor).await;
            let client = tls_connect(addr, &ca, ClientAuth::None, TlsVersion::Tls13).await;
            let refused = within(server).await.err().map(|e| e.to_string());
            assert!(
                refused
                    .as_deref()
                    .is_some_and(|e| e.starts_with("TLS handshake failed")),
                "{refused:?}"
            );
            if let Ok(mut client) = client {
                let mut byte = [0u8; 1];
                assert!(within(client.read(&mut byte)).await.is_err());
            }
        });
    }

    #[test]
    fn an_optional_client_certificate_may_be_left_out() {
        let pki = TestPki::new();
        let config = load_server_config(&pki.server_files(Some(pki.ca_cert.clone()), false))
            .expect("config");
        let ca = pki.ca_der.clone();
        let client_identity = pki.client_identity();
        let stranger = TestPki::new().client_identity();
        run(move || async move {
            let acceptor = Rc::new(Acceptor::tls(config));

            let (addr, server) = accept_one(acceptor.clone()).await;
            let _client = tls_connect(addr, &ca, ClientAuth::None, TlsVersion::Tls12).await;
            let accepted = within(server).await.expect("no certificate is fine");
            assert_eq!(accepted.client_certificate_cn, None);

            let (addr, server) = accept_one(acceptor.clone()).await;
            let _client = tls_connect(addr, &ca, client_identity, TlsVersion::Tls12).await;
            let accepted = within(server).await.expect("a valid certificate is fine");
            assert_eq!(accepted.client_certificate_cn.as_deref(), Some("sensor-17"));

            // A certificate from another CA is verified, and refused.
            let (addr, server) = accept_one(acceptor).await;
            let _client = tls_connect(addr, &ca, stranger, TlsVersion::Tls12).await;
            assert!(within(server).await.is_err());
        });
    }

    #[test]
    fn a_replaced_configuration_serves_new_connections() {
        let old = TestPki::new();
        let new = TestPki::new();
        let old_config = load_server_config(&old.server_files(None, false)).expect("old");
        let new_config = load_server_config(&new.server_files(None, false)).expect("new");
        let (old_ca, new_ca) = (old.ca_der.clone(), new.ca_der.clone());
        run(move || async move {
            let acceptor = Rc::new(Acceptor::tls(old_config));
            let (addr, server) = accept_one(acceptor.clone()).await;
            let mut before = tls_connect(addr, &old_ca, ClientAuth::None, TlsVersion::Tls13)
                .await
                .expect("old certificate");
            let mut established = within(server).await.expect("accepted").transport;

            acceptor.replace_tls_config(new_config);
            let (addr, server) = accept_one(acceptor.clone()).await;
            let _after = tls_connect(addr, &new_ca, ClientAuth::None, TlsVersion::Tls13)
                .await
                .expect("new certificate");
            within(server)
                .await
                .expect("accepted with the new certificate");

            // The connection made before the reload goes on.
            pass_bytes(&mut established, &mut before, b"still").await;
        });
    }
}
