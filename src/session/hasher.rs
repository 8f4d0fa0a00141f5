//! The hasher of the maps every session carries.
//!
//! `ahash::RandomState` stores its keys in each map (32 bytes), and a broker keeps several maps
//! per session for as many sessions as it has clients, most of them empty. [`SessionHasher`]
//! takes its keys from one random state drawn once per process, so it takes no space in the
//! map while keeping the keys unpredictable to clients.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::OnceLock;

/// Builds ahash hashers from one random state per process; a zero-sized `BuildHasher`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionHasher;

/// The process-wide keys, drawn on first use.
static KEYS: OnceLock<ahash::RandomState> = OnceLock::new();

impl BuildHasher for SessionHasher {
    type Hasher = ahash::AHasher;

    fn build_hasher(&self) -> ahash::AHasher {
        KEYS.get_or_init(ahash::RandomState::new).build_hasher()
    }
}

/// A map held by a session.
pub type SessionMap<K, V> = HashMap<K, V, SessionHasher>;

/// A set held by a session.
pub type SessionSet<T> = HashSet<T, SessionHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_no_space_and_hashes_alike_within_the_process() {
        assert_eq!(std::mem::size_of::<SessionHasher>(), 0);
        assert_eq!(
            SessionHasher.hash_one("client/filter"),
            SessionHasher.hash_one("client/filter")
        );
        let mut map = SessionMap::default();
        map.insert("a/b".to_owned(), 1);
        assert_eq!(map.get("a/b"), Some(&1));
    }
}
