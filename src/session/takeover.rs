//! Who holds each session across cores, and what happens when its client connects again.
//!
//! A session never moves between cores: its subscriptions stay in its core's trie from the
//! first SUBSCRIBE to the session's end, so no message published meanwhile can miss it. When a
//! client reconnects on another core, its *connection* moves instead: the new core hands the
//! socket (and the bytes already read from it) to the session's core, which adopts it.
//!
//! Every client id has an owner core (by hash) whose [`Directory`] records which core holds
//! the session and serialises connections claiming it, one at a time:
//! 1. `Claim` (new connection's core to the owner). If a claim for the id is already under
//!    way, the new one waits (the one waiting before it, if any, is superseded).
//! 2. With no session anywhere, the owner answers `Grant(New)`. Otherwise it sends `Evict` to
//!    the holder, which closes the old connection (reason: session taken over) and either ends
//!    the session (a clean one, or a clean-session claimant) and answers `Grant(New)`, or
//!    reserves it for the claimant and answers `Grant(Resume(holder))`.
//! 3. The claimant installs a new session, resumes a reserved one on its own core, or sends
//!    its socket to the holder in `Adopt`. Whoever binds the session answers the owner with
//!    `Settled`, which ends the claim and starts the next one waiting.
//!
//! A clean-session CONNECT (3.1.1 clean session, MQTT 5 clean start) cannot resume anything, so
//! it does not wait for that round trip, which is most of a connect's latency when the owner is
//! another core: its core installs a new session at once and sends an *eager* `Claim`. The
//! owner records the new holder, or first has the old holder end the old session (`Evict` with
//! `eager_over`, answered by `Settled` from the holder). A later claim that supersedes an eager
//! one closes that connection. For a moment two connections with the same client id may then
//! run at once; the later one always wins, as [MQTT-3.1.4-2] asks.

use std::cmp::Reverse;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;

use super::{SessionState, NEVER_EXPIRES};
use crate::connection::{CloseReason, ConnHandle};
use crate::listener::ClientAccess;
use crate::router::MemberState;
use crate::shard::{
    ConnId, Counters, Grant, PendingConnect, SessionKey, SessionSlot, Shard, ShardId, ShardMsg,
    ShardState,
};

/// Longest a CONNECT waits for its claim on the session to be granted.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(10);

/// What the owner core knows of one client id: an entry has a holder, a claim under way, or
/// both. The directory keeps one per session, on a core serving thousands of them, and most
/// have no claim under way: a held entry takes 16 bytes, a claim is boxed.
enum Entry {
    /// The session is held by core `shard` (a core number, which fits in 32 bits), bound
    /// last by connection `conn`, and no claim is under way.
    Held { shard: u32, conn: ConnId },
    /// A claim is under way.
    Claiming(Box<Claiming>),
}

impl Entry {
    /// The entry of a session held by `shard`, bound last by `conn`.
    #[allow(clippy::cast_possible_truncation)] // core numbers are far below 2^32
    fn held(shard: ShardId, conn: ConnId) -> Self {
        Self::Held {
            shard: shard as u32,
            conn,
        }
    }

    /// The core holding the session and the connection that last bound it.
    fn holder(&self) -> Option<(ShardId, ConnId)> {
        match self {
            Self::Held { shard, conn } => Some((*shard as ShardId, *conn)),
            Self::Claiming(claiming) => claiming.holder,
        }
    }
}

/// A claim under way on a client id's session, and where the session was when it began.
struct Claiming {
    /// The core holding the session and the connection that last bound it, if any.
    holder: Option<(ShardId, ConnId)>,
    claim: Claim,
}

/// A claim under way on a client id's session, and the one waiting for it.
struct Claim {
    /// The connection claiming.
    busy: ConnId,
    /// The claim waiting for it (a later one supersedes it): connection, clean session, eager.
    queued: Option<(ConnId, bool, bool)>,
}

/// For the client ids this core owns (by hash): where each session is, and the claims on it.
/// An entry lives as long as its session or a claim on it.
#[derive(Default)]
pub struct Directory {
    entries: AHashMap<Arc<str>, Entry>,
}

impl Directory {
    /// Client ids with a session or a claim.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no client id is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Shard {
    /// Claims `client_id`'s session for connection `conn` of this core and waits for the
    /// outcome; `None` when none came in time.
    pub async fn claim_session(
        &self,
        client_id: Arc<str>,
        conn: ConnId,
        clean_session: bool,
    ) -> Option<Grant> {
        let pending = Rc::new(PendingConnect::default());
        self.state
            .borrow_mut()
            .pending
            .insert(conn, pending.clone());
        self.send_claim(client_id, conn, clean_session, false);
        futures_lite::future::or(pending.ready.notified(), async {
            glommio::timer::sleep(CLAIM_TIMEOUT).await;
        })
        .await;
        self.state.borrow_mut().pending.remove(&conn);
        let outcome = pending.result.borrow_mut().take();
        outcome
    }

    /// Claims `client_id`'s session for a clean-session connection `conn` of this core without
    /// waiting: the caller installs a new session at once (`install_session` with `eager`),
    /// and the owner ends the old session, if any, on its own time.
    pub fn claim_session_eagerly(&self, client_id: Arc<str>, conn: ConnId) {
        self.send_claim(client_id, conn, true, true);
    }

    /// Sends connection `conn`'s claim on `client_id` to the id's owner core.
    fn send_claim(&self, client_id: Arc<str>, conn: ConnId, clean_session: bool, eager: bool) {
        let owner = self.owner_of(client_id.as_bytes());
        let claim = ShardMsg::Claim {
            client_id,
            conn,
            clean_session,
            eager,
        };
        self.route_session_message(owner, claim);
    }

    fn route_session_message(&self, to: ShardId, msg: ShardMsg) {
        if to == self.id {
            self.on_session_message(msg);
        } else {
            self.peers.post(to, msg);
        }
    }

    fn tell_owner(&self, client_id: &Arc<str>, msg: ShardMsg) {
        let owner = self.owner_of(client_id.as_bytes());
        self.route_session_message(owner, msg);
    }

    /// Handles the session-directory messages.
    pub fn on_session_message(&self, msg: ShardMsg) {
        match msg {
            ShardMsg::Claim {
                client_id,
                conn,
                clean_session,
                eager,
            } => self.on_claim(client_id, conn, clean_session, eager),
            ShardMsg::Evict {
                client_id,
                to,
                clean_session,
                eager_over,
            } => match eager_over {
                Some(old) => self.on_eager_evict(client_id, to, old),
                None => self.on_evict(client_id, to, clean_session),
            },
            ShardMsg::Grant {
                client_id,
                to,
                grant,
            } => self.on_grant(client_id, to, grant),
            ShardMsg::Abandon { client_id, conn } => self.unreserve(client_id, conn),
            ShardMsg::Settled {
                client_id,
                conn,
                holder,
            } => self.on_settled(client_id, conn, holder),
            ShardMsg::Released { client_id, conn } => {
                let mut state = self.state.borrow_mut();
                let ends = state.directory.entries.get(&client_id).is_some_and(
                    |entry| matches!(entry, Entry::Held { conn: held, .. } if *held == conn),
                );
                if ends {
                    state.directory.entries.remove(&client_id);
                }
            }
            ShardMsg::Restored { client_id, conn } => self.on_restored(client_id, conn),
            other => tracing::error!(?other, "not a session message"),
        }
    }

    /// Owner: a session restored at start-up is held by `conn.shard()`. Should a claim or
    /// another restored session have come first, the restored one is ended there (an eager
    /// eviction, whose `Settled` the owner then ignores).
    fn on_restored(&self, client_id: Arc<str>, conn: ConnId) {
        let mut state = self.state.borrow_mut();
        let entries = &mut state.directory.entries;
        if !entries.contains_key(&client_id) {
            entries.insert(client_id, Entry::held(conn.shard(), conn));
            return;
        }
        drop(state);
        self.route_session_message(
            conn.shard(),
            ShardMsg::Evict {
                client_id,
                to: conn,
                clean_session: true,
                eager_over: Some(conn),
            },
        );
    }

    /// Owner: a connection wants the session; start its claim or queue it behind the one under way.
    fn on_claim(&self, client_id: Arc<str>, conn: ConnId, clean_session: bool, eager: bool) {
        let mut state = self.state.borrow_mut();
        let entries = &mut state.directory.entries;
        if let Some(Entry::Claiming(claiming)) = entries.get_mut(&client_id) {
            let superseded = claiming.claim.queued.replace((conn, clean_session, eager));
            drop(state);
            if let Some((old, _, _)) = superseded {
                self.grant(client_id, old, Grant::Superseded);
            }
            return;
        }
        let holder = entries.get(&client_id).and_then(Entry::holder);
        let claiming = Claiming {
            holder,
            claim: Claim {
                busy: conn,
                queued: None,
            },
        };
        entries.insert(client_id.clone(), Entry::Claiming(Box::new(claiming)));
        drop(state);
        self.start_claim(client_id, conn, clean_session, eager, holder);
    }

    fn start_claim(
        &self,
        client_id: Arc<str>,
        conn: ConnId,
        clean_session: bool,
        eager: bool,
        holder: Option<(ShardId, ConnId)>,
    ) {
        match holder {
            // An eager claimant already holds its new session.
            None if eager => self.on_settled(client_id, conn, Some(conn.shard())),
            None => self.grant(client_id, conn, Grant::New),
            Some((shard, old)) => self.route_session_message(
                shard,
                ShardMsg::Evict {
                    client_id,
                    to: conn,
                    clean_session,
                    eager_over: eager.then_some(old),
                },
            ),
        }
    }

    fn grant(&self, client_id: Arc<str>, to: ConnId, grant: Grant) {
        self.route_session_message(
            to.shard(),
            ShardMsg::Grant {
                client_id,
                to,
                grant,
            },
        );
    }

    /// Holder: close the session's connection, then end the session or reserve it for `to`.
    fn on_evict(&self, client_id: Arc<str>, to: ConnId, clean_session: bool) {
        let mut state = self.state.borrow_mut();
        let Some(&key) = state.by_client_id.get(&client_id) else {
            drop(state);
            self.grant(client_id, to, Grant::New);
            return;
        };
        let Some(slot) = state.sessions.get_mut(&key) else {
            drop(state);
            self.grant(client_id, to, Grant::New);
            return;
        };
        if let Some(conn) = slot.conn.take() {
            conn.close(CloseReason::TakenOver);
        }
        let was_offline = slot.disconnected_at.take().is_some();
        // A clean session ends with its connection, and a clean claimant discards the old
        // session [MQTT-3.1.2-6].
        let ends = clean_session || slot.state.ends_with_connection();
        slot.last_conn = to;
        if was_offline {
            state.offline_count -= 1;
        }
        let grant = if ends {
            self.remove_session(&mut state, key);
            Grant::New
        } else {
            Grant::Resume(self.id)
        };
        drop(state);
        self.grant(client_id, to, grant);
    }

    /// Holder: an eager claim by `to` replaces the session that connection `old` held: close
    /// that connection and end its session (unless it already ended, or `to`'s own new session
    /// replaced it on this core), then tell the owner where the session now is.
    fn on_eager_evict(&self, client_id: Arc<str>, to: ConnId, old: ConnId) {
        let mut state = self.state.borrow_mut();
        let held = state.by_client_id.get(&client_id).copied().filter(|key| {
            state
                .sessions
                .get(key)
                .is_some_and(|slot| slot.last_conn == old)
        });
        if let Some(key) = held {
            if let Some(slot) = state.sessions.get_mut(&key) {
                if let Some(conn) = slot.conn.take() {
                    conn.close(CloseReason::TakenOver);
                }
            }
            self.remove_session(&mut state, key);
        }
        drop(state);
        self.tell_owner(
            &client_id.clone(),
            ShardMsg::Settled {
                client_id,
                conn: to,
                holder: Some(to.shard()),
            },
        );
    }

    /// Claimant's core: the claim's outcome, for the connection waiting for it (if it still is).
    fn on_grant(&self, client_id: Arc<str>, to: ConnId, grant: Grant) {
        let pending = self.state.borrow().pending.get(&to).cloned();
        if let Some(pending) = pending {
            *pending.result.borrow_mut() = Some(grant);
            pending.ready.notify();
            return;
        }
        // The connection stopped waiting: give back what was granted so the claim ends.
        match grant {
            Grant::New => self.tell_owner(
                &client_id.clone(),
                ShardMsg::Settled {
                    client_id,
                    conn: to,
                    holder: None,
                },
            ),
            Grant::Resume(holder) if holder == self.id => self.unreserve(client_id, to),
            Grant::Resume(holder) => self.peers.post(
                holder,
                ShardMsg::Abandon {
                    client_id,
                    conn: to,
                },
            ),
            // An eager claimant runs without waiting: a later claim closes it.
            Grant::Superseded => {
                let superseded = self.connections.borrow().get(&to).cloned();
                if let Some(conn) = superseded {
                    conn.close(CloseReason::TakenOver);
                }
            }
        }
    }

    /// Holder: a session reserved for `conn` will not be bound after all; it waits offline.
    fn unreserve(&self, client_id: Arc<str>, conn: ConnId) {
        let mut state = self.state.borrow_mut();
        let key = state.by_client_id.get(&client_id).copied();
        let reserved = key.and_then(|key| {
            let slot = state.sessions.get_mut(&key)?;
            (slot.last_conn == conn && slot.conn.is_none() && slot.disconnected_at.is_none()).then(
                || {
                    let now = Instant::now();
                    slot.disconnected_at = Some(now);
                    (key, now)
                },
            )
        });
        if let Some(entry) = reserved {
            state.offline.push_back(entry);
            state.offline_count += 1;
            self.announce_shared_presence(&mut state, entry.0, MemberState::Offline);
        }
        drop(state);
        let holder = reserved.map(|_| self.id);
        self.tell_owner(
            &client_id.clone(),
            ShardMsg::Settled {
                client_id,
                conn,
                holder,
            },
        );
    }

    /// Owner: a claim ended; record where the session is and start the next claim waiting.
    fn on_settled(&self, client_id: Arc<str>, conn: ConnId, holder: Option<ShardId>) {
        let mut state = self.state.borrow_mut();
        let entries = &mut state.directory.entries;
        let Some(Entry::Claiming(claiming)) = entries.get_mut(&client_id) else {
            return;
        };
        if claiming.claim.busy != conn {
            return;
        }
        claiming.holder = holder.map(|shard| (shard, conn));
        match claiming.claim.queued.take() {
            Some((next, clean_session, eager)) => {
                claiming.claim.busy = next;
                let holder = claiming.holder;
                drop(state);
                self.start_claim(client_id, next, clean_session, eager, holder);
            }
            None => match claiming.holder {
                Some((shard, held)) => {
                    entries.insert(client_id, Entry::held(shard, held));
                }
                None => {
                    entries.remove(&client_id);
                }
            },
        }
    }

    /// Binds connection `conn` to its session on this core: the reserved one when `resume`
    /// (a takeover granted `Resume`), else a new one; either way the session now outlives the
    /// connection by `expiry_interval` seconds. Tells the owner the claim is settled.
    /// Returns the session's key and the CONNACK's `session present` flag. `access` is who
    /// the client now is for its listener's ACL; a resumed session's subscriptions are
    /// checked against it again. An `eager` claim (see the module documentation) has told
    /// the owner already.
    pub fn install_session(
        &self,
        conn: &Rc<ConnHandle>,
        expiry_interval: u32,
        resume: bool,
        eager: bool,
        access: Option<Rc<ClientAccess>>,
    ) -> (SessionKey, bool) {
        let mut state = self.state.borrow_mut();
        let reserved = state
            .by_client_id
            .get(&conn.client_id)
            .copied()
            .filter(|key| {
                state
                    .sessions
                    .get(key)
                    .is_some_and(|slot| slot.last_conn == conn.id && slot.conn.is_none())
            });
        let (key, present) = match reserved {
            Some(key) if resume => {
                if let Some(slot) = state.sessions.get_mut(&key) {
                    slot.conn = Some(conn.clone());
                    slot.access = access;
                    slot.state.expiry_interval = expiry_interval;
                    // Back in time: the delayed will is not sent [MQTT-3.1.3-9].
                    slot.state.pending_will = None;
                }
                self.announce_shared_presence(&mut state, key, MemberState::Online);
                (key, true)
            }
            _ => {
                if let Some(stale) = state.by_client_id.get(&conn.client_id).copied() {
                    // Only an eager claim finds its old session still connected here: the
                    // owner's eviction closes it otherwise.
                    if let Some(slot) = state.sessions.get_mut(&stale) {
                        if let Some(old) = slot.conn.take() {
                            old.close(CloseReason::TakenOver);
                        }
                    }
                    self.remove_session(&mut state, stale);
                }
                let key = state.new_session_key();
                let session =
                    SessionState::new(conn.client_id.clone(), expiry_interval, self.flow_limits())
                        .with_queue_budget(self.queue_budget.clone());
                state.sessions.insert(
                    key,
                    Box::new(SessionSlot {
                        state: session,
                        conn: Some(conn.clone()),
                        last_conn: conn.id,
                        disconnected_at: None,
                        access,
                    }),
                );
                state.by_client_id.insert(conn.client_id.clone(), key);
                (key, false)
            }
        };
        drop(state);
        self.persist_bound(key, present);
        if present {
            self.enforce_acl(key);
        }
        if eager {
            return (key, present);
        }
        self.tell_owner(
            &conn.client_id,
            ShardMsg::Settled {
                client_id: conn.client_id.clone(),
                conn: conn.id,
                holder: Some(self.id),
            },
        );
        (key, present)
    }

    /// Re-sends what was in flight and releases queued messages, after the CONNACK, with a
    /// window of at most `max_inflight` messages (what the new connection's client accepts).
    pub fn resume_session(&self, key: SessionKey, max_inflight: usize) {
        let mut state = self.state.borrow_mut();
        let Some(slot) = state.sessions.get_mut(&key) else {
            return;
        };
        let Some(conn) = slot.conn.clone() else {
            return;
        };
        let mut actions = Vec::new();
        slot.state.outgoing.set_max_inflight(max_inflight);
        slot.state.outgoing.resume(&mut actions);
        let sent = conn.send_flow_actions(&mut slot.state.outgoing, &mut actions, None);
        self.persist_flow(&mut slot.state);
        Counters::add(&self.counters.publish_dropped, sent.dropped);
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
        if slot.state.ends_with_connection() {
            let client_id = slot.state.client_id.clone();
            self.remove_session(&mut state, key);
            drop(state);
            self.tell_owner(&client_id.clone(), ShardMsg::Released { client_id, conn });
            return;
        }
        let now = Instant::now();
        slot.conn = None;
        slot.disconnected_at = Some(now);
        if slot.state.expiry_interval != NEVER_EXPIRES {
            let lifetime = Duration::from_secs(u64::from(slot.state.expiry_interval));
            if let Some(deadline) = now.checked_add(lifetime) {
                state.expiring.push(Reverse((deadline, key, now)));
            }
        }
        Self::schedule_will(&mut state, key, now);
        self.announce_shared_presence(&mut state, key, MemberState::Offline);
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
        self.persist_offline(key);
        for (client_id, last_conn) in evicted {
            tracing::warn!(%client_id, "offline session dropped: max_offline_sessions reached");
            self.release(client_id, last_conn);
        }
    }

    fn release(&self, client_id: Arc<str>, conn: ConnId) {
        self.tell_owner(&client_id.clone(), ShardMsg::Released { client_id, conn });
    }

    /// Ends the offline sessions older than `persistent_client_expiration` or their own
    /// session expiry interval; run periodically.
    pub fn expire_offline_sessions(&self) {
        let expiration = self.config.session.persistent_client_expiration;
        let mut expired = Vec::new();
        {
            let mut state = self.state.borrow_mut();
            let now = Instant::now();
            while let Some(&Reverse((deadline, key, since))) = state.expiring.peek() {
                if deadline > now {
                    break;
                }
                state.expiring.pop();
                let current = state
                    .sessions
                    .get(&key)
                    .is_some_and(|slot| slot.disconnected_at == Some(since));
                if current {
                    if let Some(slot) = self.remove_session(&mut state, key) {
                        expired.push((slot.state.client_id, slot.last_conn));
                    }
                }
            }
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
            if state.expiring.len() > 2 * state.offline_count + 64 {
                let ShardState {
                    expiring, sessions, ..
                } = &mut *state;
                expiring.retain(|Reverse((_, key, since))| {
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
            return Some((slot.state.client_id, slot.last_conn));
        }
        None
    }

    fn remove_session(&self, state: &mut ShardState, key: SessionKey) -> Option<Box<SessionSlot>> {
        self.detach_subscriptions(state, key);
        let mut slot = state.sessions.remove(&key)?;
        self.persist_ended(&slot);
        self.keep_shared_orphans(state, &slot.state.outgoing);
        if slot.disconnected_at.is_some() {
            state.offline_count -= 1;
        }
        // A session that ends publishes the will it still holds [MQTT-3.1.3-9].
        if let Some(will) = slot.state.pending_will.take() {
            state.wills_due.push((key, will.message));
        }
        if state.by_client_id.get(&slot.state.client_id) == Some(&key) {
            state.by_client_id.remove(&slot.state.client_id);
        }
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_keeps_its_claims_out_of_line() {
        // The directory keeps an entry per session, for thousands of idle clients at once
        // (issue 3's idle memory): with its client id, a held entry is 32 bytes of the table.
        assert!(std::mem::size_of::<Entry>() <= 16);
    }
}
