//! `[[listener]]`: an address clients connect to and the transport spoken there.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Default `bind`: every IPv4 address, the IANA port for MQTT.
pub const DEFAULT_BIND: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1883));
/// Default `protocol`: MQTT over plain TCP.
pub const DEFAULT_PROTOCOL: ListenerProtocol = ListenerProtocol::Mqtt;
/// Default `max_connections` (connections on one listener, all shards together).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// One network endpoint: where to accept connections, in which transport, and how many.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address and port every shard binds (SO_REUSEPORT), so the kernel spreads accepts.
    pub bind: SocketAddr,
    /// The transport clients speak on this address.
    pub protocol: ListenerProtocol,
    /// Most simultaneous connections on this listener, all shards together; 0 = unlimited.
    pub max_connections: usize,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            bind: DEFAULT_BIND,
            protocol: DEFAULT_PROTOCOL,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// The transport of a listener, as named in the file's `protocol` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
pub enum ListenerProtocol {
    /// MQTT over plain TCP.
    #[serde(rename = "mqtt")]
    Mqtt,
}

impl ListenerProtocol {
    /// Every protocol, for messages that list the valid names.
    pub const ALL: &'static [ListenerProtocol] = &[ListenerProtocol::Mqtt];

    /// The name the configuration file uses.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            ListenerProtocol::Mqtt => "mqtt",
        }
    }

    /// The protocol a configuration file names `name`, if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<ListenerProtocol> {
        Self::ALL
            .iter()
            .copied()
            .find(|protocol| protocol.name() == name)
    }
}

impl fmt::Display for ListenerProtocol {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}
