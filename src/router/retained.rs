//! One core's replica of the retained messages, with the broker-wide limits that keep it
//! bounded.
//!
//! Every retained update of a topic is ordered by the topic's owner core (chosen by topic
//! hash): the owner applies it with [`RetainedStore::apply`], which enforces the limits, and
//! replicates the accepted result to the other cores, which [`RetainedStore::replicate`] it.
//! Each core can then answer a SUBSCRIBE from its own replica, and the replicas never diverge.
//! Payloads are shared `Bytes`, so a replica costs index entries, not copies of the messages.
//!
//! With persistence on, the store also keeps the messages of the topics this core owns in
//! numbered slots that never move while a topic holds them ([`RetainedStore::owned_at`]; a
//! second handle on the same shared message, so a walk needs no lookup in the tree):
//! compaction walks them a few at a time, yielding in between, instead of copying the whole
//! set at once, and start-up replicates them to the other cores the same way. A topic
//! updated during the walk is either seen with its new value or not seen at all; both are
//! right, because its update is also in the log after the snapshot (see `shard::persistence`).

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
    tree: RetainedTree<Stored>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
    refused: u64,
    /// The topics this core owns, when something needs to walk them (persistence).
    owned: Option<OwnedSlots>,
}

/// A retained message as this core keeps it.
struct Stored {
    message: Message,
    /// Its slot in [`OwnedSlots`] when this core owns the topic, else [`NOT_OWNED`].
    slot: u32,
}

/// The slot of a topic that is a replica here, or of a store that keeps no slots.
const NOT_OWNED: u32 = u32::MAX;

/// The retained messages of the topics this core owns, each topic in a slot that stays its
/// own until the topic is cleared. Freed slots are reused, so the table is as long as the most
/// topics owned at once (bounded by `max_retained_messages`).
#[derive(Default)]
struct OwnedSlots {
    slots: Vec<Option<Message>>,
    free: Vec<u32>,
}

impl OwnedSlots {
    /// A slot for the topic of `message`, holding it.
    fn claim(&mut self, message: &Message) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(message.clone());
                slot
            }
            None => {
                // More than u32::MAX - 1 owned topics cannot be stored (max_retained_messages
                // is far below); such a topic would simply not be walked.
                let slot = u32::try_from(self.slots.len()).unwrap_or(NOT_OWNED);
                if slot != NOT_OWNED {
                    self.slots.push(Some(message.clone()));
                }
                slot
            }
        }
    }

    /// Puts the new message of the topic held in `slot` there.
    fn update(&mut self, slot: u32, message: &Message) {
        if let Some(held) = self.slots.get_mut(slot as usize) {
            *held = Some(message.clone());
        }
    }

    /// Frees `slot`.
    fn release(&mut self, slot: u32) {
        if let Some(held) = self.slots.get_mut(slot as usize) {
            if held.take().is_some() {
                self.free.push(slot);
            }
        }
    }
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
            owned: None,
        }
    }

    /// This store, also keeping the topics its core owns in slots for
    /// [`RetainedStore::owned_at`] (persistence walks them to compact its log).
    #[must_use]
    pub fn with_owned_slots(mut self) -> Self {
        self.owned = Some(OwnedSlots::default());
        self
    }

    /// Applies an update as the topic's owner, enforcing the limits.
    pub fn apply(&mut self, message: Message) -> RetainOutcome {
        if message.payload.is_empty() {
            self.remove(&message);
            return RetainOutcome::Cleared;
        }
        let existing = self
            .tree
            .get(&message.topic)
            .map(|held| (held.message.queued_size(), held.slot));
        let replaced = existing.map(|(size, _)| size);
        let bytes_after = self.bytes - replaced.unwrap_or(0) + message.queued_size();
        let is_new = replaced.is_none();
        if (is_new && self.tree.len() >= self.max_messages) || bytes_after > self.max_bytes {
            self.refused += 1;
            return RetainOutcome::Refused;
        }
        let slot = match (existing, &mut self.owned) {
            (Some((_, slot)), Some(owned)) if slot != NOT_OWNED => {
                owned.update(slot, &message);
                slot
            }
            (_, Some(owned)) => owned.claim(&message),
            (_, None) => NOT_OWNED,
        };
        self.store(Stored { message, slot });
        RetainOutcome::Stored
    }

    /// Stores a retained message recovered at start-up for a topic this core owns, enforcing
    /// the limits like [`RetainedStore::apply`] but without looking the topic up first: the
    /// recovered topics are distinct and the store starts empty (were the topic held after all,
    /// the message would replace it and the accounting stay right).
    pub fn apply_recovered(&mut self, message: Message) -> RetainOutcome {
        let bytes_after = self.bytes + message.queued_size();
        if self.tree.len() >= self.max_messages || bytes_after > self.max_bytes {
            self.refused += 1;
            return RetainOutcome::Refused;
        }
        let slot = match &mut self.owned {
            Some(owned) => owned.claim(&message),
            None => NOT_OWNED,
        };
        self.store(Stored { message, slot });
        RetainOutcome::Stored
    }

    /// Applies an update the owner already accepted (a topic this core does not own).
    pub fn replicate(&mut self, message: Message) {
        if message.payload.is_empty() {
            self.remove(&message);
        } else {
            self.store(Stored {
                message,
                slot: NOT_OWNED,
            });
        }
    }

    fn store(&mut self, stored: Stored) {
        self.bytes += stored.message.queued_size();
        let topic = stored.message.topic.clone();
        let slot = stored.slot;
        if let Some(old) = self.tree.insert(&topic, stored) {
            self.bytes -= old.message.queued_size();
            if old.slot != slot {
                self.release(old.slot);
            }
        }
    }

    /// Frees an owned slot (nothing for [`NOT_OWNED`]).
    fn release(&mut self, slot: u32) {
        if let (Some(owned), true) = (&mut self.owned, slot != NOT_OWNED) {
            owned.release(slot);
        }
    }

    fn remove(&mut self, message: &Message) {
        if let Some(old) = self.tree.remove(&message.topic) {
            self.bytes -= old.message.queued_size();
            self.release(old.slot);
        }
    }

    /// Calls `visit` with every retained message whose topic `filter` matches.
    pub fn for_each_match(&self, filter: &TopicFilter, mut visit: impl FnMut(&Message)) {
        self.tree
            .for_each_match(filter, |_, held| visit(&held.message));
    }

    /// One past the last owned slot: walk `0..owned_slots()` with [`RetainedStore::owned_at`]
    /// (0 when the store keeps no slots).
    pub fn owned_slots(&self) -> usize {
        self.owned.as_ref().map_or(0, |owned| owned.slots.len())
    }

    /// The retained message of the topic this core owns in `slot`, if the slot is held.
    pub fn owned_at(&self, slot: usize) -> Option<&Message> {
        self.owned.as_ref()?.slots.get(slot)?.as_ref()
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

    fn owned(store: &RetainedStore) -> Vec<(usize, String)> {
        (0..store.owned_slots())
            .filter_map(|slot| {
                let message = store.owned_at(slot)?;
                Some((slot, String::from_utf8_lossy(&message.payload).into_owned()))
            })
            .collect()
    }

    #[test]
    fn owned_topics_keep_their_slot_until_cleared_and_replicas_get_none() {
        let mut store = RetainedStore::new(10, 1000).with_owned_slots();
        assert_eq!(store.apply(retained("a", b"1")), RetainOutcome::Stored);
        assert_eq!(store.apply(retained("b", b"1")), RetainOutcome::Stored);
        store.replicate(retained("elsewhere", b"r"));
        assert_eq!(store.apply(retained("a", b"2")), RetainOutcome::Stored);
        assert_eq!(owned(&store), vec![(0, "2".into()), (1, "1".into())]);
        assert_eq!(store.apply(retained("a", b"")), RetainOutcome::Cleared);
        assert_eq!(owned(&store), vec![(1, "1".into())]);
        // The freed slot is reused; the others never move.
        assert_eq!(store.apply(retained("c", b"3")), RetainOutcome::Stored);
        assert_eq!(owned(&store), vec![(0, "3".into()), (1, "1".into())]);
        assert_eq!(store.owned_slots(), 2);
        assert_eq!(store.len(), 3);
        store.replicate(retained("elsewhere", b""));
        assert_eq!(store.len(), 2);
        assert_eq!(store.bytes(), 2 + 2);
    }

    #[test]
    fn recovered_messages_take_slots_and_respect_the_limits() {
        let mut store = RetainedStore::new(2, 1000).with_owned_slots();
        assert_eq!(
            store.apply_recovered(retained("a", b"1")),
            RetainOutcome::Stored
        );
        assert_eq!(
            store.apply_recovered(retained("b", b"2")),
            RetainOutcome::Stored
        );
        assert_eq!(
            store.apply_recovered(retained("c", b"3")),
            RetainOutcome::Refused
        );
        assert_eq!(owned(&store), vec![(0, "1".into()), (1, "2".into())]);
        assert_eq!(store.bytes(), 4);
        assert_eq!(store.refused(), 1);
    }

    #[test]
    fn a_store_without_slots_walks_nothing() {
        let mut store = RetainedStore::new(10, 1000);
        assert_eq!(store.apply(retained("a", b"1")), RetainOutcome::Stored);
        assert_eq!(store.owned_slots(), 0);
        assert!(store.owned_at(0).is_none());
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
