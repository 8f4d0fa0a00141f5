//! What a listener does with an accepted TCP socket before MQTT starts: the TLS handshake
//! and/or the WebSocket upgrade its protocol calls for.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;

use futures_rustls::TlsAcceptor;
use glommio::net::TcpStream;
use rustls::ServerConfig;

use super::tls::client_certificate_cn;
use super::websocket::{self, UpgradeError, WebSocketSettings, DEFAULT_MAX_MESSAGE_SIZE};
use super::{Carrier, Transport, TransportKind};

/// Turns a listener's accepted sockets into [`Transport`]s: one per listener per core.
pub struct Acceptor {
    /// The TLS configuration for new connections (`None`: no TLS); replaced on reload, while
    /// established connections keep the one they were accepted with.
    tls: RefCell<Option<TlsAcceptor>>,
    /// The upgrade rules, for a WebSocket listener.
    websocket: Option<WebSocketSettings>,
    /// The largest WebSocket message a client may send.
    max_websocket_message: usize,
}

/// An accepted connection, ready for MQTT.
pub struct Accepted {
    /// Its byte stream.
    pub transport: Transport,
    /// The subject Common Name of the client certificate verified during the TLS handshake
    /// (for `use_identity_as_username`).
    pub client_certificate_cn: Option<String>,
}

/// Why an accepted socket did not become a connection (one log line).
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The TLS handshake failed (a client certificate was missing or refused, the client does
    /// not trust ours, no common protocol version or cipher, the client went away...).
    #[error("TLS handshake failed: {0}")]
    TlsHandshake(#[source] io::Error),
    /// The WebSocket upgrade was refused or failed.
    #[error(transparent)]
    WebSocket(#[from] UpgradeError),
}

impl Acceptor {
    /// For an `mqtt` listener: the socket is used as it is.
    pub fn plain() -> Acceptor {
        Acceptor {
            tls: RefCell::new(None),
            websocket: None,
            max_websocket_message: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }

    /// For an `mqtt+tls` listener.
    pub fn tls(config: Arc<ServerConfig>) -> Acceptor {
        Acceptor {
            tls: RefCell::new(Some(TlsAcceptor::from(config))),
            websocket: None,
            max_websocket_message: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }

    /// For a `ws` listener.
    pub fn websocket(settings: WebSocketSettings) -> Acceptor {
        Acceptor {
            tls: RefCell::new(None),
            websocket: Some(settings),
            max_websocket_message: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }

    /// For a `wss` listener.
    pub fn secure_websocket(config: Arc<ServerConfig>, settings: WebSocketSettings) -> Acceptor {
        Acceptor {
            tls: RefCell::new(Some(TlsAcceptor::from(config))),
            websocket: Some(settings),
            max_websocket_message: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }

    /// Sets the largest WebSocket message (and frame) a client may send, in bytes (default
    /// [`DEFAULT_MAX_MESSAGE_SIZE`]). A message is held whole before MQTT reads it, so this
    /// bounds a connection's memory; it should be at least the broker's largest packet.
    #[must_use]
    pub fn with_max_websocket_message(mut self, bytes: usize) -> Acceptor {
        self.max_websocket_message = bytes;
        self
    }

    /// The kind of transport this acceptor makes.
    pub fn kind(&self) -> TransportKind {
        match (self.is_tls(), self.websocket.is_some()) {
            (false, false) => TransportKind::Tcp,
            (true, false) => TransportKind::Tls,
            (false, true) => TransportKind::WebSocket,
            (true, true) => TransportKind::SecureWebSocket,
        }
    }

    /// Whether this acceptor runs a TLS handshake (and so takes a new configuration on
    /// reload).
    pub fn is_tls(&self) -> bool {
        self.tls.borrow().is_some()
    }

    /// Makes new connections use `config` (new certificates after a reload); connections
    /// already accepted, or being accepted, keep theirs. An acceptor without TLS ignores it:
    /// TLS is decided by the listener's protocol, not by a reload.
    pub fn replace_tls_config(&self, config: Arc<ServerConfig>) {
        let mut tls = self.tls.borrow_mut();
        if tls.is_some() {
            *tls = Some(TlsAcceptor::from(config));
        }
    }

    /// Runs the TLS handshake and/or the WebSocket upgrade on `stream`.
    ///
    /// Not bounded in time: the caller bounds it, since a client may stall in the middle.
    pub async fn accept(&self, stream: TcpStream) -> Result<Accepted, AcceptError> {
        // Cloned (an `Arc`) so that no borrow is held across the handshake.
        let tls = self.tls.borrow().clone();
        let (carrier, client_certificate_cn) = match tls {
            None => (Carrier::Tcp(stream), None),
            Some(tls) => {
                let stream = tls
                    .accept(stream)
                    .await
                    .map_err(AcceptError::TlsHandshake)?;
                let common_name = client_certificate_cn(stream.get_ref().1);
                (Carrier::Tls(Box::new(stream)), common_name)
            }
        };
        let transport = match &self.websocket {
            None => Transport::from(carrier),
            Some(settings) => {
                let upgraded =
                    websocket::upgrade(carrier, settings, self.max_websocket_message).await?;
                Transport::WebSocket(Box::new(upgraded))
            }
        };
        Ok(Accepted {
            transport,
            client_certificate_cn,
        })
    }
}
