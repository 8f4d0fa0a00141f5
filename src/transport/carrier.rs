//! The byte stream a WebSocket runs over: plain TCP (`ws`) or TLS (`wss`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;

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

impl AsyncRead for Carrier {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Carrier::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Carrier::Tls(stream) => Pin::new(&mut **stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Carrier {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Carrier::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Carrier::Tls(stream) => Pin::new(&mut **stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Carrier::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Carrier::Tls(stream) => Pin::new(&mut **stream).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Carrier::Tcp(stream) => Pin::new(stream).poll_close(cx),
            Carrier::Tls(stream) => Pin::new(&mut **stream).poll_close(cx),
        }
    }
}
