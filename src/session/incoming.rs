//! Exactly-once reception of QoS 2 PUBLISHes from one client (MQTT 3.1.1 §4.3.3, "Method B":
//! the message is delivered when the PUBLISH arrives and its packet id is remembered until
//! PUBREL, so a re-sent PUBLISH is recognised and not delivered twice).

use super::SessionSet;

use crate::protocol::PacketId;

/// Capacity above which an emptied set gives its memory back, so a burst does not pin it.
const SHRINK_THRESHOLD: usize = 64;

/// The QoS 2 packet ids a client has sent PUBLISH for and not yet released with PUBREL.
///
/// Its size is bounded by the 16-bit packet id space: at most 65535 ids can be pending, whatever
/// the client does. A hash set is used rather than a 65536-bit bitset because clients rarely
/// have more than a few ids pending: a session that never received a QoS 2 PUBLISH costs one
/// pointer (the set is boxed when the first id arrives: most clients never send one), and
/// memory is given back once the set empties after a burst.
#[derive(Debug, Default)]
pub struct IncomingQos2 {
    /// Ids delivered and awaiting PUBREL (`None` until the first).
    pending: Option<Box<SessionSet<PacketId>>>,
}

impl IncomingQos2 {
    /// Creates an empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// A QoS 2 PUBLISH with `id` was accepted (a refused one must leave no id behind, or its
    /// re-send would be taken for a duplicate): returns true if it is new (deliver it, then
    /// send PUBREC), false if it re-sends one not yet released (do not deliver again; send
    /// PUBREC).
    pub fn on_publish(&mut self, id: PacketId) -> bool {
        self.pending.get_or_insert_with(Box::default).insert(id)
    }

    /// PUBREL arrived: forgets `id` (answer PUBCOMP whether or not it was known, §4.3.3);
    /// returns whether it was known.
    pub fn on_pubrel(&mut self, id: PacketId) -> bool {
        let Some(pending) = &mut self.pending else {
            return false;
        };
        let known = pending.remove(&id);
        if pending.is_empty() && pending.capacity() > SHRINK_THRESHOLD {
            self.pending = None;
        }
        known
    }

    /// Whether `id` was received and awaits PUBREL.
    pub fn is_pending(&self, id: PacketId) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|pending| pending.contains(&id))
    }

    /// The ids awaiting PUBREL, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = PacketId> + '_ {
        self.pending
            .iter()
            .flat_map(|pending| pending.iter().copied())
    }

    /// Number of ids awaiting PUBREL.
    pub fn len(&self) -> usize {
        self.pending.as_ref().map_or(0, |pending| pending.len())
    }

    /// Whether no id awaits PUBREL.
    pub fn is_empty(&self) -> bool {
        self.pending
            .as_ref()
            .map_or(true, |pending| pending.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(raw: u16) -> PacketId {
        PacketId::new(raw).unwrap()
    }

    #[test]
    fn an_unused_record_is_one_pointer() {
        // One per session, and most sessions never receive a QoS 2 PUBLISH (issue 3's idle
        // memory): the set must not come back inline.
        assert_eq!(
            std::mem::size_of::<IncomingQos2>(),
            std::mem::size_of::<usize>()
        );
        let mut incoming = IncomingQos2::new();
        assert!(!incoming.on_pubrel(id(1)));
        assert!(!incoming.is_pending(id(1)));
        assert_eq!(incoming.ids().count(), 0);
        assert!(incoming.pending.is_none());
    }

    #[test]
    fn new_publish_is_delivered_duplicate_is_not() {
        let mut incoming = IncomingQos2::new();
        assert!(incoming.is_empty());
        assert!(incoming.on_publish(id(7)));
        assert!(!incoming.on_publish(id(7)));
        assert!(!incoming.on_publish(id(7)));
        assert_eq!(incoming.len(), 1);
    }

    #[test]
    fn pubrel_releases_the_id_for_reuse() {
        let mut incoming = IncomingQos2::new();
        assert!(incoming.on_publish(id(7)));
        assert!(incoming.on_pubrel(id(7)));
        assert!(incoming.is_empty());
        assert!(
            incoming.on_publish(id(7)),
            "a released id starts a new message"
        );
    }

    #[test]
    fn unknown_or_repeated_pubrel_is_reported_unknown() {
        let mut incoming = IncomingQos2::new();
        assert!(!incoming.on_pubrel(id(3)));
        assert!(incoming.on_publish(id(3)));
        assert!(incoming.on_pubrel(id(3)));
        assert!(!incoming.on_pubrel(id(3)));
        assert!(incoming.is_empty());
    }

    #[test]
    fn ids_are_tracked_independently() {
        let mut incoming = IncomingQos2::new();
        assert!(incoming.on_publish(id(1)));
        assert!(incoming.on_publish(id(2)));
        assert!(incoming.on_publish(id(u16::MAX)));
        assert_eq!(incoming.len(), 3);
        assert!(incoming.on_pubrel(id(2)));
        assert!(!incoming.on_publish(id(1)));
        assert!(incoming.on_publish(id(2)));
        assert!(!incoming.on_publish(id(u16::MAX)));
        assert_eq!(incoming.len(), 3);
    }

    #[test]
    fn whole_id_space_fits_and_memory_is_returned_when_empty() {
        let mut incoming = IncomingQos2::new();
        for raw in 1..=u16::MAX {
            assert!(incoming.on_publish(id(raw)));
        }
        assert_eq!(incoming.len(), usize::from(u16::MAX));
        for raw in 1..=u16::MAX {
            assert!(!incoming.on_publish(id(raw)));
        }
        for raw in 1..=u16::MAX {
            assert!(incoming.on_pubrel(id(raw)));
        }
        assert!(incoming.is_empty());
        assert!(incoming
            .pending
            .as_ref()
            .map_or(true, |pending| pending.capacity() <= SHRINK_THRESHOLD));
    }
}
