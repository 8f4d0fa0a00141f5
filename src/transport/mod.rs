//! Transports a listener speaks: plain TCP, TLS, WebSocket and secure WebSocket.
//!
//! Whatever the listener, a connection ends up as one [`Transport`]: a byte stream that the
//! connection's reader and writer use through `AsyncRead` and `AsyncWrite`, blind to how the
//! bytes travel. An [`Acceptor`] (one per listener per core) turns an accepted TCP socket into
//! a `Transport`: it runs the TLS handshake ([`tls`]) and/or the WebSocket upgrade
//! ([`websocket`]) first.
//!
//! Writes to a TLS or WebSocket transport may stay in that layer's buffer when the socket is
//! full, so a writer must `flush` after each batch (a no-op for plain TCP) and `close` at the
//! end (which sends TLS close_notify and the WebSocket Close frame).

mod acceptor;
mod carrier;
mod forward;
pub mod parked;
mod sync_io;
#[cfg(test)]
pub(crate) mod testing;
pub mod tls;
pub mod websocket;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;

use crate::connection::RelayStream;
use forward::forward_async_io;
use parked::{ParkedTcp, ParkingLot};

pub use acceptor::{AcceptError, Accepted, Acceptor};
pub use carrier::Carrier;
pub use tls::{load_server_config, TlsError, TlsFiles};
pub use websocket::{UpgradeError, UpgradeRefusal, WebSocketSettings, WebSocketStream};

/// One client connection's byte stream, whatever carries it.
///
/// Only plain TCP ([`Transport::Tcp`] or [`Transport::Parked`]) is a bare kernel socket that
/// can be handed to another core; the others keep protocol state (TLS session, WebSocket
/// framing) in this core's memory.
pub enum Transport {
    /// MQTT straight over TCP (boxed: glommio's stream is 120 bytes, which a parked
    /// connection's task would otherwise keep too).
    Tcp(Box<TcpStream>),
    /// MQTT straight over TCP, the client quiet: the socket waits in its core's parking lot
    /// rather than in glommio (see [`parked`]).
    Parked(ParkedTcp),
    /// MQTT over TLS over TCP (boxed: a TLS session is large).
    Tls(Box<TlsStream<TcpStream>>),
    /// MQTT in WebSocket binary frames, over TCP or TLS.
    WebSocket(Box<WebSocketStream>),
    /// The bytes of a TLS or WebSocket connection accepted by another core, relayed to this
    /// one, which holds the client's session (see `connection::relay`).
    Relay(Box<RelayStream>),
}

/// Which kind of [`Transport`] a connection uses, named as in a listener's `protocol` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// `mqtt`: plain TCP.
    Tcp,
    /// `mqtt+tls`: TLS.
    Tls,
    /// `ws`: WebSocket over TCP.
    WebSocket,
    /// `wss`: WebSocket over TLS.
    SecureWebSocket,
    /// A TLS or WebSocket connection relayed from the core that accepted it.
    Relay,
}

impl TransportKind {
    /// The listener `protocol` value for this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Tcp => "mqtt",
            TransportKind::Tls => "mqtt+tls",
            TransportKind::WebSocket => "ws",
            TransportKind::SecureWebSocket => "wss",
            TransportKind::Relay => "relay",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Transport {
    /// The client's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Tcp(stream) => Ok(stream.peer_addr()?),
            Transport::Parked(stream) => stream.peer_addr(),
            Transport::Tls(stream) => Ok(stream.get_ref().0.peer_addr()?),
            Transport::WebSocket(stream) => stream.get_ref().peer_addr(),
            Transport::Relay(stream) => Ok(stream.peer_addr()),
        }
    }

    /// Which kind of transport this is (for logs and counters).
    pub fn kind(&self) -> TransportKind {
        match self {
            Transport::Tcp(_) | Transport::Parked(_) => TransportKind::Tcp,
            Transport::Tls(_) => TransportKind::Tls,
            Transport::WebSocket(stream) => match stream.get_ref() {
                Carrier::Tcp(_) => TransportKind::WebSocket,
                Carrier::Tls(_) => TransportKind::SecureWebSocket,
            },
            Transport::Relay(_) => TransportKind::Relay,
        }
    }

    /// The socket of a plain TCP transport, parked or not: the only kind whose connection can
    /// be handed to another core (as a duplicated descriptor).
    pub fn tcp_socket(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
        match self {
            // SAFETY: the descriptor belongs to `stream`, which the borrow keeps alive.
            Transport::Tcp(stream) => Some(unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }),
            Transport::Parked(parked) => Some(parked.as_fd()),
            Transport::Tls(_) | Transport::WebSocket(_) | Transport::Relay(_) => None,
        }
    }

    /// Parks a plain TCP transport in `lot` (see [`parked`]); returns whether it is parked
    /// now. Other transports keep their protocol state in this core's memory around the
    /// socket, and stay as they are.
    pub fn park(&mut self, lot: &Rc<ParkingLot>) -> io::Result<bool> {
        match self {
            Transport::Tcp(stream) => {
                let parked = ParkedTcp::park(stream, lot)?;
                // The glommio stream dropped here closes its descriptor and cancels its poll.
                drop(std::mem::replace(self, Transport::Parked(parked)));
                Ok(true)
            }
            Transport::Parked(_) => Ok(true),
            Transport::Tls(_) | Transport::WebSocket(_) | Transport::Relay(_) => Ok(false),
        }
    }

    /// Gives a parked transport back to glommio. On failure it stays parked, which works the
    /// same, only with its waits in the lot.
    pub fn unpark(&mut self) -> io::Result<()> {
        if let Transport::Parked(parked) = self {
            let stream = parked.unpark()?;
            // The parked stream dropped here leaves the lot and closes its descriptor.
            drop(std::mem::replace(self, Transport::Tcp(Box::new(stream))));
        }
        Ok(())
    }

    /// Whether the transport is parked.
    pub fn is_parked(&self) -> bool {
        matches!(self, Transport::Parked(_))
    }
}

impl From<Carrier> for Transport {
    fn from(carrier: Carrier) -> Transport {
        match carrier {
            Carrier::Tcp(stream) => Transport::Tcp(Box::new(stream)),
            Carrier::Tls(stream) => Transport::Tls(stream),
        }
    }
}

forward_async_io!(Transport {
    Tcp,
    Parked,
    Tls,
    WebSocket,
    Relay
});

#[cfg(test)]
mod tests {
    #[test]
    fn a_transport_keeps_its_stream_out_of_the_task() {
        // Every connection's task holds its transport (issue 3's idle memory): a parked one
        // is a descriptor, a slot number and its lot, and every other kind is boxed.
        let size = std::mem::size_of::<super::Transport>();
        assert!(size <= 24, "{size} bytes");
    }
}
