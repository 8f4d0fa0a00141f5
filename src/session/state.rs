//! The state of one session, independent of any connection and of any core.

use std::sync::Arc;

use super::{DelayedWill, FlowLimits, IncomingQos2, OutgoingFlow, Subscriptions};
use crate::queue_budget::QueueBudget;

/// The session expiry interval of a session kept until `persistent_client_expiration` (MQTT 5's
/// 0xFFFFFFFF, "never"; what an MQTT 3.1.1 persistent session gets).
pub const NEVER_EXPIRES: u32 = u32::MAX;

/// What the broker keeps for a client id between its connections. It holds no reference to
/// its shard (it is `Send`), so that a takeover on another core can move it there whole.
#[derive(Debug)]
pub struct SessionState {
    /// The client id the session belongs to.
    pub client_id: Arc<str>,
    /// Seconds the session outlives its connection: 0 ends it with the connection (MQTT 3.1.1
    /// clean session), [`NEVER_EXPIRES`] keeps it until `persistent_client_expiration`.
    pub expiry_interval: u32,
    /// Granted subscriptions, by filter.
    pub subscriptions: Subscriptions,
    /// QoS 1/2 messages towards the client: in flight and queued.
    pub outgoing: OutgoingFlow,
    /// QoS 2 packet ids received from the client and not yet released.
    pub incoming: IncomingQos2,
    /// The will of the last connection, waiting for its delay (MQTT 5; boxed: rare).
    pub pending_will: Option<Box<DelayedWill>>,
    /// Whether the session's changes are written to its core's log (persistence is on and
    /// the session outlives its connection): its records start with a `SessionCreated`.
    pub persisted: bool,
    /// Whether the last record of its will is a `WillStored` (so a `WillCleared` must follow
    /// when the will goes).
    pub will_stored: bool,
    /// The will of the connection bound now, as written to the log (persistent sessions with
    /// persistence on only; boxed: rare): a compaction writes it again.
    pub connected_will: Option<Box<DelayedWill>>,
}

impl SessionState {
    /// A new, empty session that outlives its connection by `expiry_interval` seconds.
    pub fn new(client_id: Arc<str>, expiry_interval: u32, limits: FlowLimits) -> Self {
        Self {
            client_id,
            expiry_interval,
            subscriptions: Subscriptions::default(),
            outgoing: OutgoingFlow::new(limits),
            incoming: IncomingQos2::new(),
            pending_will: None,
            persisted: false,
            will_stored: false,
            connected_will: None,
        }
    }

    /// This session, its queue charged to its core's `budget` (`max_queued_bytes_total`).
    #[must_use]
    pub fn with_queue_budget(mut self, budget: QueueBudget) -> Self {
        self.outgoing.set_budget(budget);
        self
    }

    /// Whether the session ends when its connection does.
    pub fn ends_with_connection(&self) -> bool {
        self.expiry_interval == 0
    }
}
