//! The byte stream a WebSocket runs over: plain TCP (`ws`) or TLS (`wss`).

use std::io;
use std::net::SocketAddr;

use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;

use super::forward::forward_async_io;

/// An accepted connection after its TLS handshake, if any: what a WebSocket upgrade reads
/// from and writes to.
pub enum Carrier {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP (boxed: a TLS session is large).
    Tls(Box<TlsStream<TcpStream>>),
}

impl Carrier {
    /// The client's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Carrier::Tcp(stream) => Ok(stream.peer_addr()?),
            Carrier::Tls(stream) => Ok(stream.get_ref().0.peer_addr()?),
        }
    }
}

forward_async_io!(Carrier { Tcp, Tls });
