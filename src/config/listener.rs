//! `[[listener]]`: an address clients connect to and the transport spoken there.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

/// Default `bind`: every IPv4 address, the IANA port for MQTT.
pub const DEFAULT_BIND: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1883));
/// Default `protocol`: MQTT over plain TCP.
pub const DEFAULT_PROTOCOL: ListenerProtocol = ListenerProtocol::Mqtt;
/// Default `max_connections` (connections on one listener, all shards together).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default `websocket_path`: where MQTT.js and paho-mqtt look by default.
pub const DEFAULT_WEBSOCKET_PATH: &str = "/mqtt";
/// Default `allow_anonymous`: clients without a username may connect (see README: hydrant's
/// default listener is an open broker, as Mosquitto 1.x was; a firehose sets it per listener).
pub const DEFAULT_ALLOW_ANONYMOUS: bool = true;

/// One network endpoint: where to accept connections, in which transport, how many, and who
/// may connect there and do what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address and port every shard binds (SO_REUSEPORT), so the kernel spreads accepts.
    pub bind: SocketAddr,
    /// The transport clients speak on this address.
    pub protocol: ListenerProtocol,
    /// Most simultaneous connections on this listener, all shards together; 0 = unlimited.
    pub max_connections: usize,
    /// PEM certificate chain (leaf first) presented by `mqtt+tls` and `wss` listeners.
    pub certfile: Option<PathBuf>,
    /// PEM private key of `certfile`.
    pub keyfile: Option<PathBuf>,
    /// PEM CA certificates that client certificates are verified against.
    pub cafile: Option<PathBuf>,
    /// Whether a client must present a certificate signed by `cafile`.
    pub require_certificate: bool,
    /// Whether the client certificate's Common Name is the client's username (its password is
    /// then not checked).
    pub use_identity_as_username: bool,
    /// The HTTP path a `ws`/`wss` listener upgrades to WebSocket.
    pub websocket_path: String,
    /// `Origin` headers a `ws`/`wss` listener accepts; empty = any.
    pub websocket_origins: Vec<String>,
    /// Whether a client without a username may connect.
    pub allow_anonymous: bool,
    /// A `mosquitto_passwd`-format file of users and password hashes.
    pub password_file: Option<PathBuf>,
    /// A Mosquitto-format ACL file; without one every client may read and write everything.
    pub acl_file: Option<PathBuf>,
    /// Most simultaneous connections from one IP address on this listener; 0 = no cap.
    pub max_connections_per_ip: usize,
    /// Most new connections per second from one IP address on this listener; 0 = no limit.
    pub max_connect_rate_per_ip: usize,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            bind: DEFAULT_BIND,
            protocol: DEFAULT_PROTOCOL,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            certfile: None,
            keyfile: None,
            cafile: None,
            require_certificate: false,
            use_identity_as_username: false,
            websocket_path: DEFAULT_WEBSOCKET_PATH.to_owned(),
            websocket_origins: Vec::new(),
            allow_anonymous: DEFAULT_ALLOW_ANONYMOUS,
            password_file: None,
            acl_file: None,
            max_connections_per_ip: 0,
            max_connect_rate_per_ip: 0,
        }
    }
}

/// The transport of a listener, as named in the file's `protocol` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
pub enum ListenerProtocol {
    /// MQTT over plain TCP.
    #[serde(rename = "mqtt")]
    Mqtt,
    /// MQTT over TLS.
    #[serde(rename = "mqtt+tls")]
    MqttTls,
    /// MQTT over WebSocket (RFC 6455, subprotocol `mqtt`).
    #[serde(rename = "ws")]
    WebSocket,
    /// MQTT over WebSocket over TLS.
    #[serde(rename = "wss")]
    SecureWebSocket,
}

impl ListenerProtocol {
    /// Every protocol, for messages that list the valid names.
    pub const ALL: &'static [ListenerProtocol] = &[
        ListenerProtocol::Mqtt,
        ListenerProtocol::MqttTls,
        ListenerProtocol::WebSocket,
        ListenerProtocol::SecureWebSocket,
    ];

    /// The name the configuration file uses.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            ListenerProtocol::Mqtt => "mqtt",
            ListenerProtocol::MqttTls => "mqtt+tls",
            ListenerProtocol::WebSocket => "ws",
            ListenerProtocol::SecureWebSocket => "wss",
        }
    }

    /// Whether the transport runs over TLS (and needs `certfile` and `keyfile`).
    #[must_use]
    pub const fn uses_tls(self) -> bool {
        matches!(
            self,
            ListenerProtocol::MqttTls | ListenerProtocol::SecureWebSocket
        )
    }

    /// Whether the transport is WebSocket.
    #[must_use]
    pub const fn uses_websocket(self) -> bool {
        matches!(
            self,
            ListenerProtocol::WebSocket | ListenerProtocol::SecureWebSocket
        )
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
