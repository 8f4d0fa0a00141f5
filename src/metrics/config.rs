//! What the user configures about `$SYS` and the metrics endpoint. Key names follow
//! Mosquitto where the concept is the same (`sys_interval`); the rest are hydrant's own.
//! [`MetricsConfig`] is a plain serde struct, meant to be embedded by the broker's
//! configuration.

use std::net::SocketAddr;
use std::time::Duration;

use super::http::HttpAuth;
use super::lag_probe::DEFAULT_LAG_PROBE_INTERVAL;
use super::slow_clients::DEFAULT_SLOW_CLIENTS_TOP;

/// Default `sys_interval`: 10 s, as Mosquitto.
pub const DEFAULT_SYS_INTERVAL: u64 = 10;
/// Default `http_max_connections`: scrapes served at once.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: usize = 4;
/// Default `lag_probe_interval_ms`.
pub const DEFAULT_LAG_PROBE_INTERVAL_MS: u64 = DEFAULT_LAG_PROBE_INTERVAL.as_millis() as u64;

/// Largest `sys_interval`: one day.
pub const MAX_SYS_INTERVAL: u64 = 86_400;
/// Largest `http_max_connections`.
pub const MAX_HTTP_MAX_CONNECTIONS: usize = 64;
/// Largest `slow_clients_top`: bounds the label cardinality of `/metrics`.
pub const MAX_SLOW_CLIENTS_TOP: usize = 1000;
/// Largest `lag_probe_interval_ms`: one minute.
pub const MAX_LAG_PROBE_INTERVAL_MS: u64 = 60_000;

/// The observability settings of the broker.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Seconds between `$SYS` publications (and between the cores' snapshots); 0 = no `$SYS`.
    pub sys_interval: u64,
    /// Address of the HTTP listener serving `/metrics` and `/healthz`; absent = no listener.
    pub http_listener: Option<SocketAddr>,
    /// With `http_password`: the user name `/metrics` asks for (HTTP basic auth).
    pub http_username: Option<String>,
    /// With `http_username`: the password `/metrics` asks for.
    pub http_password: Option<String>,
    /// A bearer token `/metrics` asks for instead of a user name and password.
    pub http_bearer_token: Option<String>,
    /// HTTP connections served at once; more wait in the listen backlog.
    pub http_max_connections: usize,
    /// How many of the clients lagging most `/metrics` lists (one series each).
    pub slow_clients_top: usize,
    /// Milliseconds between two event-loop lag measurements on each core; 0 = none.
    pub lag_probe_interval_ms: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            sys_interval: DEFAULT_SYS_INTERVAL,
            http_listener: None,
            http_username: None,
            http_password: None,
            http_bearer_token: None,
            http_max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
            slow_clients_top: DEFAULT_SLOW_CLIENTS_TOP,
            lag_probe_interval_ms: DEFAULT_LAG_PROBE_INTERVAL_MS,
        }
    }
}

impl std::fmt::Debug for MetricsConfig {
    /// Shows which secrets are set, never their values.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |value: &Option<String>| value.as_ref().map(|_| "<set>");
        formatter
            .debug_struct("MetricsConfig")
            .field("sys_interval", &self.sys_interval)
            .field("http_listener", &self.http_listener)
            .field("http_username", &self.http_username)
            .field("http_password", &secret(&self.http_password))
            .field("http_bearer_token", &secret(&self.http_bearer_token))
            .field("http_max_connections", &self.http_max_connections)
            .field("slow_clients_top", &self.slow_clients_top)
            .field("lag_probe_interval_ms", &self.lag_probe_interval_ms)
            .finish()
    }
}

/// A rule between metrics settings that a configuration breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct MetricsConfigError {
    /// The key to fix.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl MetricsConfigError {
    fn new(key: &'static str, reason: impl Into<String>) -> Self {
        MetricsConfigError {
            key,
            reason: reason.into(),
        }
    }
}

impl MetricsConfig {
    /// Checks the rules between values: `sys_interval` at most a day, a user name and a
    /// password set together (the name without `:`), not both basic auth and a bearer token,
    /// no empty secret, `http_max_connections` from 1 to 64, `slow_clients_top` at most 1000,
    /// `lag_probe_interval_ms` at most a minute.
    pub fn validate(&self) -> Result<(), MetricsConfigError> {
        if self.sys_interval > MAX_SYS_INTERVAL {
            return Err(MetricsConfigError::new(
                "sys_interval",
                format!("must be at most {MAX_SYS_INTERVAL} seconds"),
            ));
        }
        match (&self.http_username, &self.http_password) {
            (Some(_), None) => {
                return Err(MetricsConfigError::new(
                    "http_password",
                    "must be set with http_username",
                ))
            }
            (None, Some(_)) => {
                return Err(MetricsConfigError::new(
                    "http_username",
                    "must be set with http_password",
                ))
            }
            (Some(username), Some(password)) => {
                if username.is_empty() || username.contains(':') {
                    return Err(MetricsConfigError::new(
                        "http_username",
                        "must be non-empty and free of ':'",
                    ));
                }
                if password.is_empty() {
                    return Err(MetricsConfigError::new(
                        "http_password",
                        "must not be empty",
                    ));
                }
                if self.http_bearer_token.is_some() {
                    return Err(MetricsConfigError::new(
                        "http_bearer_token",
                        "cannot be set with http_username and http_password",
                    ));
                }
            }
            (None, None) => {}
        }
        if let Some(token) = &self.http_bearer_token {
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(MetricsConfigError::new(
                    "http_bearer_token",
                    "must be non-empty printable ASCII without spaces",
                ));
            }
        }
        if !(1..=MAX_HTTP_MAX_CONNECTIONS).contains(&self.http_max_connections) {
            return Err(MetricsConfigError::new(
                "http_max_connections",
                format!("must be from 1 to {MAX_HTTP_MAX_CONNECTIONS}"),
            ));
        }
        if self.slow_clients_top > MAX_SLOW_CLIENTS_TOP {
            return Err(MetricsConfigError::new(
                "slow_clients_top",
                format!("must be at most {MAX_SLOW_CLIENTS_TOP}"),
            ));
        }
        if self.lag_probe_interval_ms > MAX_LAG_PROBE_INTERVAL_MS {
            return Err(MetricsConfigError::new(
                "lag_probe_interval_ms",
                format!("must be at most {MAX_LAG_PROBE_INTERVAL_MS}"),
            ));
        }
        Ok(())
    }

    /// How often every core sends its snapshot: every `sys_interval`, or every
    /// [`DEFAULT_SYS_INTERVAL`] seconds when only the HTTP listener needs them; `None` when
    /// neither `$SYS` nor the listener is on (then no snapshot is ever taken).
    #[must_use]
    pub fn snapshot_period(&self) -> Option<Duration> {
        if self.sys_interval > 0 {
            Some(Duration::from_secs(self.sys_interval))
        } else if self.http_listener.is_some() {
            Some(Duration::from_secs(DEFAULT_SYS_INTERVAL))
        } else {
            None
        }
    }

    /// Whether `$SYS` values are published.
    #[must_use]
    pub fn sys_enabled(&self) -> bool {
        self.sys_interval > 0
    }

    /// How often each core measures its event-loop lag, if it does.
    #[must_use]
    pub fn lag_probe_interval(&self) -> Option<Duration> {
        (self.lag_probe_interval_ms > 0).then(|| Duration::from_millis(self.lag_probe_interval_ms))
    }

    /// The credentials `/metrics` asks for.
    #[must_use]
    pub fn http_auth(&self) -> HttpAuth {
        match (
            &self.http_username,
            &self.http_password,
            &self.http_bearer_token,
        ) {
            (Some(username), Some(password), _) => HttpAuth::basic(username, password),
            (_, _, Some(token)) => HttpAuth::bearer(token),
            _ => HttpAuth::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MetricsConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn defaults_are_the_named_constants() {
        let config = parse("").unwrap();
        assert_eq!(config, MetricsConfig::default());
        assert_eq!(config.sys_interval, 10);
        assert_eq!(config.http_listener, None);
        assert_eq!(config.snapshot_period(), Some(Duration::from_secs(10)));
        assert_eq!(
            config.lag_probe_interval(),
            Some(DEFAULT_LAG_PROBE_INTERVAL)
        );
        assert_eq!(config.http_auth(), HttpAuth::None);
        config.validate().unwrap();
    }

    #[test]
    fn every_key_parses() {
        let config = parse(
            "sys_interval = 5\nhttp_listener = \"127.0.0.1:9100\"\n\
             http_username = \"prom\"\nhttp_password = \"s3cret\"\n\
             http_max_connections = 2\nslow_clients_top = 3\nlag_probe_interval_ms = 0\n",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(
            config.http_listener,
            Some("127.0.0.1:9100".parse().unwrap())
        );
        assert_eq!(config.http_auth(), HttpAuth::basic("prom", "s3cret"));
        assert_eq!(config.lag_probe_interval(), None);
        assert!(parse("unknown_key = 1\n").is_err());
    }

    #[test]
    fn snapshots_run_while_something_needs_them() {
        let off = MetricsConfig {
            sys_interval: 0,
            ..MetricsConfig::default()
        };
        assert_eq!(off.snapshot_period(), None);
        assert!(!off.sys_enabled());
        let http_only = MetricsConfig {
            http_listener: Some("127.0.0.1:0".parse().unwrap()),
            ..off
        };
        assert_eq!(http_only.snapshot_period(), Some(Duration::from_secs(10)));
    }

    #[test]
    fn broken_rules_name_their_key() {
        let base = MetricsConfig::default;
        let cases = [
            (
                MetricsConfig {
                    sys_interval: MAX_SYS_INTERVAL + 1,
                    ..base()
                },
                "sys_interval",
            ),
            (
                MetricsConfig {
                    http_username: Some("u".into()),
                    ..base()
                },
                "http_password",
            ),
            (
                MetricsConfig {
                    http_password: Some("p".into()),
                    ..base()
                },
                "http_username",
            ),
            (
                MetricsConfig {
                    http_username: Some("a:b".into()),
                    http_password: Some("p".into()),
                    ..base()
                },
                "http_username",
            ),
            (
                MetricsConfig {
                    http_username: Some("u".into()),
                    http_password: Some("p".into()),
                    http_bearer_token: Some("t".into()),
                    ..base()
                },
                "http_bearer_token",
            ),
            (
                MetricsConfig {
                    http_bearer_token: Some("has space".into()),
                    ..base()
                },
                "http_bearer_token",
            ),
            (
                MetricsConfig {
                    http_max_connections: 0,
                    ..base()
                },
                "http_max_connections",
            ),
            (
                MetricsConfig {
                    slow_clients_top: MAX_SLOW_CLIENTS_TOP + 1,
                    ..base()
                },
                "slow_clients_top",
            ),
            (
                MetricsConfig {
                    lag_probe_interval_ms: MAX_LAG_PROBE_INTERVAL_MS + 1,
                    ..base()
                },
                "lag_probe_interval_ms",
            ),
        ];
        for (config, key) in cases {
            assert_eq!(config.validate().unwrap_err().key, key, "{config:?}");
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let config = MetricsConfig {
            http_username: Some("prom".into()),
            http_password: Some("hunter2".into()),
            http_bearer_token: Some("tok3n".into()),
            ..MetricsConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(shown.contains("prom"));
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("tok3n"));
    }
}
