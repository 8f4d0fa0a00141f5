//! A bounded cache of recently verified credentials, so a publisher that connects once per
//! message (the firehose's publishers do) pays for PBKDF2 or argon2 once per TTL instead of
//! once per CONNECT.
//!
//! The cache never stores a user name or a password: its keys are HMAC-SHA256 tags of the
//! pair under a random key drawn when the cache is made, so a memory dump of the cache tells
//! nothing about the secrets (the tags cannot be tested offline without the key), and two
//! caches never share tags. Only pairs that were verified against the password file are
//! recorded, so a wrong password can never hit. Each core owns its own cache (`&mut self`,
//! no locks); [`CredentialCache::clear`] empties it when the password file is reloaded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// Default number of verified pairs a cache keeps.
pub const DEFAULT_CREDENTIAL_CACHE_CAPACITY: usize = 1024;

/// Default time a verified pair stays valid without a new hash computation.
pub const DEFAULT_CREDENTIAL_CACHE_TTL: Duration = Duration::from_secs(60);

/// Length of the random HMAC key (the block size of SHA-256).
const KEY_LEN: usize = 64;

/// An HMAC-SHA256 tag of a (user name, password) pair.
type Tag = [u8; 32];

/// The cache could not be made because the system gave no random key.
#[derive(Debug, Error)]
#[error("cannot draw a random key for the credential cache: {0}")]
pub struct CacheKeyError(String);

/// A bounded, expiring set of (user name, password) pairs known to be valid, keyed by a
/// keyed cryptographic hash of the pair.
pub struct CredentialCache {
    /// The per-cache HMAC, keyed once with random bytes; cloned for each tag.
    mac: Hmac<Sha256>,
    /// When each pair was verified, by tag.
    verified_at: HashMap<Tag, Instant>,
    /// Most pairs kept; 0 disables the cache.
    capacity: usize,
    /// How long a verified pair is trusted.
    ttl: Duration,
}

impl CredentialCache {
    /// A cache of at most `capacity` pairs, each trusted for `ttl` after its verification.
    /// A capacity or TTL of zero makes a cache that never hits.
    pub fn new(capacity: usize, ttl: Duration) -> Result<Self, CacheKeyError> {
        let mut key = [0u8; KEY_LEN];
        getrandom::getrandom(&mut key).map_err(|e| CacheKeyError(e.to_string()))?;
        let mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| CacheKeyError(e.to_string()))?;
        key.fill(0);
        Ok(Self {
            mac,
            verified_at: HashMap::with_capacity(capacity.min(DEFAULT_CREDENTIAL_CACHE_CAPACITY)),
            capacity,
            ttl,
        })
    }

    /// Whether this exact pair was recorded less than the TTL before `now`. An expired entry
    /// is dropped on the way.
    pub fn contains(&mut self, username: &str, password: &[u8], now: Instant) -> bool {
        if self.capacity == 0 || self.verified_at.is_empty() {
            return false;
        }
        let tag = self.tag(username, password);
        match self.verified_at.get(&tag) {
            Some(&at) if self.is_fresh(at, now) => true,
            Some(_) => {
                self.verified_at.remove(&tag);
                false
            }
            None => false,
        }
    }

    /// Records a pair that was just verified against the password file. When the cache is
    /// full, expired entries are dropped first, then the oldest one.
    pub fn insert(&mut self, username: &str, password: &[u8], now: Instant) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        let tag = self.tag(username, password);
        if !self.verified_at.contains_key(&tag) && self.verified_at.len() >= self.capacity {
            self.make_room(now);
        }
        self.verified_at.insert(tag, now);
    }

    /// Forgets every pair: call it when the password file is reloaded, so a changed or
    /// removed password stops working at once.
    pub fn clear(&mut self) {
        self.verified_at.clear();
    }

    /// Number of pairs currently kept (expired ones included until they are dropped).
    pub fn len(&self) -> usize {
        self.verified_at.len()
    }

    /// Whether no pair is kept.
    pub fn is_empty(&self) -> bool {
        self.verified_at.is_empty()
    }

    /// Most pairs kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How long a verified pair is trusted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn is_fresh(&self, verified_at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(verified_at) < self.ttl
    }

    /// Drops expired entries; if none was, drops the oldest. Runs only after a successful
    /// full hash verification, which costs far more than this scan of `capacity` entries.
    fn make_room(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.verified_at
            .retain(|_, &mut at| now.saturating_duration_since(at) < ttl);
        if self.verified_at.len() < self.capacity {
            return;
        }
        let oldest = self
            .verified_at
            .iter()
            .min_by_key(|(_, &at)| at)
            .map(|(tag, _)| *tag);
        if let Some(tag) = oldest {
            self.verified_at.remove(&tag);
        }
    }

    /// HMAC-SHA256 over the user name's length, the user name and the password: the length
    /// prefix keeps ("ab", "c") and ("a", "bc") apart.
    fn tag(&self, username: &str, password: &[u8]) -> Tag {
        let mut mac = self.mac.clone();
        mac.update(&(username.len() as u64).to_be_bytes());
        mac.update(username.as_bytes());
        mac.update(password);
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCache")
            .field("len", &self.verified_at.len())
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    fn cache(capacity: usize) -> CredentialCache {
        CredentialCache::new(capacity, TTL).expect("system randomness")
    }

    #[test]
    fn a_recorded_pair_hits_and_others_miss() {
        let mut cache = cache(4);
        let now = Instant::now();
        assert!(!cache.contains("infra", b"secret", now));
        cache.insert("infra", b"secret", now);
        assert!(cache.contains("infra", b"secret", now));
        assert!(cache.contains("infra", b"secret", now + Duration::from_secs(9)));
        assert!(!cache.contains("other", b"secret", now));
        assert!(!cache.contains("infrasecret", b"", now));
        assert!(!cache.contains("infras", b"ecret", now));
    }

    #[test]
    fn a_wrong_password_never_hits() {
        let mut cache = cache(4);
        let now = Instant::now();
        cache.insert("infra", b"secret", now);
        for wrong in [&b""[..], b"secret ", b"Secret", b"secre", b"secret\0"] {
            assert!(!cache.contains("infra", wrong, now), "{wrong:?}");
        }
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let mut cache = cache(4);
        let now = Instant::now();
        cache.insert("infra", b"secret", now);
        assert!(!cache.contains("infra", b"secret", now + TTL));
        assert!(cache.is_empty(), "the expired entry is dropped on lookup");
        cache.insert("infra", b"secret", now + TTL);
        assert!(cache.contains("infra", b"secret", now + TTL));
    }

    #[test]
    fn the_capacity_bounds_the_cache_and_the_oldest_goes_first() {
        let mut cache = cache(3);
        let start = Instant::now();
        for (i, user) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            cache.insert(user, b"pw", start + Duration::from_millis(i as u64));
            assert!(cache.len() <= 3);
        }
        let now = start + Duration::from_millis(10);
        assert!(!cache.contains("a", b"pw", now));
        assert!(!cache.contains("b", b"pw", now));
        for user in ["c", "d", "e"] {
            assert!(cache.contains(user, b"pw", now), "{user}");
        }
        cache.insert("e", b"pw", now);
        assert_eq!(cache.len(), 3, "re-recording a pair takes no extra room");
    }

    #[test]
    fn expired_entries_make_room_before_live_ones() {
        let mut cache = cache(2);
        let start = Instant::now();
        cache.insert("old", b"pw", start);
        cache.insert("live", b"pw", start + TTL - Duration::from_secs(1));
        cache.insert("new", b"pw", start + TTL);
        assert!(cache.contains("live", b"pw", start + TTL));
        assert!(cache.contains("new", b"pw", start + TTL));
    }

    #[test]
    fn clear_forgets_everything() {
        let mut cache = cache(4);
        let now = Instant::now();
        cache.insert("infra", b"secret", now);
        cache.clear();
        assert!(cache.is_empty());
        assert!(!cache.contains("infra", b"secret", now));
    }

    #[test]
    fn zero_capacity_or_ttl_disables_the_cache() {
        let now = Instant::now();
        let mut none = cache(0);
        none.insert("infra", b"secret", now);
        assert!(!none.contains("infra", b"secret", now));
        let mut instant = CredentialCache::new(4, Duration::ZERO).expect("randomness");
        instant.insert("infra", b"secret", now);
        assert!(!instant.contains("infra", b"secret", now));
    }

    #[test]
    fn two_caches_use_different_keys() {
        let a = cache(1);
        let b = cache(1);
        assert_ne!(a.tag("infra", b"secret"), b.tag("infra", b"secret"));
    }
}
