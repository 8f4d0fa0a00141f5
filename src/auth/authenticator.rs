//! The CONNECT-time decision: may this user name and password (or their absence) connect on
//! this listener, and as whom? Combines the password file, the listener's
//! `allow_anonymous`, and the core's cache of recently verified credentials.
//!
//! Rules, as Mosquitto's:
//! - no user name: accepted as anonymous when the listener allows anonymous clients,
//!   otherwise refused (a password without a user name, possible in MQTT 5, is ignored);
//! - a user name and a password file: accepted as that user only if the password matches
//!   (a missing password never matches);
//! - a user name and no password file: nothing can verify it, so the client counts as
//!   anonymous for the decision (accepted only where anonymous clients are), but keeps its
//!   user name for the ACL, as Mosquitto does.

use std::sync::Arc;
use std::time::Instant;

use crate::protocol::{ConnectReturnCode, ReasonCode};

use super::cache::CredentialCache;
use super::password_file::PasswordFile;

/// Why a CONNECT was refused by authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    /// No user name (or no way to verify one) on a listener that refuses anonymous clients.
    AnonymousNotAllowed,
    /// The user is unknown or the password does not match.
    BadCredentials,
}

impl AuthRefusal {
    /// The MQTT 3.1.1 CONNACK return code to answer with.
    pub fn return_code(self) -> ConnectReturnCode {
        match self {
            Self::AnonymousNotAllowed => ConnectReturnCode::NotAuthorized,
            Self::BadCredentials => ConnectReturnCode::BadUserNameOrPassword,
        }
    }

    /// The MQTT 5 CONNACK reason code to answer with.
    pub fn reason_code(self) -> ReasonCode {
        self.return_code().into()
    }
}

/// How far [`Authenticator::decide`] got.
#[derive(Debug)]
pub enum Decision {
    /// Decided without hashing.
    Done(Result<Principal, AuthRefusal>),
    /// A password must be hashed first.
    Verify(PasswordCheck),
}

/// A password to check against the password file: a hash computation that takes
/// milliseconds by design, so it carries what it needs to run on another thread.
#[derive(Debug)]
pub struct PasswordCheck {
    passwords: Arc<PasswordFile>,
    username: String,
    password: Option<Vec<u8>>,
}

impl PasswordCheck {
    /// Whether the password matches the user's entry (a missing password never does).
    pub fn run(&self) -> bool {
        let offered = self.password.as_deref().unwrap_or_default();
        self.passwords.verify(&self.username, offered) && self.password.is_some()
    }
}

/// Who a connection was accepted as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No verified user name: the ACL's anonymous rules apply.
    Anonymous,
    /// A user name verified against the password file.
    User(String),
    /// A user name that nothing verified (no password file is configured): the ACL treats it
    /// as that user, as Mosquitto does.
    UnverifiedUser(String),
}

impl Principal {
    /// The user name the ACL should see (`None` for anonymous clients).
    pub fn username(&self) -> Option<&str> {
        match self {
            Self::Anonymous => None,
            Self::User(name) | Self::UnverifiedUser(name) => Some(name),
        }
    }
}

/// Checks CONNECT credentials for one core: the shared password file (if any) plus this
/// core's credential cache. One per core and per distinct password file.
#[derive(Debug)]
pub struct Authenticator {
    /// The loaded password file, shared by every core; `None` when none is configured.
    passwords: Option<Arc<PasswordFile>>,
    /// Pairs this core verified recently.
    cache: CredentialCache,
}

impl Authenticator {
    /// An authenticator over `passwords` (or none) with `cache` in front of it.
    pub fn new(passwords: Option<Arc<PasswordFile>>, cache: CredentialCache) -> Self {
        Self { passwords, cache }
    }

    /// Decides a CONNECT. `allow_anonymous` is the listener's setting; `now` feeds the cache.
    /// The slow path (a full hash computation) runs at most once per (user, password) per
    /// cache TTL. The broker does not call this on its event loop: it uses
    /// [`Authenticator::decide`] and runs the hash elsewhere.
    pub fn authenticate(
        &mut self,
        allow_anonymous: bool,
        username: Option<&str>,
        password: Option<&[u8]>,
        now: Instant,
    ) -> Result<Principal, AuthRefusal> {
        match self.decide(allow_anonymous, username, password, now) {
            Decision::Done(result) => result,
            Decision::Verify(check) => {
                let matched = check.run();
                self.conclude(&check, matched, now)
            }
        }
    }

    /// Decides a CONNECT as far as it can without hashing: anonymous clients, unverifiable
    /// user names and cached pairs are decided at once; anything else needs its password
    /// hashed ([`PasswordCheck::run`], slow: run it off the event loop), then
    /// [`Authenticator::conclude`].
    pub fn decide(
        &mut self,
        allow_anonymous: bool,
        username: Option<&str>,
        password: Option<&[u8]>,
        now: Instant,
    ) -> Decision {
        let Some(username) = username else {
            return Decision::Done(if allow_anonymous {
                Ok(Principal::Anonymous)
            } else {
                Err(AuthRefusal::AnonymousNotAllowed)
            });
        };
        let Some(passwords) = &self.passwords else {
            return Decision::Done(if allow_anonymous {
                Ok(Principal::UnverifiedUser(username.to_owned()))
            } else {
                Err(AuthRefusal::AnonymousNotAllowed)
            });
        };
        if let Some(offered) = password {
            if self.cache.contains(username, offered, now) {
                return Decision::Done(Ok(Principal::User(username.to_owned())));
            }
        }
        // The hash runs even without a password, so the answer takes the same time.
        Decision::Verify(PasswordCheck {
            passwords: passwords.clone(),
            username: username.to_owned(),
            password: password.map(<[u8]>::to_vec),
        })
    }

    /// The outcome of `check`, which [`PasswordCheck::run`] answered with `matched`. A match is
    /// remembered in the cache, unless the password file was replaced meanwhile.
    pub fn conclude(
        &mut self,
        check: &PasswordCheck,
        matched: bool,
        now: Instant,
    ) -> Result<Principal, AuthRefusal> {
        let Some(password) = check.password.as_deref().filter(|_| matched) else {
            return Err(AuthRefusal::BadCredentials);
        };
        let current = self
            .passwords
            .as_ref()
            .is_some_and(|passwords| Arc::ptr_eq(passwords, &check.passwords));
        if current {
            self.cache.insert(&check.username, password, now);
        }
        Ok(Principal::User(check.username.clone()))
    }

    /// Installs a reloaded password file (or removes it) and forgets every cached pair.
    pub fn replace_password_file(&mut self, passwords: Option<Arc<PasswordFile>>) {
        self.passwords = passwords;
        self.cache.clear();
    }

    /// The password file in use.
    pub fn password_file(&self) -> Option<&Arc<PasswordFile>> {
        self.passwords.as_ref()
    }

    /// This core's cache (for metrics: its length and capacity).
    pub fn cache(&self) -> &CredentialCache {
        &self.cache
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::password::PasswordHash;

    fn file(entries: &[(&str, &str)]) -> Arc<PasswordFile> {
        let text: String = entries
            .iter()
            .map(|(user, password)| {
                let hash = PasswordHash::new_pbkdf2_sha512(password.as_bytes(), 101)
                    .expect("hashing works");
                format!("{user}:{hash}\n")
            })
            .collect();
        Arc::new(PasswordFile::parse(&text).expect("valid file"))
    }

    fn authenticator(passwords: Option<Arc<PasswordFile>>) -> Authenticator {
        let cache = CredentialCache::new(8, Duration::from_secs(60)).expect("randomness");
        Authenticator::new(passwords, cache)
    }

    #[test]
    fn anonymous_clients_follow_the_listener_setting() {
        let mut auth = authenticator(Some(file(&[("infra", "secret")])));
        let now = Instant::now();
        assert_eq!(
            auth.authenticate(true, None, None, now),
            Ok(Principal::Anonymous)
        );
        assert_eq!(
            auth.authenticate(true, None, Some(b"ignored"), now),
            Ok(Principal::Anonymous)
        );
        assert_eq!(
            auth.authenticate(false, None, None, now),
            Err(AuthRefusal::AnonymousNotAllowed)
        );
    }

    #[test]
    fn users_need_their_password_even_where_anonymous_is_allowed() {
        let mut auth = authenticator(Some(file(&[("infra", "secret")])));
        let now = Instant::now();
        for allow_anonymous in [true, false] {
            assert_eq!(
                auth.authenticate(allow_anonymous, Some("infra"), Some(b"secret"), now),
                Ok(Principal::User("infra".into()))
            );
            for (user, password) in [
                ("infra", Some(&b"wrong"[..])),
                ("infra", None),
                ("nobody", Some(b"secret")),
            ] {
                assert_eq!(
                    auth.authenticate(allow_anonymous, Some(user), password, now),
                    Err(AuthRefusal::BadCredentials),
                    "{user} {password:?}"
                );
            }
        }
    }

    #[test]
    fn a_check_that_outlives_a_reload_is_not_cached() {
        let mut auth = authenticator(Some(file(&[("infra", "secret")])));
        let now = Instant::now();
        let Decision::Verify(check) = auth.decide(false, Some("infra"), Some(b"secret"), now)
        else {
            panic!("an uncached pair needs hashing");
        };
        auth.replace_password_file(Some(file(&[("infra", "changed")])));
        let matched = check.run();
        assert!(matched, "checked against the file of its CONNECT");
        assert_eq!(
            auth.conclude(&check, matched, now),
            Ok(Principal::User("infra".into()))
        );
        assert!(auth.cache().is_empty(), "not remembered under the new file");
    }

    #[test]
    fn verified_pairs_are_cached_and_reload_clears_them() {
        let mut auth = authenticator(Some(file(&[("infra", "secret")])));
        let now = Instant::now();
        assert!(auth
            .authenticate(false, Some("infra"), Some(b"secret"), now)
            .is_ok());
        assert_eq!(auth.cache().len(), 1);
        assert!(auth.cache.contains("infra", b"secret", now));
        auth.replace_password_file(Some(file(&[("infra", "changed")])));
        assert!(auth.cache().is_empty());
        assert_eq!(
            auth.authenticate(false, Some("infra"), Some(b"secret"), now),
            Err(AuthRefusal::BadCredentials)
        );
        assert!(auth
            .authenticate(false, Some("infra"), Some(b"changed"), now)
            .is_ok());
    }

    #[test]
    fn without_a_password_file_user_names_are_unverified() {
        let mut auth = authenticator(None);
        let now = Instant::now();
        assert_eq!(
            auth.authenticate(true, Some("infra"), None, now),
            Ok(Principal::UnverifiedUser("infra".into()))
        );
        assert_eq!(
            auth.authenticate(false, Some("infra"), Some(b"x"), now),
            Err(AuthRefusal::AnonymousNotAllowed)
        );
    }

    #[test]
    fn refusals_map_to_the_protocol_codes() {
        assert_eq!(
            AuthRefusal::BadCredentials.return_code(),
            ConnectReturnCode::BadUserNameOrPassword
        );
        assert_eq!(
            AuthRefusal::AnonymousNotAllowed.reason_code(),
            ReasonCode::NotAuthorized
        );
        assert_eq!(Principal::User("u".into()).username(), Some("u"));
        assert_eq!(Principal::Anonymous.username(), None);
    }
}
