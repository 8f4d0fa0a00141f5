//! The state of one session, independent of any connection and of any core.

use std::sync::Arc;

use super::{DelayedWill, FlowLimits, IncomingQos2, OutgoingFlow, SessionMap, Subscription};
use crate::topic::TopicFilter;

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
    pub subscriptions: SessionMap<TopicFilter, Subscription>,
    /// QoS 1/2 messages towards the client: in flight and queued.
    pub outgoing: OutgoingFlow,
    /// QoS 2 packet ids received from the client and not yet released.
    pub incoming: IncomingQos2,
    /// The will of the last connection, waiting for its delay (MQTT 5; boxed: rare).
    pub pending_will: Option<Box<DelayedWill>>,
}

impl SessionState {
    /// A new, empty session that outlives its connection by `expiry_interval` seconds.
    pub fn new(client_id: Arc<str>, expiry_interval: u32, limits: FlowLimits) -> Self {
        Self {
            client_id,
            expiry_interval,
            subscriptions: SessionMap::default(),
            outgoing: OutgoingFlow::new(limits),
            incoming: IncomingQos2::new(),
            pending_will: None,
        }
    }

    /// Whether the session ends when its connection does.
    pub fn ends_with_connection(&self) -> bool {
        self.expiry_interval == 0
    }
}
