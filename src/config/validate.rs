//! Rules between values that a value's type alone cannot express: sizes within what MQTT can
//! encode, bounds that must be ordered, listeners that must not collide.

use std::fmt;
use std::net::SocketAddr;

use super::limits::{
    MAX_INFLIGHT_MESSAGES, MAX_MQTT_PACKET_SIZE, MAX_TOPIC_ALIAS, MAX_TOPIC_ALIAS_OUT,
    MIN_PACKET_SIZE,
};
use super::schema::{
    LIMITS_SECTION, LISTENER_SECTION, METRICS_SECTION, PERSISTENCE_SECTION, SESSION_SECTION,
};
use super::session::MAX_PERSISTENT_CLIENT_EXPIRATION;
use super::{Config, ListenerConfig};
use crate::persist::{
    PersistenceConfigError, MAX_SYNC_INTERVAL_MS, MIN_MAX_DISK_BYTES, MIN_WRITE_BUFFER_BYTES,
};

/// Smallest allowed `io_memory`: 64 KiB per shard.
pub const MIN_IO_MEMORY: usize = 64 * 1024;

/// Characters an `auto_id_prefix` may not contain: the topic level separator and wildcards,
/// since client ids end up in topic names and access-control patterns.
pub const FORBIDDEN_CLIENT_ID_CHARS: &[char] = &['/', '+', '#'];

/// Where a value lives: `key` at the top level, in a section, or in the n-th `[[listener]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyPath {
    /// The section, or `None` at the top level.
    pub section: Option<&'static str>,
    /// Which `[[listener]]` (0-based), for listener keys.
    pub index: Option<usize>,
    /// The key itself.
    pub key: &'static str,
}

impl KeyPath {
    const fn top(key: &'static str) -> Self {
        KeyPath {
            section: None,
            index: None,
            key,
        }
    }

    const fn in_section(section: &'static str, key: &'static str) -> Self {
        KeyPath {
            section: Some(section),
            index: None,
            key,
        }
    }

    const fn in_listener(index: usize, key: &'static str) -> Self {
        KeyPath {
            section: Some(LISTENER_SECTION),
            index: Some(index),
            key,
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.section {
            Some(section) => write!(formatter, "{section}.{}", self.key),
            None => formatter.write_str(self.key),
        }
    }
}

/// A broken rule: which key, and why, phrased to follow the key's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub path: KeyPath,
    pub reason: String,
}

/// The first rule `config` breaks, checked in the order the default file lists the keys.
pub(crate) fn first_violation(config: &Config) -> Option<Violation> {
    let limits = &config.limits;
    let session = &config.session;
    let broken = |path: KeyPath, reason: String| Some(Violation { path, reason });

    if config.io_memory < MIN_IO_MEMORY {
        return broken(
            KeyPath::top("io_memory"),
            format!(
                "must be at least {MIN_IO_MEMORY} bytes (64 KiB), found {}",
                config.io_memory
            ),
        );
    }
    if config.listener.is_empty() {
        return broken(
            KeyPath::top(LISTENER_SECTION),
            format!("must list at least one listener, written [[{LISTENER_SECTION}]]"),
        );
    }
    if let Some(violation) = colliding_listeners(config) {
        return Some(violation);
    }
    if let Some(violation) = config
        .listener
        .iter()
        .enumerate()
        .find_map(|(index, listener)| listener_violation(index, listener))
    {
        return Some(violation);
    }
    if !(MIN_PACKET_SIZE..=MAX_MQTT_PACKET_SIZE).contains(&limits.max_packet_size) {
        return broken(
            KeyPath::in_section(LIMITS_SECTION, "max_packet_size"),
            format!(
                "must be from {MIN_PACKET_SIZE} to {MAX_MQTT_PACKET_SIZE} bytes (the largest \
                 packet MQTT can encode), found {}",
                limits.max_packet_size
            ),
        );
    }
    if !(1..=MAX_INFLIGHT_MESSAGES).contains(&limits.max_inflight_messages) {
        return broken(
            KeyPath::in_section(LIMITS_SECTION, "max_inflight_messages"),
            format!(
                "must be from 1 to {MAX_INFLIGHT_MESSAGES} (one per packet identifier), found {}",
                limits.max_inflight_messages
            ),
        );
    }
    if limits.max_queued_messages < 1 {
        return broken(
            KeyPath::in_section(LIMITS_SECTION, "max_queued_messages"),
            format!("must be at least 1, found {}", limits.max_queued_messages),
        );
    }
    if limits.max_subscriptions < 1 {
        return broken(
            KeyPath::in_section(LIMITS_SECTION, "max_subscriptions"),
            format!("must be at least 1, found {}", limits.max_subscriptions),
        );
    }
    if limits.max_topic_alias > MAX_TOPIC_ALIAS {
        return broken(
            KeyPath::in_section(LIMITS_SECTION, "max_topic_alias"),
            format!(
                "must be from 0 to {MAX_TOPIC_ALIAS} (the largest MQTT 5 topic alias), found {}",
                limits.max_topic_alias
            ),
        );
    }
    if limits.max_topic_alias_out > MAX_TOPIC_ALIAS_OUT {
        return broken(
            KeyPath::in_section(LIMITS_SECTION, "max_topic_alias_out"),
            format!(
                "must be from 0 to {MAX_TOPIC_ALIAS_OUT}, found {}",
                limits.max_topic_alias_out
            ),
        );
    }
    if limits.min_keepalive > limits.max_keepalive {
        return broken(
            KeyPath::in_section(LIMITS_SECTION, "min_keepalive"),
            format!(
                "must not be greater than `{LIMITS_SECTION}.max_keepalive` ({} seconds), found {}",
                limits.max_keepalive, limits.min_keepalive
            ),
        );
    }
    if let Some(bad) = session
        .auto_id_prefix
        .chars()
        .find(|c| FORBIDDEN_CLIENT_ID_CHARS.contains(c) || c.is_control())
    {
        return broken(
            KeyPath::in_section(SESSION_SECTION, "auto_id_prefix"),
            format!(
                "must not contain {bad:?} (no '/', '+', '#' or control characters), found {:?}",
                session.auto_id_prefix
            ),
        );
    }
    if session.persistent_client_expiration > MAX_PERSISTENT_CLIENT_EXPIRATION {
        return broken(
            KeyPath::in_section(SESSION_SECTION, "persistent_client_expiration"),
            format!(
                "must be at most {MAX_PERSISTENT_CLIENT_EXPIRATION} seconds (100 years; 0 means \
                 forever), found {}",
                session.persistent_client_expiration
            ),
        );
    }
    if let Err(error) = config.metrics.validate() {
        return broken(
            KeyPath::in_section(METRICS_SECTION, error.key),
            error.reason,
        );
    }
    if let Some(violation) = metrics_listener_collision(config) {
        return Some(violation);
    }
    if let Some(violation) = persistence_violation(config) {
        return Some(violation);
    }
    None
}

/// The first `[persistence]` value out of its range
/// ([`crate::persist::PersistenceConfig::validate`]).
fn persistence_violation(config: &Config) -> Option<Violation> {
    let (key, reason) = match config.persistence.validate().err()? {
        PersistenceConfigError::EmptyLocation => (
            "persistence_location",
            "must name a directory when persistence is true, found an empty string".to_owned(),
        ),
        PersistenceConfigError::SyncInterval(found) => (
            "sync_interval_ms",
            format!("must be from 1 to {MAX_SYNC_INTERVAL_MS} milliseconds, found {found}"),
        ),
        PersistenceConfigError::MaxDiskBytes(found) => (
            "max_disk_bytes",
            format!(
                "must be 0 (no bound) or at least {MIN_MAX_DISK_BYTES} bytes (1 MiB), found \
                 {found}"
            ),
        ),
        PersistenceConfigError::AutosaveLogRatio => (
            "autosave_log_ratio",
            format!(
                "must be at least 1, found {}",
                config.persistence.autosave_log_ratio
            ),
        ),
        PersistenceConfigError::WriteBufferBytes(found) => (
            "write_buffer_bytes",
            format!("must be at least {MIN_WRITE_BUFFER_BYTES} bytes (64 KiB), found {found}"),
        ),
    };
    Some(Violation {
        path: KeyPath::in_section(PERSISTENCE_SECTION, key),
        reason,
    })
}

/// A metrics `http_listener` on the address and port of an MQTT listener: both would be bound
/// with SO_REUSEPORT, and the kernel would split connections between MQTT and HTTP.
fn metrics_listener_collision(config: &Config) -> Option<Violation> {
    let http = config.metrics.http_listener?;
    if http.port() == 0 {
        return None;
    }
    let (number, listener) = config.listener.iter().enumerate().find(|(_, listener)| {
        let bind = listener.bind;
        bind.port() == http.port() && (bind == http || covers(bind, http) || covers(http, bind))
    })?;
    Some(Violation {
        path: KeyPath::in_section(METRICS_SECTION, "http_listener"),
        reason: format!(
            "must not share its port with an MQTT listener: listener #{} binds {}, found {http}",
            number + 1,
            listener.bind
        ),
    })
}

/// Two listeners that would share connections on one port: the same address, or a wildcard
/// address and another of its family. Every shard binds with SO_REUSEPORT, so the kernel
/// would accept both and silently split clients between them. Port 0 asks the kernel for a
/// fresh port each time, so it never collides.
fn colliding_listeners(config: &Config) -> Option<Violation> {
    for (later, listener) in config.listener.iter().enumerate() {
        for (earlier, previous) in config.listener[..later].iter().enumerate() {
            let (a, b) = (previous.bind, listener.bind);
            if a.port() == 0 || a.port() != b.port() {
                continue;
            }
            let reason = if a == b {
                format!(
                    "must differ between listeners: listeners #{} and #{} both bind {b}",
                    earlier + 1,
                    later + 1
                )
            } else if covers(a, b) || covers(b, a) {
                format!(
                    "must not overlap between listeners: listener #{} binds {a} and listener #{} \
                     binds {b}, and a wildcard address includes every address of its family",
                    earlier + 1,
                    later + 1
                )
            } else {
                continue;
            };
            return Some(Violation {
                path: KeyPath::in_listener(later, "bind"),
                reason,
            });
        }
    }
    None
}

/// The first rule between one listener's keys that `listener` (the `index`-th) breaks: TLS
/// files where TLS is spoken and only there, client-certificate options that build on each
/// other, WebSocket options only on WebSocket listeners.
fn listener_violation(index: usize, listener: &ListenerConfig) -> Option<Violation> {
    let protocol = listener.protocol;
    let broken = |key: &'static str, reason: String| {
        Some(Violation {
            path: KeyPath::in_listener(index, key),
            reason,
        })
    };
    let number = index + 1;
    if protocol.uses_tls() {
        if listener.certfile.is_none() {
            return broken(
                "certfile",
                format!("must be set on listener #{number}: protocol \"{protocol}\" uses TLS"),
            );
        }
        if listener.keyfile.is_none() {
            return broken(
                "keyfile",
                format!("must be set on listener #{number}: protocol \"{protocol}\" uses TLS"),
            );
        }
    } else {
        let tls_only = [
            ("certfile", listener.certfile.is_some()),
            ("keyfile", listener.keyfile.is_some()),
            ("cafile", listener.cafile.is_some()),
            ("require_certificate", listener.require_certificate),
            (
                "use_identity_as_username",
                listener.use_identity_as_username,
            ),
        ];
        if let Some((key, _)) = tls_only.into_iter().find(|(_, set)| *set) {
            return broken(
                key,
                format!(
                    "is only for \"mqtt+tls\" and \"wss\" listeners; listener #{number} speaks \"{protocol}\""
                ),
            );
        }
    }
    if listener.require_certificate && listener.cafile.is_none() {
        return broken(
            "require_certificate",
            format!("needs `cafile` on listener #{number} to verify client certificates"),
        );
    }
    if listener.use_identity_as_username && !listener.require_certificate {
        return broken(
            "use_identity_as_username",
            format!("needs `require_certificate = true` on listener #{number}"),
        );
    }
    if !listener.websocket_path.starts_with('/') {
        return broken(
            "websocket_path",
            format!("must start with '/', found {:?}", listener.websocket_path),
        );
    }
    if !protocol.uses_websocket() && !listener.websocket_origins.is_empty() {
        return broken(
            "websocket_origins",
            format!("is only for \"ws\" and \"wss\" listeners; listener #{number} speaks \"{protocol}\""),
        );
    }
    None
}

/// Whether `wildcard` is an unspecified address whose binding includes `other` (same port).
fn covers(wildcard: SocketAddr, other: SocketAddr) -> bool {
    wildcard.ip().is_unspecified() && wildcard.is_ipv4() == other.is_ipv4()
}
