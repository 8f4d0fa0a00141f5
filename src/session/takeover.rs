//! Who holds each session across cores, and how a session moves when its client connects
//! again, on this core or another.
//!
//! Every client id has an owner core (by hash) that keeps one [`Directory`] entry: the
//! connection that last claimed the session. A new connection sends `Claim` to the owner; the
//! owner records it and sends `Evict` to the core of the previous connection, which closes that
//! connection (reason: session taken over), takes the session out of its trie and sends it in a
//! `Handover` to the new connection's core. Messages between two cores are ordered, and the
//! owner handles claims one at a time, so two racing connections are serialised: the later
//! claim evicts the earlier even while the session is still on its way to it (the session is
//! then forwarded on arrival).

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;

use super::SessionState;
use crate::connection::{CloseReason, ConnHandle};
use crate::shard::{
    Claimed, ConnId, PendingConnect, SessionKey, SessionSlot, Shard, ShardId, ShardMsg, ShardState,
};

/// Longest a CONNECT waits for its session to arrive from another core.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(10);

/// For the client ids this core owns: the connection that last claimed each one's session.
#[derive(Default)]
pub struct Directory {
    holders: AHashMap<Arc<str>, ConnId>,
}

impl Directory {
    /// Client ids with a session somewhere.
    pub fn len(&self) -> usize {
        self.holders.len()
    }

    /// Whether no session is known.
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }
}

impl Shard {
    /// Claims `client_id`'s session for connection `conn` of this core and waits for the
    /// outcome. `None` when no answer came in time.
    pub async fn claim_session(
        &self,
        client_id: Arc<str>,
        conn: ConnId,
        clean_session: bool,
    ) -> Option<Claimed> {
        let pending = Rc::new(PendingConnect::default());
        self.state
            .borrow_mut()
            .pending
            .insert(conn, pending.clone());
        let owner = self.owner_of(client_id.as_bytes());
        self.route_session_message(
            owner,
            ShardMsg::Claim {
                client_id,
                conn,
                clean_session,
            },
        );
        futures_lite::future::or(pending.ready.notified(), async {
            glommio::timer::sleep(CLAIM_TIMEOUT).await;
        })
        .await;
        let mut state = self.state.borrow_mut();
        state.pending.remove(&conn);
        state.forwards.remove(&conn);
        drop(state);
        let outcome = pending.result.borrow_mut().take();
        outcome
    }

    fn route_session_message(&self, to: ShardId, msg: ShardMsg) {
        if to == self.id {
            self.on_session_message(msg);
        } else {
            self.peers.post(to, msg);
        }
    }

    /// Handles the session-directory messages (`Claim`, `Evict`, `Handover`, `Released`).
    pub fn on_session_message(&self, msg: ShardMsg) {
        match msg {
            ShardMsg::Claim {
                client_id,
                conn,
                clean_session,
            } => {
                let previous = self
                    .state
                    .borrow_mut()
                    .directory
                    .holders
                    .insert(client_id.clone(), conn);
                let (to, msg) = match previous {
                    None => (
                        conn.shard(),
                        ShardMsg::Handover {
                            client_id,
                            to: conn,
                            session: None,
                        },
                    ),
                    Some(from) => (
                        from.shard(),
                        ShardMsg::Evict {
                            client_id,
                            from,
                            to: conn,
                            clean_session,
                        },
                    ),
                };
                self.route_session_message(to, msg);
            }
            ShardMsg::Evict {
                client_id,
                from,
                to,
                clean_session,
            } => self.on_evict(client_id, from, to, clean_session),
            ShardMsg::Handover {
                client_id,
                to,
                session,
            } => self.on_handover(client_id, to, session),
            ShardMsg::Released { client_id, conn } => {
                let mut state = self.state.borrow_mut();
                if state.directory.holders.get(&client_id) == Some(&conn) {
                    state.directory.holders.remove(&client_id);
                }
            }
            other => tracing::error!(?other, "not a session message"),
        }
    }

    fn on_evict(&self, client_id: Arc<str>, from: ConnId, to: ConnId, clean_session: bool) {
        let mut state = self.state.borrow_mut();
        if let Some(pending) = state.pending.get(&from).cloned() {
            // The previous claim is still waiting here: forward its session when it comes, or
            // now if it already came and the connection has not picked it up yet.
            let arrived = pending.result.borrow_mut().replace(Claimed::Superseded);
            match arrived {
                Some(Claimed::Session(session)) => {
                    pending.ready.notify();
                    drop(state);
                    self.hand_over(client_id, to, session, clean_session);
                }
                _ => {
                    *pending.result.borrow_mut() = None;
                    state.forwards.insert(from, (to, clean_session));
                }
            }
            return;
        }
        let session = self.take_session(&mut state, &client_id);
        drop(state);
        self.hand_over(client_id, to, session, clean_session);
    }

    /// Sends `client_id`'s session to connection `to`. A clean-session claimant gets none, and
    /// nor does anyone get a clean session: it ended with its connection [MQTT-3.1.2-6].
    fn hand_over(
        &self,
        client_id: Arc<str>,
        to: ConnId,
        session: Option<Box<SessionState>>,
        clean_session: bool,
    ) {
        let session = session.filter(|session| !clean_session && !session.clean_session);
        self.route_session_message(
            to.shard(),
            ShardMsg::Handover {
                client_id,
                to,
                session,
            },
        );
    }

    fn on_handover(&self, client_id: Arc<str>, to: ConnId, session: Option<Box<SessionState>>) {
        let mut state = self.state.borrow_mut();
        if let Some((next, clean_session)) = state.forwards.remove(&to) {
            if let Some(pending) = state.pending.get(&to) {
                *pending.result.borrow_mut() = Some(Claimed::Superseded);
                pending.ready.notify();
            }
            drop(state);
            self.hand_over(client_id, next, session, clean_session);
            return;
        }
        if let Some(pending) = state.pending.get(&to) {
            *pending.result.borrow_mut() = Some(Claimed::Session(session));
            pending.ready.notify();
            return;
        }
        // The connection stopped waiting: keep a persistent session here, offline, so that
        // nothing it held is lost; anything else ends now.
        match session {
            Some(session) if !session.clean_session => {
                let key = state.new_session_key();
                let now = Instant::now();
                state.sessions.insert(
                    key,
                    SessionSlot {
                        state: *session,
                        conn: None,
                        last_conn: to,
                        disconnected_at: Some(now),
                    },
                );
                state.by_client_id.insert(client_id, key);
                state.offline.push_back((key, now));
                state.offline_count += 1;
                self.attach_subscriptions(&mut state, key);
            }
            _ => {
                drop(state);
                self.release(client_id, to);
            }
        }
    }

    /// Tells the owner of `client_id` that the session last held by `conn` is gone.
    fn release(&self, client_id: Arc<str>, conn: ConnId) {
        let owner = self.owner_of(client_id.as_bytes());
        self.route_session_message(owner, ShardMsg::Released { client_id, conn });
    }

    /// Removes `client_id`'s session from this core (closing its connection, if any) and
    /// returns it.
    fn take_session(
        &self,
        state: &mut ShardState,
        client_id: &Arc<str>,
    ) -> Option<Box<SessionState>> {
        let key = *state.by_client_id.get(client_id)?;
        self.detach_subscriptions(state, key);
        state.by_client_id.remove(client_id);
        let slot = state.sessions.remove(&key)?;
        if slot.disconnected_at.is_some() {
            state.offline_count -= 1;
        }
        if let Some(conn) = &slot.conn {
            conn.close(CloseReason::TakenOver);
        }
        Some(Box::new(slot.state))
    }

    /// Binds a session to connection `conn`: the claimed one when the client asked to keep
    /// its session, else a new one. Returns the session's key and the CONNACK's
    /// `session present` flag.
    pub fn install_session(
        &self,
        conn: &Rc<ConnHandle>,
        clean_session: bool,
        claimed: Option<Box<SessionState>>,
    ) -> (SessionKey, bool) {
        let (session, present) = match claimed {
            Some(session) if !clean_session && !session.clean_session => (*session, true),
            _ => (
                SessionState::new(conn.client_id.clone(), clean_session, self.flow_limits()),
                false,
            ),
        };
        let mut state = self.state.borrow_mut();
        let key = state.new_session_key();
        state.sessions.insert(
            key,
            SessionSlot {
                state: session,
                conn: Some(conn.clone()),
                last_conn: conn.id,
                disconnected_at: None,
            },
        );
        state.by_client_id.insert(conn.client_id.clone(), key);
        self.attach_subscriptions(&mut state, key);
        (key, present)
    }

    /// Re-sends what was in flight and releases queued messages, after the CONNACK.
    pub fn resume_session(&self, key: SessionKey) {
        let mut state = self.state.borrow_mut();
        let Some(slot) = state.sessions.get_mut(&key) else {
            return;
        };
        let Some(conn) = slot.conn.clone() else {
            return;
        };
        let mut actions = Vec::new();
        slot.state.outgoing.resume(&mut actions);
        for action in actions {
            conn.send_flow_action(action, None);
        }
    }

    /// Unbinds connection `conn` from session `key` when the connection ends: a clean session
    /// ends with it, a persistent one waits offline for its client.
    pub fn detach_connection(&self, key: SessionKey, conn: ConnId) {
        let mut state = self.state.borrow_mut();
        let Some(slot) = state.sessions.get_mut(&key) else {
            return;
        };
        if slot.last_conn != conn {
            return;
        }
        if slot.state.clean_session {
            let client_id = slot.state.client_id.clone();
            self.remove_session(&mut state, key);
            drop(state);
            self.release(client_id, conn);
            return;
        }
        let now = Instant::now();
        slot.conn = None;
        slot.disconnected_at = Some(now);
        state.offline.push_back((key, now));
        state.offline_count += 1;
        let max_offline = self.config.session.max_offline_sessions;
        let mut evicted = Vec::new();
        while state.offline_count > max_offline {
            match self.pop_offline(&mut state) {
                Some(released) => evicted.push(released),
                None => break,
            }
        }
        drop(state);
        for (client_id, last_conn) in evicted {
            tracing::warn!(%client_id, "offline session dropped: max_offline_sessions reached");
            self.release(client_id, last_conn);
        }
    }

    /// Ends the offline sessions older than `persistent_client_expiration`; run periodically.
    pub fn expire_offline_sessions(&self) {
        let expiration = self.config.session.persistent_client_expiration;
        let mut expired = Vec::new();
        {
            let mut state = self.state.borrow_mut();
            while let Some(&(key, since)) = state.offline.front() {
                let current = state
                    .sessions
                    .get(&key)
                    .is_some_and(|slot| slot.disconnected_at == Some(since));
                if !current {
                    // The session came back or ended since: a stale entry.
                    state.offline.pop_front();
                    continue;
                }
                if expiration == 0 || since.elapsed().as_secs() < expiration {
                    break;
                }
                // The front entry is current and expired: pop_offline removes exactly it.
                if let Some(released) = self.pop_offline(&mut state) {
                    expired.push(released);
                }
            }
            // Entries of sessions that came back stay in the queue until they reach its
            // front; keep the queue proportional to the sessions really offline.
            if state.offline.len() > 2 * state.offline_count + 64 {
                let ShardState {
                    offline, sessions, ..
                } = &mut *state;
                offline.retain(|(key, since)| {
                    sessions
                        .get(key)
                        .is_some_and(|slot| slot.disconnected_at == Some(*since))
                });
            }
        }
        for (client_id, last_conn) in expired {
            tracing::info!(%client_id, "offline session expired");
            self.release(client_id, last_conn);
        }
    }

    /// Removes the oldest offline session (skipping stale queue entries); returns what the
    /// owner must be told.
    fn pop_offline(&self, state: &mut ShardState) -> Option<(Arc<str>, ConnId)> {
        while let Some((key, since)) = state.offline.pop_front() {
            let current = state
                .sessions
                .get(&key)
                .is_some_and(|slot| slot.disconnected_at == Some(since));
            if !current {
                continue;
            }
            let slot = self.remove_session(state, key)?;
            state.offline_count -= 1;
            return Some((slot.state.client_id, slot.last_conn));
        }
        None
    }

    fn remove_session(&self, state: &mut ShardState, key: SessionKey) -> Option<SessionSlot> {
        self.detach_subscriptions(state, key);
        let slot = state.sessions.remove(&key)?;
        if state.by_client_id.get(&slot.state.client_id) == Some(&key) {
            state.by_client_id.remove(&slot.state.client_id);
        }
        Some(slot)
    }
}
