//! A client's address as a connection keeps it for its log lines, in half the room of a
//! `SocketAddr`.

use std::fmt;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

/// A client's address: an IPv4 one inline, an IPv6 one (28 bytes, with its flow label and
/// scope) boxed. Every connection's task holds one, where a `SocketAddr` would take 32 bytes
/// of every idle connection (issue 3's idle memory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAddr {
    /// An IPv4 client.
    V4(SocketAddrV4),
    /// An IPv6 client.
    V6(Box<SocketAddrV6>),
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(v4) => Self::V4(v4),
            SocketAddr::V6(v6) => Self::V6(Box::new(v6)),
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(v4) => v4.fmt(f),
            Self::V6(v6) => v6.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_written_as_the_address_it_was_made_from() {
        for text in ["127.0.0.1:1883", "[::1]:8883", "[fe80::1%2]:1883"] {
            let addr: SocketAddr = text.parse().expect("a socket address");
            assert_eq!(PeerAddr::from(addr).to_string(), addr.to_string());
        }
    }

    #[test]
    fn takes_half_a_socket_address() {
        assert_eq!(std::mem::size_of::<PeerAddr>(), 16);
    }
}
