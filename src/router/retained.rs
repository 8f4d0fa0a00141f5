//! One core's replica of the retained messages, with the broker-wide limits that keep it
//! bounded.
//!
//! Every retained update of a topic is ordered by the topic's owner core (chosen by topic
//! hash): the owner applies it with [`RetainedStore::apply`], which enforces the limits, and
//! replicates the accepted result to the other cores, which [`RetainedStore::replicate`] it.
//! Each core can then answer a SUBSCRIBE from its own replica, and the replicas never diverge.
//! Payloads are shared `Bytes`, so a replica costs index entries, not copies of the messages.

use crate::message::Message;
use crate::topic::{RetainedTree, TopicFilter};

/// What the owner did with a retained publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainOutcome {
    /// Stored (new topic, or a replacement).
    Stored,
    /// An empty payload removed the topic's retained message.
    Cleared,
    /// Over `max_retained_messages` or `max_retained_bytes`: not stored (still delivered).
    Refused,
}

/// Retained messages known to this core.
pub struct RetainedStore {
    tree: RetainedTree<Message>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
    refused: u64,
}

impl RetainedStore {
    /// An empty store with the configured limits.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            tree: RetainedTree::new(),
            bytes: 0,
            max_messages,
            max_bytes,
            refused: 0,
        }
    }

    /// Applies an update as the topic's owner, enforcing the limits.
    pub fn apply(&mut self, message: Message) -> RetainOutcome {
        if message.payload.is_empty() {
            self.remove(&message);
            return RetainOutcome::Cleared;
        }
        let replaced = self.tree.get(&message.topic).map(Message::queued_size);
        let bytes_after = self.bytes - replaced.unwrap_or(0) + message.queued_size();
        let is_new = replaced.is_none();
        if (is_new && self.tree.len() >= self.max_messages) || bytes_after > self.max_bytes {
            self.refused += 1;
            return RetainOutcome::Refused;
        }
        self.store(message);
        RetainOutcome::Stored
    }

    /// Applies an update the owner already accepted.
    pub fn replicate(&mut self, message: Message) {
        if message.payload.is_empty() {
            self.remove(&message);
        } else {
            self.store(message);
        }
    }

    fn store(&mut self, message: Message) {
        self.bytes += message.queued_size();
        let topic = message.topic.clone();
        if let Some(old) = self.tree.insert(&topic, message) {
            self.bytes -= old.queued_size();
        }
    }

    fn remove(&mut self, message: &Message) {
        if let Some(old) = self.tree.remove(&message.topic) {
            self.bytes -= old.queued_size();
        }
    }

    /// Calls `visit` with every retained message whose topic `filter` matches.
    pub fn for_each_match(&self, filter: &TopicFilter, mut visit: impl FnMut(&Message)) {
        self.tree
            .for_each_match(filter, |_, message| visit(message));
    }

    /// Retained messages stored.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether none are stored.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Bytes (topic + payload) stored.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Updates refused because of the limits.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::QoS;
    use crate::topic::TopicName;

    fn retained(topic: &str, payload: &'static [u8]) -> Message {
        Message {
            extras: None,
            topic: TopicName::try_from(topic).expect("valid topic"),
            payload: Bytes::from_static(payload),
            qos: QoS::AtMostOnce,
            retain: true,
        }
    }

    #[test]
    fn limits_refuse_new_topics_but_allow_replacements() {
        let mut store = RetainedStore::new(2, 1000);
        assert_eq!(store.apply(retained("a", b"1")), RetainOutcome::Stored);
        assert_eq!(store.apply(retained("b", b"1")), RetainOutcome::Stored);
        assert_eq!(store.apply(retained("c", b"1")), RetainOutcome::Refused);
        assert_eq!(store.apply(retained("a", b"22")), RetainOutcome::Stored);
        assert_eq!(store.len(), 2);
        assert_eq!(store.bytes(), 2 + 3);
        assert_eq!(store.apply(retained("a", b"")), RetainOutcome::Cleared);
        assert_eq!(store.len(), 1);
        assert_eq!(store.bytes(), 2);
        assert_eq!(store.refused(), 1);
    }

    #[test]
    fn byte_limit_counts_topic_and_payload() {
        let mut store = RetainedStore::new(10, 4);
        assert_eq!(store.apply(retained("ab", b"cd")), RetainOutcome::Stored);
        assert_eq!(store.apply(retained("e", b"f")), RetainOutcome::Refused);
        assert_eq!(store.apply(retained("ab", b"c")), RetainOutcome::Stored);
        assert_eq!(store.apply(retained("e", b"")), RetainOutcome::Cleared);
    }
}
