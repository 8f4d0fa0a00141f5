//! Authentication and authorisation, free of connection I/O: who may connect (a password
//! file compatible with `mosquitto_passwd`, `allow_anonymous`, a cache of recently verified
//! credentials) and what they may do (an ACL file in Mosquitto's format).
//!
//! How the connection layer uses it:
//!
//! - **Start and reload** (SIGHUP): [`PasswordFile::load`] and [`Acl::load`] (or
//!   [`Acl::allow_all`] without an ACL file) build immutable tables, shared by every core
//!   behind an `Arc`. A load error keeps the previous tables. Each core owns an
//!   [`Authenticator`] (the shared password file plus its own [`CredentialCache`]);
//!   [`Authenticator::replace_password_file`] installs a reloaded file and clears the cache.
//! - **CONNECT**: [`Authenticator::authenticate`] with the listener's `allow_anonymous`; a
//!   refusal maps to a CONNACK code ([`AuthRefusal::return_code`] /
//!   [`AuthRefusal::reason_code`]). On success build the connection's [`ClientIdentity`]
//!   from [`Principal::username`] and the client id.
//! - **SUBSCRIBE**: [`Acl::subscription_access`] per filter; `Refused` gets the failure code,
//!   `Readable` needs no check per message, `CheckEachMessage` does.
//! - **PUBLISH** (and a will when it is sent): [`Acl::can_write`]; a denied message is
//!   dropped (acknowledged normally in 3.1.1, "not authorized" for QoS > 0 in MQTT 5).
//! - **Delivery** (retained messages included): [`Acl::can_read`], unless the subscription
//!   was `Readable`.

mod acl;
mod authenticator;
mod cache;
pub mod passwd;
mod password;
mod password_file;
mod rule_filter;

pub use acl::{Acl, AclFileError, AclLineError, AclParseError, ClientIdentity, SubscriptionAccess};
pub use authenticator::{AuthRefusal, Authenticator, Decision, PasswordCheck, Principal};
pub use cache::{
    CacheKeyError, CredentialCache, DEFAULT_CREDENTIAL_CACHE_CAPACITY, DEFAULT_CREDENTIAL_CACHE_TTL,
};
pub use password::{
    PasswordHash, PasswordHashError, MOSQUITTO_SALT_LEN, PBKDF2_DEFAULT_ITERATIONS,
};
pub use password_file::{
    PasswordFile, PasswordFileError, PasswordLineError, PasswordParseError, PasswordTextError,
};
