//! `[session]`: client identity and how long disconnected sessions are kept.

/// Default `allow_zero_length_clientid`: the broker assigns an id (clean sessions only).
pub const DEFAULT_ALLOW_ZERO_LENGTH_CLIENTID: bool = true;
/// Default `auto_id_prefix`.
pub const DEFAULT_AUTO_ID_PREFIX: &str = "auto-";
/// Default `persistent_client_expiration`: 0, keep disconnected persistent sessions forever.
pub const DEFAULT_PERSISTENT_CLIENT_EXPIRATION: u64 = 0;
/// Default `max_offline_sessions` per shard.
pub const DEFAULT_MAX_OFFLINE_SESSIONS: usize = 10_000;

/// Largest allowed `persistent_client_expiration`: 100 years of seconds, so that adding it to
/// a clock reading can never overflow.
pub const MAX_PERSISTENT_CLIENT_EXPIRATION: u64 = 100 * 365 * 24 * 60 * 60;

/// How clients are identified and how long the broker remembers them once they leave.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Whether a client may send an empty client id and have the broker assign one.
    pub allow_zero_length_clientid: bool,
    /// Prefix of client ids the broker assigns.
    pub auto_id_prefix: String,
    /// Seconds a disconnected persistent session is kept; 0 = forever.
    pub persistent_client_expiration: u64,
    /// Most disconnected persistent sessions kept per shard; past it the oldest is dropped.
    pub max_offline_sessions: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            allow_zero_length_clientid: DEFAULT_ALLOW_ZERO_LENGTH_CLIENTID,
            auto_id_prefix: DEFAULT_AUTO_ID_PREFIX.to_owned(),
            persistent_client_expiration: DEFAULT_PERSISTENT_CLIENT_EXPIRATION,
            max_offline_sessions: DEFAULT_MAX_OFFLINE_SESSIONS,
        }
    }
}
