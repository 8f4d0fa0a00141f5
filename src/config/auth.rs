//! `[auth]`: settings shared by every listener's authentication.

use std::time::Duration;

use crate::auth::{DEFAULT_CREDENTIAL_CACHE_CAPACITY, DEFAULT_CREDENTIAL_CACHE_TTL};

/// Default `credential_cache_size`, per core.
pub const DEFAULT_CREDENTIAL_CACHE_SIZE: usize = DEFAULT_CREDENTIAL_CACHE_CAPACITY;
/// Default `credential_cache_ttl`, in seconds.
pub const DEFAULT_CREDENTIAL_CACHE_TTL_SECS: u64 = DEFAULT_CREDENTIAL_CACHE_TTL.as_secs();

/// How password checks are cached, so that publishers connecting once per message do not make
/// password hashing the broker's bottleneck.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Verified (username, password) pairs each core remembers; 0 = verify every CONNECT.
    pub credential_cache_size: usize,
    /// Seconds a remembered verification stays valid.
    pub credential_cache_ttl: u64,
}

impl AuthConfig {
    /// `credential_cache_ttl` as a duration.
    #[must_use]
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.credential_cache_ttl)
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            credential_cache_size: DEFAULT_CREDENTIAL_CACHE_SIZE,
            credential_cache_ttl: DEFAULT_CREDENTIAL_CACHE_TTL_SECS,
        }
    }
}
