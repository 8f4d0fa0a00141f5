//! Shards: one glommio executor per core, each owning its connections, their sessions, its
//! subscription trie, its replica of the retained store and its metrics.
//!
//! [`Shard`] is the state one core owns. Only that core's tasks touch it, through `RefCell`s
//! that are never borrowed across an `.await`. Other cores reach it only by sending a
//! [`ShardMsg`] (see `message.rs`, the whole cross-core vocabulary). What a core measures
//! travels to the aggregating core and out as `$SYS` and `/metrics` (`observe.rs`).

mod access;
pub mod boot;
pub mod message;
mod observe;
mod peers;
mod persistence;

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;

pub use message::{Adoption, ConnId, Grant, ShardId, ShardMsg};
pub use observe::{Aggregation, DropWatches, DROP_WATCH_TICKS};
pub use peers::Peers;
pub(crate) use persistence::{queued_record, recovered_queued, recovered_will, will_record};
pub use persistence::{Durable, Persistence};

use crate::config::Config;
use crate::connection::{CloseReason, ConnHandle, KeepAlive, Notify};
use crate::listener::{ClientAccess, ListenerState, ReloadSource};
use crate::message::Message;
use crate::metrics::{CoreMetrics, AGGREGATOR_CORE, PUBLISH_LATENCY_SAMPLE_EVERY};
use crate::pacing::Pacing;
use crate::queue_budget::QueueBudget;
use crate::router::{Interest, RetainedStore, SharedGroups, Target};
use crate::session::{Directory, FlowAction, FlowLimits, SessionState, Subscription};
use crate::topic::{SubscriptionTrie, TopicFilter};
use crate::transport::parked::ParkingLot;

/// One tick of a shard's clock: how often keep-alives and offline sessions are checked.
pub const CLOCK_TICK: Duration = Duration::from_millis(100);

/// Longest a request waits for other cores' acknowledgements.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Key of a session within its shard (never reused while the shard runs).
pub type SessionKey = u64;

/// A session held by this shard, with the connection currently bound to it, if any.
pub struct SessionSlot {
    /// The session itself (movable to another shard).
    pub state: SessionState,
    /// The live connection, or `None` while a persistent session waits for its client.
    pub conn: Option<Rc<ConnHandle>>,
    /// The connection that last held the session; the directory knows it by this id.
    pub last_conn: ConnId,
    /// When the client went away (persistent sessions only).
    pub disconnected_at: Option<Instant>,
    /// Who the client last connected as, for its listener's ACL (`None`: no ACL applies).
    pub access: Option<Rc<ClientAccess>>,
}

/// A connection waiting for the session it claimed (possibly from another core).
#[derive(Default)]
pub struct PendingConnect {
    /// Set when the outcome arrives.
    pub ready: Notify,
    /// The outcome, once known.
    pub result: RefCell<Option<Grant>>,
}

/// Everything one core owns that changes as clients come and go.
pub struct ShardState {
    /// Sessions held on this core (boxed: the table keeps a slot per entry and then some,
    /// and a slot is large).
    pub sessions: AHashMap<SessionKey, Box<SessionSlot>>,
    /// Session of each client id held on this core.
    pub by_client_id: AHashMap<Arc<str>, SessionKey>,
    /// Subscriptions of this core's sessions: filter to (session, subscription).
    pub subscriptions: SubscriptionTrie<SessionKey, Subscription>,
    /// Which filters this core and the others have subscribers for.
    pub interest: Interest,
    /// Shared subscription groups and their members on every core.
    pub shared: SharedGroups,
    /// This core's replica of the retained messages.
    pub retained: RetainedStore,
    /// For the client ids this core owns by hash: which core holds each session.
    pub directory: Directory,
    /// Connections of this core waiting for a session, by connection id.
    pub pending: AHashMap<ConnId, Rc<PendingConnect>>,
    /// Persistent sessions without a connection, oldest first (entries may be stale).
    pub offline: VecDeque<(SessionKey, Instant)>,
    /// Persistent sessions currently without a connection.
    pub offline_count: usize,
    /// Offline sessions with a session expiry interval of their own, soonest deadline first:
    /// (deadline, session, when it went offline); entries may be stale.
    pub expiring: BinaryHeap<Reverse<(Instant, SessionKey, Instant)>>,
    /// Offline sessions holding a delayed will, soonest due first: (due, session, when it
    /// went offline); entries may be stale.
    pub delayed_wills: BinaryHeap<Reverse<(Instant, SessionKey, Instant)>>,
    /// Wills to publish at the next housekeeping: those of sessions that ended.
    pub wills_due: Vec<(SessionKey, Message)>,
    /// Messages of shared subscription members that left (their sessions ended, or they left
    /// before the message arrived), to hand to another member of the group (the filter) at
    /// the next housekeeping.
    pub shared_orphans: Vec<(TopicFilter, Message)>,
    /// Reused by fan-out for what a session flow asks to send (no allocation per delivery).
    pub scratch_actions: Vec<FlowAction>,
    /// Reused by fan-out for the matched subscribers (no allocation per publish). Taken out
    /// while a fan-out runs, so a nested one simply starts with an empty vector.
    pub scratch_targets: Vec<Target>,
    next_session: SessionKey,
}

impl ShardState {
    fn new(config: &Config) -> Self {
        Self {
            sessions: AHashMap::new(),
            by_client_id: AHashMap::new(),
            subscriptions: SubscriptionTrie::new(),
            interest: Interest::default(),
            shared: SharedGroups::default(),
            retained: {
                let store = RetainedStore::new(
                    config.limits.max_retained_messages,
                    config.limits.max_retained_bytes,
                );
                // Compaction walks the topics this core owns (see `persistence.rs`).
                if config.persistence.persistence {
                    store.with_owned_slots()
                } else {
                    store
                }
            },
            directory: Directory::default(),
            pending: AHashMap::new(),
            offline: VecDeque::new(),
            offline_count: 0,
            expiring: BinaryHeap::new(),
            delayed_wills: BinaryHeap::new(),
            wills_due: Vec::new(),
            shared_orphans: Vec::new(),
            scratch_actions: Vec::new(),
            scratch_targets: Vec::new(),
            next_session: 1,
        }
    }

    /// A fresh session key.
    pub fn new_session_key(&mut self) -> SessionKey {
        let key = self.next_session;
        self.next_session += 1;
        key
    }
}

/// The few counts of one core that code outside the metrics path bumps directly; each
/// snapshot folds them into the core's [`CoreMetrics`] figures (see `observe.rs`), where
/// everything else is recorded.
#[derive(Default)]
pub struct Counters {
    /// QoS 1/2 messages larger than their client accepts, found while a session's flow is
    /// resumed or advanced by an acknowledgement (reported as dropped: `packet_too_large`).
    pub publish_dropped: Cell<u64>,
    /// PUBLISH packets (and wills) the ACL did not let their client publish.
    pub publish_denied: Cell<u64>,
    /// Connections accepted.
    pub connections_accepted: Cell<u64>,
    /// Messages of shared subscription members that left, handed to another member of the
    /// group.
    pub shared_redelivered: Cell<u64>,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(counter: &Cell<u64>, n: u64) {
        counter.set(counter.get() + n);
    }
}

/// The state and links of one core.
pub struct Shard {
    /// This shard's index in the mesh (the `core=` of log lines).
    pub id: ShardId,
    /// How many shards run.
    pub count: usize,
    /// The configuration every shard runs with.
    pub config: Arc<Config>,
    /// The mutable state; never borrowed across an `.await`.
    pub state: RefCell<ShardState>,
    /// Links to the other shards.
    pub peers: Rc<Peers>,
    /// This core's counts bumped outside the metrics path.
    pub counters: Counters,
    /// What this core counts and measures (shared with its connections' handles).
    pub metrics: Rc<CoreMetrics>,
    /// The whole broker's metrics, on the aggregating core while snapshots are taken.
    pub aggregation: Option<Aggregation>,
    /// Set by the signal handler thread; every shard polls it.
    pub shutdown: Arc<AtomicBool>,
    /// Live connections of this core, so that shutdown can close them.
    pub connections: RefCell<AHashMap<ConnId, Rc<ConnHandle>>>,
    /// Requests to other cores still awaiting acknowledgements, by token.
    pub ack_waits: RefCell<AHashMap<u64, Rc<AckWait>>>,
    next_conn: Cell<u64>,
    next_token: Cell<u64>,
    /// Ticks of [`CLOCK_TICK`] since the shard started (see [`Shard::tick`]).
    clock: Cell<u32>,
    /// Every configured listener as this core serves it, in `config.listener` order.
    pub listeners: RefCell<Vec<Rc<ListenerState>>>,
    /// Where SIGHUP reloads are published (`None` in a shard built without one).
    pub reload: Option<Arc<ReloadSource>>,
    /// The reload generation this core has installed.
    access_generation: Cell<u64>,
    /// This core's log of the state it owns, while persistence runs (see `persistence.rs`).
    pub persistence: RefCell<Option<Rc<Persistence>>>,
    /// This core's share of `max_queued_bytes_total`, charged by every queue of the core.
    pub queue_budget: QueueBudget,
    /// Holds back this core's readers while a client that keeps up waits for its turn to
    /// write (see `pacing`).
    pub pacing: Pacing,
    /// Where this core's quiet plain TCP connections wait, and after how many ticks of
    /// silence they go there (`None`: `park_after_idle_ms` is 0, or the lot could not be
    /// made).
    pub parking: Option<(Rc<ParkingLot>, u32)>,
}

/// A request waiting for acknowledgements from other cores (a SUBSCRIBE's barrier, a retained
/// publish waiting for its owner core).
#[derive(Default)]
pub struct AckWait {
    /// Acknowledgements still missing.
    pub missing: Cell<usize>,
    /// Woken when `missing` reaches zero.
    pub done: Notify,
}

impl Shard {
    /// The state of shard `id` of `count`.
    pub fn new(
        id: ShardId,
        count: usize,
        config: Arc<Config>,
        peers: Rc<Peers>,
        shutdown: Arc<AtomicBool>,
    ) -> Self {
        let snapshots = config.metrics.snapshot_period().is_some();
        let sampling = if snapshots {
            PUBLISH_LATENCY_SAMPLE_EVERY
        } else {
            0
        };
        let aggregation = (snapshots && id == AGGREGATOR_CORE)
            .then(|| Aggregation::new(count, config.metrics.slow_clients_top));
        let queue_budget = QueueBudget::new(config.limits.queued_bytes_per_core(count));
        Self {
            id,
            count,
            state: RefCell::new(ShardState::new(&config)),
            config,
            peers,
            counters: Counters::default(),
            metrics: Rc::new(CoreMetrics::new(id).with_latency_sampling(sampling)),
            aggregation,
            shutdown,
            connections: RefCell::new(AHashMap::new()),
            ack_waits: RefCell::new(AHashMap::new()),
            next_conn: Cell::new(0),
            next_token: Cell::new(1),
            clock: Cell::new(0),
            listeners: RefCell::new(Vec::new()),
            reload: None,
            access_generation: Cell::new(0),
            persistence: RefCell::new(None),
            queue_budget,
            pacing: Pacing::new(),
            parking: None,
        }
    }

    /// Parks this core's quiet plain TCP connections in `lot` after `park_after_idle_ms`
    /// (nothing when it is 0).
    #[must_use]
    pub fn with_parking(mut self, lot: Rc<ParkingLot>) -> Self {
        let after = Duration::from_millis(self.config.park_after_idle_ms);
        if !after.is_zero() {
            let ticks = after.as_millis().div_ceil(CLOCK_TICK.as_millis());
            self.parking = Some((lot, u32::try_from(ticks).unwrap_or(u32::MAX)));
        }
        self
    }

    /// The lot where this core parks quiet connections, if it does.
    pub fn parking_lot(&self) -> Option<&Rc<ParkingLot>> {
        self.parking.as_ref().map(|(lot, _)| lot)
    }

    /// Attaches the source of SIGHUP reloads (see [`Shard::pick_up_reload`]).
    #[must_use]
    pub fn with_reload(mut self, source: Arc<ReloadSource>) -> Self {
        self.reload = Some(source);
        self
    }

    /// The shard's coarse clock, in ticks of [`CLOCK_TICK`]: what a connection records when
    /// its client is heard from, without reading the system clock per read.
    pub fn clock(&self) -> u32 {
        self.clock.get()
    }

    /// The keep-alive of a client that asked for `seconds`, starting now: the client must
    /// send something within one and a half times it [MQTT-3.1.2-24].
    pub fn keep_alive(&self, seconds: u16) -> KeepAlive {
        let allowed = Duration::from_millis(u64::from(seconds) * 1500);
        let ticks = allowed.as_millis().div_ceil(CLOCK_TICK.as_millis());
        KeepAlive {
            ticks: u32::try_from(ticks).unwrap_or(u32::MAX),
            now: self.clock(),
        }
    }

    /// Advances the clock by one tick (called every [`CLOCK_TICK`]), closes the
    /// connections whose clients have been silent beyond their keep-alive and asks those
    /// silent for `park_after_idle_ms` to park (see `transport::parked`).
    pub fn tick(&self) {
        let now = self.clock.get().wrapping_add(1);
        self.clock.set(now);
        self.metrics.set_clock(now);
        let park_after = self.parking.as_ref().map(|(_, after)| *after);
        let silent: Vec<Rc<ConnHandle>> = self
            .connections
            .borrow()
            .values()
            .filter(|conn| {
                if let Some(after) = park_after {
                    conn.ask_to_park(now, after);
                }
                conn.keep_alive_expired(now)
            })
            .cloned()
            .collect();
        for conn in silent {
            conn.close(CloseReason::KeepAliveTimeout);
        }
    }

    /// A new connection id on this shard.
    pub fn new_conn_id(&self) -> ConnId {
        let seq = self.next_conn.get();
        self.next_conn.set(seq + 1);
        ConnId::new(self.id, seq)
    }

    /// Registers a request that expects `count` acknowledgements; returns its token and the
    /// wait to pass to [`Shard::wait_for_acks`].
    pub fn expect_acks(&self, count: usize) -> (u64, Rc<AckWait>) {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        let wait = Rc::new(AckWait::default());
        wait.missing.set(count);
        self.ack_waits.borrow_mut().insert(token, wait.clone());
        (token, wait)
    }

    /// Waits for the acknowledgements of request `token`. Control messages are never dropped,
    /// so they come unless a core has stopped; after `ACK_TIMEOUT` the caller goes on (and a
    /// warning says so) rather than hold its client forever.
    pub async fn wait_for_acks(&self, token: u64, wait: Rc<AckWait>, what: &str) {
        if wait.missing.get() == 0 {
            self.ack_waits.borrow_mut().remove(&token);
            return;
        }
        let acknowledged = futures_lite::future::or(
            async {
                wait.done.notified().await;
                true
            },
            async {
                glommio::timer::sleep(ACK_TIMEOUT).await;
                false
            },
        )
        .await;
        if !acknowledged {
            self.ack_waits.borrow_mut().remove(&token);
            tracing::warn!(what, "other cores did not acknowledge in time");
        }
    }

    /// Counts one acknowledgement of request `token`.
    pub fn on_ack(&self, token: u64) {
        let mut waits = self.ack_waits.borrow_mut();
        if let Some(wait) = waits.get(&token) {
            let missing = wait.missing.get().saturating_sub(1);
            wait.missing.set(missing);
            if missing == 0 {
                wait.done.notify();
                waits.remove(&token);
            }
        }
    }

    /// Whether the broker is shutting down.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// The flow limits every session gets, from the configuration.
    pub fn flow_limits(&self) -> FlowLimits {
        let limits = &self.config.limits;
        FlowLimits {
            max_inflight: limits.max_inflight_messages,
            max_queued_messages: limits.max_queued_messages,
            max_queued_bytes: limits.max_queued_bytes,
        }
    }

    /// The shard that owns a key (a topic for retained messages, a client id for sessions):
    /// every shard computes the same answer, with a hasher seeded identically everywhere.
    pub fn owner_of(&self, key: &[u8]) -> ShardId {
        let hash = OWNER_HASHER.hash_one(key);
        (hash % self.count as u64) as ShardId
    }
}

/// Fixed seeds: ownership must agree across shards (and across restarts, for persistence).
static OWNER_HASHER: ahash::RandomState =
    ahash::RandomState::with_seeds(0x6879_6472, 0x616e_7421, 0x7368_6172, 0x6473_2121);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_slot_fits_a_128_byte_heap_chunk() {
        // Every client has one, idle ones included (issue 3's memory per idle connection):
        // glibc serves up to 120 requested bytes from a 128-byte chunk, 121 to 136 from 144.
        assert!(std::mem::size_of::<SessionSlot>() <= 120);
    }
}
