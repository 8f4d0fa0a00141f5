//! The broker's configuration: a TOML file whose every key is optional.
//!
//! `config/hydrant.toml` documents every key and is compiled in as the default, so the
//! defaults live in one place a user can read. A document is read in four steps, each with
//! its own kind of error:
//!
//! 1. `document` parses the TOML and keeps each key's position (syntax errors, with a line);
//! 2. `schema` checks every key is known and holds the right type (an unknown key names the
//!    nearest valid one, via `suggest`);
//! 3. serde turns the values into [`Config`], filling missing keys from the named defaults;
//! 4. `validate` checks the rules between values ([`Config::validate`]).

mod auth;
mod document;
mod error;
mod limits;
mod listener;
mod schema;
mod session;
mod suggest;
mod validate;

use std::net::SocketAddr;
use std::path::Path;

pub use auth::{AuthConfig, DEFAULT_CREDENTIAL_CACHE_SIZE, DEFAULT_CREDENTIAL_CACHE_TTL_SECS};
pub use error::ConfigError;
pub use limits::{
    Limits, DEFAULT_MAX_INFLIGHT_MESSAGES, DEFAULT_MAX_KEEPALIVE, DEFAULT_MAX_PACKET_SIZE,
    DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_QUEUED_BYTES_TOTAL, DEFAULT_MAX_QUEUED_MESSAGES,
    DEFAULT_MAX_RETAINED_BYTES, DEFAULT_MAX_RETAINED_MESSAGES, DEFAULT_MAX_SUBSCRIPTIONS,
    DEFAULT_MAX_TOPIC_ALIAS, DEFAULT_MAX_TOPIC_ALIAS_OUT, DEFAULT_MIN_KEEPALIVE,
    MAX_INFLIGHT_MESSAGES, MAX_MQTT_PACKET_SIZE, MAX_TOPIC_ALIAS, MAX_TOPIC_ALIAS_OUT,
    MIN_PACKET_SIZE,
};
pub use listener::{
    ListenerConfig, ListenerProtocol, DEFAULT_ALLOW_ANONYMOUS, DEFAULT_BIND,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_PROTOCOL, DEFAULT_WEBSOCKET_PATH,
};
pub use session::{
    SessionConfig, DEFAULT_ALLOW_ZERO_LENGTH_CLIENTID, DEFAULT_AUTO_ID_PREFIX,
    DEFAULT_MAX_OFFLINE_SESSIONS, DEFAULT_PERSISTENT_CLIENT_EXPIRATION,
    MAX_PERSISTENT_CLIENT_EXPIRATION,
};
pub use validate::{FORBIDDEN_CLIENT_ID_CHARS, MIN_IO_MEMORY};

pub use crate::metrics::MetricsConfig;
pub use crate::persist::PersistenceConfig;

use document::{Document, Value};
use validate::KeyPath;

/// The default configuration file, every key documented; compiled in so the broker runs
/// without one and the documentation cannot drift from the defaults.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../config/hydrant.toml");

/// Default `cores`: 0, one shard per CPU the process may use.
pub const DEFAULT_CORES: usize = 0;
/// Default `pin_cores`: executors are not pinned, so the kernel may move them (see
/// [`Config::pin_cores`]).
pub const DEFAULT_PIN_CORES: bool = false;
/// Default `io_memory` per shard: 1 MiB, well inside a typical 8 MiB `ulimit -l`.
pub const DEFAULT_IO_MEMORY: usize = 1_048_576;
/// Default `connection_messages`: log connects and disconnects.
pub const DEFAULT_CONNECTION_MESSAGES: bool = true;
/// Default `park_after_idle_ms`: a plain TCP client silent for a second is parked.
pub const DEFAULT_PARK_AFTER_IDLE_MS: u64 = 1000;

/// Everything the broker reads from its configuration file.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Shards to run, one per core; 0 = one per CPU the process may use.
    #[serde(default = "default_cores")]
    pub cores: usize,
    /// Whether each shard's executor is pinned to one CPU. Off by default: on a machine
    /// whose CPUs are shared with other busy processes, a pinned executor waits for its CPU
    /// while another is idle (measured in BENCHMARKS.md, "Pinned or not").
    #[serde(default = "default_pin_cores")]
    pub pin_cores: bool,
    /// Locked memory per shard for io_uring buffers (bytes).
    #[serde(default = "default_io_memory")]
    pub io_memory: usize,
    /// Whether to log every client connect and disconnect.
    #[serde(default = "default_connection_messages")]
    pub connection_messages: bool,
    /// Milliseconds a plain TCP client may be silent before its connection is parked again
    /// (connections start parked): its socket waits in one epoll set per core instead of a
    /// readiness poll of its own, which saves about a third of an idle connection's memory
    /// (see `transport::parked`). 0 = never park.
    #[serde(default = "default_park_after_idle_ms")]
    pub park_after_idle_ms: u64,
    /// The endpoints clients connect to; a file without `[[listener]]` gets the default one.
    #[serde(default = "default_listeners")]
    pub listener: Vec<ListenerConfig>,
    /// Bounds on packets, queues, keep-alives and retained messages.
    #[serde(default)]
    pub limits: Limits,
    /// Client identity and offline-session settings.
    #[serde(default)]
    pub session: SessionConfig,
    /// Settings shared by every listener's authentication.
    #[serde(default)]
    pub auth: AuthConfig,
    /// The `$SYS` tree, the metrics HTTP listener and what they report.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Whether and how each core writes retained messages to disk, and where.
    #[serde(default)]
    pub persistence: PersistenceConfig,
}

fn default_cores() -> usize {
    DEFAULT_CORES
}

fn default_pin_cores() -> bool {
    DEFAULT_PIN_CORES
}

fn default_io_memory() -> usize {
    DEFAULT_IO_MEMORY
}

fn default_connection_messages() -> bool {
    DEFAULT_CONNECTION_MESSAGES
}

fn default_park_after_idle_ms() -> u64 {
    DEFAULT_PARK_AFTER_IDLE_MS
}

fn default_listeners() -> Vec<ListenerConfig> {
    vec![ListenerConfig::default()]
}

impl Config {
    /// Parses a TOML document; missing keys take their defaults (a file may set only what it
    /// changes; a file that has no `[[listener]]` gets the default listener). The result has
    /// passed [`Config::validate`].
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let document = Document::parse(text)?;
        schema::check(&document)?;
        let config: Config =
            toml::from_str(text).map_err(|error| document::parse_error(text, &error))?;
        match validate::first_violation(&config) {
            None => Ok(config),
            Some(violation) => Err(ConfigError::Invalid {
                key: violation.path.to_string(),
                reason: violation.reason,
                line: line_of_key(&document, violation.path),
            }),
        }
    }

    /// Reads and parses a file; every error names the path.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|error| ConfigError::File {
            path: path.to_owned(),
            error: Box::new(error),
        })
    }

    /// Checks the rules between values: at least one listener and no two on the same address,
    /// `max_packet_size` from 2 to 268,435,460, `max_inflight_messages` from 1 to 65,535,
    /// `max_queued_messages` at least 1, `min_keepalive <= max_keepalive`, `io_memory` at
    /// least 64 KiB, `auto_id_prefix` free of `/`, `+`, `#` and control characters,
    /// `persistent_client_expiration` at most 100 years, the `[metrics]` rules
    /// ([`MetricsConfig::validate`]), a metrics `http_listener` on an address no MQTT
    /// listener uses, and the `[persistence]` ranges ([`PersistenceConfig::validate`]).
    /// [`Config::from_toml`] calls it; call
    /// it again after changing a `Config` (e.g. after [`Config::override_bind`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match validate::first_violation(self) {
            None => Ok(()),
            Some(violation) => Err(ConfigError::Invalid {
                key: violation.path.to_string(),
                reason: violation.reason,
                line: None,
            }),
        }
    }

    /// Replaces the address of the first plain-MQTT listener (the `--bind` command-line flag),
    /// adding one with the default settings if there is none.
    pub fn override_bind(&mut self, addr: SocketAddr) {
        match self
            .listener
            .iter_mut()
            .find(|listener| listener.protocol == ListenerProtocol::Mqtt)
        {
            Some(listener) => listener.bind = addr,
            None => self.listener.push(ListenerConfig {
                bind: addr,
                protocol: ListenerProtocol::Mqtt,
                ..ListenerConfig::default()
            }),
        }
    }
}

impl Default for Config {
    /// The configuration of the embedded `config/hydrant.toml`.
    fn default() -> Self {
        // The embedded file is a constant of the build, not input; the unit test
        // `embedded_default_parses_and_matches_the_constants` proves it parses and validates.
        Config::from_toml(DEFAULT_CONFIG_TOML)
            .expect("the embedded config/hydrant.toml is valid (checked by a unit test)")
    }
}

/// The line where the key at `path` is written, if the document sets it.
fn line_of_key(document: &Document<'_>, path: KeyPath) -> Option<usize> {
    let root = &document.root;
    let entry = match (path.section, path.index) {
        (None, _) => root.get(path.key)?,
        (Some(section), None) => match &root.get(section)?.value {
            Value::Table(table) => table.get(path.key)?,
            _ => return None,
        },
        (Some(section), Some(index)) => match &root.get(section)?.value {
            Value::Array(items) => match items.get(index)? {
                Value::Table(table) => table.get(path.key)?,
                _ => return None,
            },
            _ => return None,
        },
    };
    Some(document.line_of(entry.offset))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;

    fn defaults_from_constants() -> Config {
        Config {
            cores: DEFAULT_CORES,
            pin_cores: DEFAULT_PIN_CORES,
            io_memory: DEFAULT_IO_MEMORY,
            connection_messages: DEFAULT_CONNECTION_MESSAGES,
            park_after_idle_ms: DEFAULT_PARK_AFTER_IDLE_MS,
            listener: vec![ListenerConfig {
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
            }],
            limits: Limits {
                max_packet_size: DEFAULT_MAX_PACKET_SIZE,
                max_inflight_messages: DEFAULT_MAX_INFLIGHT_MESSAGES,
                max_queued_messages: DEFAULT_MAX_QUEUED_MESSAGES,
                max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
                max_queued_bytes_total: DEFAULT_MAX_QUEUED_BYTES_TOTAL,
                min_keepalive: DEFAULT_MIN_KEEPALIVE,
                max_keepalive: DEFAULT_MAX_KEEPALIVE,
                max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
                max_retained_messages: DEFAULT_MAX_RETAINED_MESSAGES,
                max_retained_bytes: DEFAULT_MAX_RETAINED_BYTES,
                max_topic_alias: DEFAULT_MAX_TOPIC_ALIAS,
                max_topic_alias_out: DEFAULT_MAX_TOPIC_ALIAS_OUT,
            },
            session: SessionConfig {
                allow_zero_length_clientid: DEFAULT_ALLOW_ZERO_LENGTH_CLIENTID,
                auto_id_prefix: DEFAULT_AUTO_ID_PREFIX.to_owned(),
                persistent_client_expiration: DEFAULT_PERSISTENT_CLIENT_EXPIRATION,
                max_offline_sessions: DEFAULT_MAX_OFFLINE_SESSIONS,
            },
            auth: AuthConfig {
                credential_cache_size: DEFAULT_CREDENTIAL_CACHE_SIZE,
                credential_cache_ttl: DEFAULT_CREDENTIAL_CACHE_TTL_SECS,
            },
            metrics: MetricsConfig {
                sys_interval: crate::metrics::DEFAULT_SYS_INTERVAL,
                http_listener: None,
                http_username: None,
                http_password: None,
                http_bearer_token: None,
                http_max_connections: crate::metrics::DEFAULT_HTTP_MAX_CONNECTIONS,
                slow_clients_top: crate::metrics::DEFAULT_SLOW_CLIENTS_TOP,
                lag_probe_interval_ms: crate::metrics::DEFAULT_LAG_PROBE_INTERVAL_MS,
            },
            persistence: PersistenceConfig {
                persistence: crate::persist::DEFAULT_PERSISTENCE,
                persistence_location: crate::persist::DEFAULT_PERSISTENCE_LOCATION.into(),
                sync: crate::persist::DEFAULT_SYNC,
                sync_interval_ms: crate::persist::DEFAULT_SYNC_INTERVAL_MS,
                max_disk_bytes: crate::persist::DEFAULT_MAX_DISK_BYTES,
                autosave_log_bytes: crate::persist::DEFAULT_AUTOSAVE_LOG_BYTES,
                autosave_log_ratio: crate::persist::DEFAULT_AUTOSAVE_LOG_RATIO,
                write_buffer_bytes: crate::persist::DEFAULT_WRITE_BUFFER_BYTES,
            },
        }
    }

    fn error_of(text: &str) -> ConfigError {
        match Config::from_toml(text) {
            Ok(config) => panic!("{text:?} was accepted as {config:?}"),
            Err(error) => error,
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("a valid socket address in the test")
    }

    #[test]
    fn embedded_default_parses_and_matches_the_constants() {
        let parsed = Config::from_toml(DEFAULT_CONFIG_TOML);
        assert_eq!(parsed.ok(), Some(defaults_from_constants()));
        assert_eq!(Config::default(), defaults_from_constants());
    }

    #[test]
    fn embedded_default_sets_and_documents_every_key() {
        let document = Document::parse(DEFAULT_CONFIG_TOML).expect("valid TOML");
        for path in schema::all_key_paths() {
            let (section, key) = match path.split_once('.') {
                Some((section, key)) => (Some(section), key),
                None => (None, path.as_str()),
            };
            let entry = match section {
                None => document.root.get(key),
                Some(section) => match document.root.get(section).map(|entry| &entry.value) {
                    Some(Value::Table(table)) => table.get(key),
                    Some(Value::Array(items)) => match items.first() {
                        Some(Value::Table(table)) => table.get(key),
                        _ => None,
                    },
                    _ => None,
                },
            };
            let Some(entry) = entry else {
                // A file path (or an optional address or secret) has no value that means
                // "none": it is documented as a commented-out example after its
                // "# Default: none" comment.
                let example = format!("# {key} = ");
                let documented = DEFAULT_CONFIG_TOML
                    .lines()
                    .zip(DEFAULT_CONFIG_TOML.lines().skip(1))
                    .any(|(comment, line)| {
                        comment.starts_with("# Default: none") && line.starts_with(&example)
                    });
                assert!(
                    schema::is_unset_by_default(&path) && documented,
                    "config/hydrant.toml does not set `{path}`"
                );
                continue;
            };
            let line = document.line_of(entry.offset);
            let comment = DEFAULT_CONFIG_TOML
                .lines()
                .nth(line - 2)
                .unwrap_or_default();
            assert!(
                comment.starts_with("# Default: "),
                "`{path}` (line {line}) is not preceded by a \"# Default: …\" comment"
            );
        }
    }

    #[test]
    fn an_empty_file_is_the_default() {
        assert_eq!(Config::from_toml("").ok(), Some(defaults_from_constants()));
    }

    #[test]
    fn a_partial_file_overrides_only_what_it_sets() {
        let text =
            "cores = 2\n[limits]\nmax_packet_size = 4096\n[session]\nauto_id_prefix = \"h-\"\n";
        let config = Config::from_toml(text).expect("valid");
        let mut expected = defaults_from_constants();
        expected.cores = 2;
        expected.limits.max_packet_size = 4096;
        expected.session.auto_id_prefix = "h-".to_owned();
        assert_eq!(config, expected);
    }

    #[test]
    fn listener_tables_take_defaults_for_missing_keys() {
        let text = "[[listener]]\nbind = \"127.0.0.1:1884\"\n[[listener]]\nbind = \"[::1]:1885\"\nmax_connections = 0\n";
        let config = Config::from_toml(text).expect("valid");
        assert_eq!(
            config.listener,
            vec![
                ListenerConfig {
                    bind: addr("127.0.0.1:1884"),
                    ..ListenerConfig::default()
                },
                ListenerConfig {
                    bind: addr("[::1]:1885"),
                    protocol: ListenerProtocol::Mqtt,
                    max_connections: 0,
                    ..ListenerConfig::default()
                },
            ]
        );
    }

    #[test]
    fn every_validation_rule_names_its_key() {
        let cases = [
            ("io_memory = 65535", "io_memory", "at least 65536 bytes"),
            ("listener = []", "listener", "at least one listener"),
            (
                "[[listener]]\nprotocol = \"mqtt+tls\"\nkeyfile = \"k\"",
                "listener.certfile",
                "uses TLS",
            ),
            (
                "[[listener]]\nprotocol = \"wss\"\ncertfile = \"c\"",
                "listener.keyfile",
                "uses TLS",
            ),
            (
                "[[listener]]\ncafile = \"ca\"",
                "listener.cafile",
                "only for \"mqtt+tls\" and \"wss\"",
            ),
            (
                "[[listener]]\nprotocol = \"mqtt+tls\"\ncertfile = \"c\"\nkeyfile = \"k\"\nrequire_certificate = true",
                "listener.require_certificate",
                "needs `cafile`",
            ),
            (
                "[[listener]]\nprotocol = \"mqtt+tls\"\ncertfile = \"c\"\nkeyfile = \"k\"\ncafile = \"ca\"\nuse_identity_as_username = true",
                "listener.use_identity_as_username",
                "require_certificate = true",
            ),
            (
                "[[listener]]\nprotocol = \"ws\"\nwebsocket_path = \"mqtt\"",
                "listener.websocket_path",
                "start with '/'",
            ),
            (
                "[[listener]]\nwebsocket_origins = [\"https://a\"]",
                "listener.websocket_origins",
                "only for \"ws\" and \"wss\"",
            ),
            (
                "[limits]\nmax_packet_size = 1",
                "limits.max_packet_size",
                "from 2 to 268435460",
            ),
            (
                "[limits]\nmax_packet_size = 268435461",
                "limits.max_packet_size",
                "from 2 to 268435460",
            ),
            (
                "[limits]\nmax_inflight_messages = 0",
                "limits.max_inflight_messages",
                "from 1 to 65535",
            ),
            (
                "[limits]\nmax_inflight_messages = 65536",
                "limits.max_inflight_messages",
                "from 1 to 65535",
            ),
            (
                "[limits]\nmax_queued_messages = 0",
                "limits.max_queued_messages",
                "at least 1",
            ),
            (
                "[limits]\nmin_keepalive = 61\nmax_keepalive = 60",
                "limits.min_keepalive",
                "greater than `limits.max_keepalive`",
            ),
            (
                "[session]\nauto_id_prefix = \"a/b\"",
                "session.auto_id_prefix",
                "'/'",
            ),
            (
                "[session]\nauto_id_prefix = \"a+\"",
                "session.auto_id_prefix",
                "'+'",
            ),
            (
                "[session]\nauto_id_prefix = \"#\"",
                "session.auto_id_prefix",
                "'#'",
            ),
            (
                "[session]\nauto_id_prefix = \"a\\u0000\"",
                "session.auto_id_prefix",
                "control",
            ),
            (
                "[session]\npersistent_client_expiration = 3153600001",
                "session.persistent_client_expiration",
                "at most 3153600000",
            ),
            (
                "[[listener]]\nbind = \"0.0.0.0:1883\"\n[[listener]]\nbind = \"0.0.0.0:1883\"",
                "listener.bind",
                "#1 and #2 both bind",
            ),
            (
                "[[listener]]\nbind = \"0.0.0.0:1883\"\n[[listener]]\nbind = \"127.0.0.1:1883\"",
                "listener.bind",
                "overlap",
            ),
            (
                "[[listener]]\nbind = \"[::1]:1883\"\n[[listener]]\nbind = \"[::]:1883\"",
                "listener.bind",
                "overlap",
            ),
        ];
        for (text, key, expected) in cases {
            let error = error_of(text);
            let message = error.to_string();
            match &error {
                ConfigError::Invalid { key: named, .. } => {
                    assert_eq!(named, key, "{text:?} gave {message:?}");
                }
                other => panic!("{text:?} gave {other:?}"),
            }
            assert!(message.contains(&format!("`{key}`")), "{message}");
            assert!(message.contains(expected), "{text:?} gave {message:?}");
        }
    }

    #[test]
    fn boundary_values_are_accepted() {
        let text =
            "io_memory = 65536\n[limits]\nmax_packet_size = 2\nmax_inflight_messages = 65535\n\
                    max_queued_messages = 1\nmin_keepalive = 60\nmax_keepalive = 60\n\
                    [session]\npersistent_client_expiration = 3153600000\nauto_id_prefix = \"\"\n";
        assert!(Config::from_toml(text).is_ok());
        let separate =
            "[[listener]]\nbind = \"127.0.0.1:1883\"\n[[listener]]\nbind = \"127.0.0.1:1884\"\n\
                        [[listener]]\nbind = \"[::]:1883\"\n[[listener]]\nbind = \"127.0.0.1:0\"\n\
                        [[listener]]\nbind = \"127.0.0.1:0\"\n";
        assert!(Config::from_toml(separate).is_ok());
    }

    #[test]
    fn validation_errors_point_at_the_offending_line() {
        let error = error_of("cores = 1\n\n[limits]\nmax_queued_messages = 0\n");
        assert_eq!(error.line(), Some(4));
        assert!(error
            .to_string()
            .starts_with("line 4: `limits.max_queued_messages`"));
        let error =
            error_of("[[listener]]\nbind = \"0.0.0.0:1\"\n[[listener]]\nbind = \"0.0.0.0:1\"\n");
        assert_eq!(error.line(), Some(4));
    }

    #[test]
    fn validate_on_a_built_config_has_no_line() {
        let mut config = Config::default();
        config.limits.max_queued_messages = 0;
        let error = config.validate().expect_err("invalid");
        assert_eq!(error.line(), None);
        assert_eq!(
            error.to_string(),
            "`limits.max_queued_messages` must be at least 1, found 0"
        );
    }

    #[test]
    fn unknown_key_in_a_section_suggests_the_nearest() {
        let error = error_of("[limits]\nmax_inflight_message = 5\n");
        match &error {
            ConfigError::UnknownKey {
                key,
                section,
                suggestion,
                line,
            } => {
                assert_eq!(key, "max_inflight_message");
                assert_eq!(section, "limits");
                assert_eq!(suggestion.as_deref(), Some("max_inflight_messages"));
                assert_eq!(*line, Some(2));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            error.to_string(),
            "line 2: unknown key `max_inflight_message` in [limits]; did you mean \
             `max_inflight_messages`?"
        );
    }

    #[test]
    fn unknown_top_level_key_suggests_the_nearest() {
        let error = error_of("core = 4\n");
        assert_eq!(
            error.to_string(),
            "line 1: unknown key `core` at the top level; did you mean `cores`?"
        );
    }

    #[test]
    fn unknown_listener_key_suggests_the_nearest() {
        let error = error_of("[[listener]]\nbind = \"0.0.0.0:1883\"\nmax_conections = 5\n");
        assert!(matches!(
            &error,
            ConfigError::UnknownKey { section, suggestion, .. }
                if section == "listener" && suggestion.as_deref() == Some("max_connections")
        ));
        assert_eq!(
            error.to_string(),
            "line 3: unknown key `max_conections` in [[listener]]; did you mean `max_connections`?"
        );
    }

    #[test]
    fn a_misspelled_section_suggests_the_section() {
        let error = error_of("[limit]\nmax_packet_size = 10\n");
        assert!(matches!(
            &error,
            ConfigError::UnknownKey { key, section, suggestion, line: Some(1) }
                if key == "limit" && section.is_empty() && suggestion.as_deref() == Some("limits")
        ));
        assert_eq!(
            error.to_string(),
            "line 1: unknown key `limit` at the top level; did you mean the section [limits]?"
        );
        let error = error_of("[[listeners]]\n");
        assert!(error
            .to_string()
            .contains("did you mean the section [[listener]]?"));
    }

    #[test]
    fn a_key_in_the_wrong_place_is_pointed_to_its_section() {
        let message = error_of("max_packet_size = 10\n").to_string();
        assert!(
            message.ends_with("did you mean `max_packet_size` in [limits]?"),
            "{message}"
        );
        let message = error_of("[session]\ncores = 1\n").to_string();
        assert!(
            message.ends_with(
                "did you mean the top-level key `cores` (it goes before the first section)?"
            ),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_key_with_nothing_near_lists_the_valid_keys() {
        let message = error_of("[auth]\nzzz = true\n").to_string();
        assert_eq!(
            message,
            "line 2: unknown key `zzz` in [auth]; the valid keys here are \
             `credential_cache_size`, `credential_cache_ttl`"
        );
    }

    #[test]
    fn syntax_errors_are_parse_errors_with_a_line() {
        let error = error_of("cores = 1\n[limits\n");
        assert!(
            matches!(error, ConfigError::Parse { line: Some(2), .. }),
            "{error:?}"
        );
        assert!(error.to_string().starts_with("line 2: "));
    }

    #[test]
    fn override_bind_replaces_the_first_mqtt_listener() {
        let mut config = Config::from_toml(
            "[[listener]]\nbind = \"127.0.0.1:1\"\n[[listener]]\nbind = \"127.0.0.1:2\"\n",
        )
        .expect("valid");
        config.override_bind(addr("127.0.0.1:3"));
        let binds: Vec<SocketAddr> = config.listener.iter().map(|l| l.bind).collect();
        assert_eq!(binds, vec![addr("127.0.0.1:3"), addr("127.0.0.1:2")]);
        assert!(config.validate().is_ok());
        config.override_bind(addr("127.0.0.1:2"));
        assert!(
            config.validate().is_err(),
            "a collision made by the override is caught"
        );
    }

    #[test]
    fn override_bind_adds_a_listener_when_there_is_none() {
        let mut config = Config {
            listener: Vec::new(),
            ..Config::default()
        };
        let bind = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
        config.override_bind(bind);
        assert_eq!(
            config.listener,
            vec![ListenerConfig {
                bind,
                ..ListenerConfig::default()
            }]
        );
        assert!(config.validate().is_ok());
    }

    #[test]
    fn the_persistence_section_is_read_and_checked() {
        let config = Config::from_toml(
            "[persistence]\npersistence = true\npersistence_location = \"/var/lib/hydrant\"\n\
             sync = \"always\"\nmax_disk_bytes = 1073741824\n",
        )
        .expect("valid");
        assert!(config.persistence.persistence);
        assert_eq!(
            config.persistence.persistence_location,
            Path::new("/var/lib/hydrant")
        );
        assert_eq!(config.persistence.sync, crate::persist::SyncMode::Always);
        assert_eq!(config.persistence.max_disk_bytes, 1 << 30);
        assert_eq!(
            config.persistence.sync_interval_ms,
            crate::persist::DEFAULT_SYNC_INTERVAL_MS
        );

        let cases = [
            (
                "[persistence]\nsync = \"sometimes\"\n",
                "persistence.sync",
                "must be one of \"always\", \"interval\", \"never\"",
            ),
            (
                "[persistence]\npersistence_location = \"\"\n",
                "persistence.persistence_location",
                "must name a directory",
            ),
            (
                "[persistence]\nsync_interval_ms = 0\n",
                "persistence.sync_interval_ms",
                "from 1 to 3600000 milliseconds",
            ),
            (
                "[persistence]\nmax_disk_bytes = 1000\n",
                "persistence.max_disk_bytes",
                "at least 1048576 bytes",
            ),
            (
                "[persistence]\nautosave_log_ratio = 0\n",
                "persistence.autosave_log_ratio",
                "at least 1",
            ),
            (
                "[persistence]\nwrite_buffer_bytes = 4096\n",
                "persistence.write_buffer_bytes",
                "at least 65536 bytes",
            ),
            (
                "[persistence]\npersistence = \"yes\"\n",
                "persistence.persistence",
                "must be true or false",
            ),
        ];
        for (text, key, expected) in cases {
            let error = error_of(text);
            let message = error.to_string();
            match &error {
                ConfigError::Invalid { key: named, .. } => {
                    assert_eq!(named, key, "{text:?} gave {message:?}");
                }
                other => panic!("{text:?} gave {other:?}"),
            }
            assert!(message.contains(expected), "{text:?} gave {message:?}");
        }
        let misspelled = error_of("[persistence]\nsync_intervall_ms = 5\n").to_string();
        assert!(
            misspelled.ends_with("did you mean `sync_interval_ms`?"),
            "{misspelled}"
        );
    }

    #[test]
    fn the_metrics_section_is_read_and_checked() {
        let config = Config::from_toml(
            "[metrics]\nsys_interval = 1\nhttp_listener = \"127.0.0.1:9100\"\n\
             http_bearer_token = \"t0k\"\nslow_clients_top = 3\nlag_probe_interval_ms = 50\n",
        )
        .expect("valid");
        assert_eq!(config.metrics.sys_interval, 1);
        assert_eq!(config.metrics.http_listener, Some(addr("127.0.0.1:9100")));
        assert_eq!(config.metrics.slow_clients_top, 3);
        assert_eq!(config.metrics.lag_probe_interval_ms, 50);

        let cases = [
            (
                "[metrics]\nhttp_username = \"prom\"\n",
                "metrics.http_password",
                "must be set with http_username",
            ),
            (
                "[metrics]\nsys_interval = 86401\n",
                "metrics.sys_interval",
                "at most 86400",
            ),
            (
                "[metrics]\nhttp_listener = \"localhost:9100\"\n",
                "metrics.http_listener",
                "IP address and port",
            ),
            (
                "[metrics]\nlag_probe_interval_ms = \"fast\"\n",
                "metrics.lag_probe_interval_ms",
                "whole number of milliseconds",
            ),
            (
                "[[listener]]\nbind = \"0.0.0.0:1883\"\n[metrics]\nhttp_listener = \"127.0.0.1:1883\"\n",
                "metrics.http_listener",
                "listener #1",
            ),
        ];
        for (text, key, expected) in cases {
            let error = error_of(text);
            let message = error.to_string();
            match &error {
                ConfigError::Invalid { key: named, .. } => {
                    assert_eq!(named, key, "{text:?} gave {message:?}");
                }
                other => panic!("{text:?} gave {other:?}"),
            }
            assert!(message.contains(expected), "{text:?} gave {message:?}");
        }
        let misspelled = error_of("[metrics]\nsys_intervall = 5\n").to_string();
        assert!(
            misspelled.ends_with("did you mean `sys_interval`?"),
            "{misspelled}"
        );
    }

    #[test]
    fn load_names_the_file_in_every_error() {
        let missing = Path::new("/nonexistent/hydrant-config-test.toml");
        let error = Config::load(missing).expect_err("missing file");
        assert!(matches!(error, ConfigError::Io { .. }));
        assert!(error
            .to_string()
            .contains("/nonexistent/hydrant-config-test.toml"));

        let path = std::env::temp_dir().join(format!("hydrant-config-{}.toml", std::process::id()));
        std::fs::write(&path, "[limits]\nmax_packet_sise = 5\n").expect("write a temp file");
        let error = Config::load(&path).expect_err("unknown key");
        let _ = std::fs::remove_file(&path);
        assert!(error
            .to_string()
            .starts_with(&format!("{}: line 2: ", path.display())));
        assert!(matches!(
            error.without_path(),
            ConfigError::UnknownKey { .. }
        ));
        assert_eq!(error.line(), Some(2));
    }

    #[test]
    fn load_reads_a_valid_file() {
        let path =
            std::env::temp_dir().join(format!("hydrant-config-ok-{}.toml", std::process::id()));
        std::fs::write(&path, "cores = 3\n").expect("write a temp file");
        let loaded = Config::load(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(loaded.expect("valid").cores, 3);
    }
}
