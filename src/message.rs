//! The application message as it travels from a publisher to every subscriber.

use bytes::Bytes;

use crate::protocol::QoS;
use crate::topic::TopicName;

/// An application message on its way to subscribers. Immutable and cheap to clone: the topic
/// and payload are reference-counted `Bytes` received once from the publisher's socket and
/// shared by every subscriber on every core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Where it was published.
    pub topic: TopicName,
    /// The payload, shared, never copied per subscriber.
    pub payload: Bytes,
    /// The QoS it was published with (each subscriber receives min(this, granted)).
    pub qos: QoS,
    /// The publisher's retain flag.
    pub retain: bool,
}

impl Message {
    /// Bytes this message accounts for in a subscriber's queue (`max_queued_bytes`).
    pub fn queued_size(&self) -> usize {
        self.topic.as_bytes().len() + self.payload.len()
    }
}
