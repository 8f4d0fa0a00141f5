//! What one core keeps for one listener: how to turn an accepted socket into a transport,
//! the listener's share of connection limits, and the access rules of its clients (who may
//! connect, what each may publish, subscribe to and receive).

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use super::files::ListenerFiles;
use super::per_ip::{PerIpGuard, PerIpLimits, PerIpRefusal};
use crate::auth::{
    Acl, AuthRefusal, Authenticator, CacheKeyError, ClientIdentity, CredentialCache, Decision,
    Principal, SubscriptionAccess,
};
use crate::config::{AuthConfig, ListenerConfig, ListenerProtocol};
use crate::connection::{ConnectionSlots, SlotGuard};
use crate::topic::{TopicFilter, TopicName};
use crate::transport::{Acceptor, WebSocketSettings};

/// Why a new connection may not stay, known before its CONNECT is read; it is answered with
/// a refusing CONNACK once the CONNECT arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Within every limit.
    Admitted,
    /// The listener holds `max_connections` already.
    ListenerFull,
    /// A per-address limit.
    PerIp(PerIpRefusal),
}

/// What a connection holds of its listener's limits for its lifetime; each part is given back
/// when dropped.
#[derive(Debug)]
pub struct ListenerTicket {
    /// The listener-wide slot.
    pub slot: SlotGuard,
    /// The per-address count, on listeners that limit it (boxed: most do not, and every
    /// connection's task holds its ticket).
    pub per_ip: Option<Box<PerIpGuard>>,
}

/// One listener as one core serves it.
pub struct ListenerState {
    /// Position in `config.listener` (the same on every core).
    pub index: usize,
    /// The listener's configuration.
    pub config: ListenerConfig,
    /// Turns an accepted socket into this listener's transport.
    pub acceptor: Acceptor,
    slots: ConnectionSlots,
    per_ip: Option<Arc<PerIpLimits>>,
    authenticator: RefCell<Authenticator>,
    acl: RefCell<Option<Arc<Acl>>>,
}

impl ListenerState {
    /// The state of listener `index` on one core, from its configuration, its loaded files,
    /// the listener-wide connection count and per-address table (shared by every core).
    pub fn new(
        index: usize,
        config: &ListenerConfig,
        auth: &AuthConfig,
        files: &ListenerFiles,
        max_packet_size: usize,
        open: Arc<AtomicUsize>,
        per_ip: Option<Arc<PerIpLimits>>,
    ) -> Result<Self, CacheKeyError> {
        let websocket = || WebSocketSettings {
            path: config.websocket_path.clone(),
            allowed_origins: config.websocket_origins.clone(),
        };
        let acceptor = match (config.protocol, &files.tls) {
            (ListenerProtocol::MqttTls, Some(tls)) => Acceptor::tls(tls.clone()),
            (ListenerProtocol::SecureWebSocket, Some(tls)) => {
                Acceptor::secure_websocket(tls.clone(), websocket())
            }
            (ListenerProtocol::WebSocket, _) => Acceptor::websocket(websocket()),
            // A TLS listener always has its files (the load refuses to start otherwise).
            _ => Acceptor::plain(),
        }
        // A WebSocket message is held whole before MQTT reads it: no larger than a packet.
        .with_max_websocket_message(max_packet_size);
        let cache = CredentialCache::new(auth.credential_cache_size, auth.cache_ttl())?;
        Ok(Self {
            index,
            config: config.clone(),
            acceptor,
            slots: ConnectionSlots {
                max: config.max_connections,
                open,
            },
            per_ip,
            authenticator: RefCell::new(Authenticator::new(files.passwords.clone(), cache)),
            acl: RefCell::new(files.acl.clone()),
        })
    }

    /// Counts a connection just accepted from `ip` against the listener's limits; returns
    /// what it holds of them and whether it may stay.
    pub fn admit(&self, ip: IpAddr) -> (ListenerTicket, Admission) {
        let (slot, over_limit) = self.slots.acquire();
        let (per_ip, refusal) = match &self.per_ip {
            Some(limits) => {
                let (guard, refusal) = limits.admit(ip, Instant::now());
                (Some(Box::new(guard)), refusal)
            }
            None => (None, None),
        };
        let admission = match (over_limit, refusal) {
            (true, _) => Admission::ListenerFull,
            (false, Some(refusal)) => Admission::PerIp(refusal),
            (false, None) => Admission::Admitted,
        };
        (ListenerTicket { slot, per_ip }, admission)
    }

    /// Decides a CONNECT's credentials: who the client is for the ACL, or why it is refused.
    /// `certificate_name` is the Common Name of a verified client certificate. A password that
    /// must be hashed is checked on the core's blocking-task thread, so that a slow hash (or
    /// a flood of wrong passwords) never stalls the other clients of the core.
    pub async fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
        certificate_name: Option<&str>,
    ) -> Result<Option<ClientIdentity>, AuthRefusal> {
        let principal = if self.config.use_identity_as_username {
            // The certificate is the credential; the password is not checked.
            match certificate_name {
                Some(name) => Principal::User(name.to_owned()),
                None => return Err(AuthRefusal::AnonymousNotAllowed),
            }
        } else {
            let decision = self.authenticator.borrow_mut().decide(
                self.config.allow_anonymous,
                username,
                password,
                Instant::now(),
            );
            match decision {
                Decision::Done(decided) => decided?,
                Decision::Verify(check) => {
                    let (check, matched) = glommio::executor()
                        .spawn_blocking(move || {
                            let matched = check.run();
                            (check, matched)
                        })
                        .await;
                    self.authenticator
                        .borrow_mut()
                        .conclude(&check, matched, Instant::now())?
                }
            }
        };
        if self.acl.borrow().is_none() {
            // Without an ACL file nothing is ever checked: no identity to keep.
            return Ok(None);
        }
        Ok(Some(match principal.username() {
            Some(name) => ClientIdentity::user(name, client_id),
            None => ClientIdentity::anonymous(client_id),
        }))
    }

    /// Runs `check` with the ACL in force (`None`: the listener has no ACL file).
    pub fn with_acl<T>(&self, check: impl FnOnce(Option<&Acl>) -> T) -> T {
        check(self.acl.borrow().as_deref())
    }

    /// Installs reloaded files: new connections see the new certificates, new CONNECTs the
    /// new passwords (the credential cache is emptied), new operations the new ACL.
    pub fn apply(&self, files: &ListenerFiles) {
        self.authenticator
            .borrow_mut()
            .replace_password_file(files.passwords.clone());
        *self.acl.borrow_mut() = files.acl.clone();
        if let Some(tls) = &files.tls {
            self.acceptor.replace_tls_config(tls.clone());
        }
    }
}

/// Who a connected client is for its listener's ACL, and that listener. Only clients of
/// listeners with an ACL file have one; everyone else may do everything, and pays nothing.
pub struct ClientAccess {
    /// User name and client id, as the ACL's rules and patterns see them.
    pub identity: ClientIdentity,
    /// The listener the client connected through, whose ACL (reloadable) applies.
    pub listener: Rc<ListenerState>,
}

impl ClientAccess {
    /// Whether the client may publish on `topic`.
    pub fn can_write(&self, topic: &TopicName) -> bool {
        self.listener
            .with_acl(|acl| acl.map_or(true, |acl| acl.can_write(&self.identity, topic)))
    }

    /// Whether the client may receive a message on `topic`.
    pub fn can_read(&self, topic: &TopicName) -> bool {
        self.listener
            .with_acl(|acl| acl.map_or(true, |acl| acl.can_read(&self.identity, topic)))
    }

    /// What the ACL says about the client subscribing to `filter` (the filter of a shared
    /// subscription is checked without its `$share/<group>/` prefix).
    pub fn subscription_access(&self, filter: &TopicFilter) -> SubscriptionAccess {
        self.listener.with_acl(|acl| {
            let Some(acl) = acl else {
                return SubscriptionAccess::Readable;
            };
            match crate::router::shared_filter(filter) {
                Some(Ok(inner)) => acl.subscription_access(&self.identity, &inner),
                Some(Err(_)) => SubscriptionAccess::Refused,
                None => acl.subscription_access(&self.identity, filter),
            }
        })
    }
}
