//! The state of one session, independent of any connection and of any core.

use std::sync::Arc;

use super::{FlowLimits, IncomingQos2, OutgoingFlow, SessionMap};
use crate::protocol::QoS;
use crate::topic::TopicFilter;

/// What the broker keeps for a client id between its connections. It holds no reference to
/// its shard (it is `Send`), so that a takeover on another core can move it there whole.
#[derive(Debug)]
pub struct SessionState {
    /// The client id the session belongs to.
    pub client_id: Arc<str>,
    /// Whether the session ends with its connection (MQTT 3.1.1 clean session).
    pub clean_session: bool,
    /// Granted subscriptions: filter to granted QoS.
    pub subscriptions: SessionMap<TopicFilter, QoS>,
    /// QoS 1/2 messages towards the client: in flight and queued.
    pub outgoing: OutgoingFlow,
    /// QoS 2 packet ids received from the client and not yet released.
    pub incoming: IncomingQos2,
}

impl SessionState {
    /// A new, empty session.
    pub fn new(client_id: Arc<str>, clean_session: bool, limits: FlowLimits) -> Self {
        Self {
            client_id,
            clean_session,
            subscriptions: SessionMap::default(),
            outgoing: OutgoingFlow::new(limits),
            incoming: IncomingQos2::new(),
        }
    }
}
