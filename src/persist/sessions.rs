//! Persistent sessions as a core's records describe them: the records of a snapshot and its
//! logs folded, in order, into one image per client id, which the broker turns back into live
//! sessions at start-up.
//!
//! Folding is idempotent where the log may repeat itself: a `MessageQueued` whose message id is
//! not above the largest the session has seen is skipped (message ids only grow within a
//! session), and a record naming a message, a packet id or a session that is not there is
//! ignored. A `SessionCreated` starts the image afresh: the log holds everything after it.
//!
//! A compaction copies each session when it reaches it, not all at once (see
//! `session::persisted`), so a snapshot may already hold changes that the log after it repeats.
//! Each such record folds to the same state again, with one exception: a packet id the session
//! used and freed before the copy, and used again for a later message. Replaying the first
//! exchange's acknowledgement must not remove the later message, so a `MessageSent` naming a
//! message no longer here makes its packet id a "ghost": the acknowledgements that follow, up
//! to the `MessageSent` of a message that is here, are that gone message's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use ahash::AHashMap;
use bytes::Bytes;

use super::record::{Acknowledgement, QueuedMessage, Record, StoredWill};
use crate::protocol::PacketId;

/// One subscription as recorded: the options byte and the subscription identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordedSubscription {
    /// The subscription options byte, as in `SubscriptionAdded`.
    pub options: u8,
    /// The MQTT 5 subscription identifier, if any.
    pub subscription_id: Option<u32>,
}

/// What the records say of one persistent session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionImage {
    /// The client id.
    pub client_id: Arc<str>,
    /// Seconds the session outlives its connection.
    pub expiry_interval: u32,
    /// When its client went away; `None` when one was connected when the records end.
    pub offline_since: Option<SystemTime>,
    /// Subscriptions by filter.
    pub subscriptions: BTreeMap<Bytes, RecordedSubscription>,
    /// Messages given to the session and not yet done with, by message id (the order they
    /// were given in): those with a packet id were sent, the others wait in the queue.
    pub messages: BTreeMap<u64, QueuedMessage>,
    /// Packet ids of QoS 2 messages the client acknowledged with PUBREC, awaiting PUBCOMP.
    pub released: BTreeSet<PacketId>,
    /// QoS 2 packet ids received from the client and not yet released by PUBREL.
    pub incoming_qos2: BTreeSet<PacketId>,
    /// The stored will, if any.
    pub will: Option<StoredWill>,
    /// The largest message id seen (the broker continues above it).
    pub highest_message_id: u64,
    /// The packet id the session last sent a message with (the broker continues above it, so
    /// that a message whose `MessageSent` was lost is sent again with the same id).
    pub last_packet_id: Option<PacketId>,
    /// Whether the `SessionCreated` that started the image came from the files of the core
    /// folding them (not from those of a core that no longer runs).
    pub own: bool,
    /// Message id of each sent message, by packet id.
    by_packet: AHashMap<PacketId, u64>,
    /// Packet ids a `MessageSent` gave to a message that is not here (done with before the
    /// snapshot was taken): the acknowledgements that follow belong to that message, not to a
    /// later one sent with the same id (see the module documentation).
    ghosts: BTreeSet<PacketId>,
}

impl SessionImage {
    fn new(client_id: Arc<str>, expiry_interval: u32, own: bool) -> Self {
        Self {
            client_id,
            expiry_interval,
            offline_since: None,
            subscriptions: BTreeMap::new(),
            messages: BTreeMap::new(),
            released: BTreeSet::new(),
            incoming_qos2: BTreeSet::new(),
            will: None,
            highest_message_id: 0,
            last_packet_id: None,
            own,
            by_packet: AHashMap::new(),
            ghosts: BTreeSet::new(),
        }
    }

    fn queue(&mut self, message: QueuedMessage) {
        if message.message_id <= self.highest_message_id {
            // Already folded (from the snapshot) or already done with. When its packet id now
            // belongs to another message, the acknowledgements that follow are this one's.
            if let Some(packet_id) = message.packet_id {
                if self.by_packet.get(&packet_id) != Some(&message.message_id) {
                    self.ghosts.insert(packet_id);
                }
            }
            return;
        }
        self.highest_message_id = message.message_id;
        if let Some(packet_id) = message.packet_id {
            self.ghosts.remove(&packet_id);
            self.forget_packet(packet_id);
            self.by_packet.insert(packet_id, message.message_id);
            self.last_packet_id = Some(packet_id);
        }
        self.messages.insert(message.message_id, message);
    }

    fn sent(&mut self, message_id: u64, packet_id: PacketId) {
        if !self.messages.contains_key(&message_id) {
            self.ghosts.insert(packet_id);
            return;
        }
        self.ghosts.remove(&packet_id);
        // A repeated `MessageSent` of the same message and id changes nothing.
        if self.by_packet.get(&packet_id) != Some(&message_id) {
            self.forget_packet(packet_id);
        }
        self.last_packet_id = Some(packet_id);
        if let Some(message) = self.messages.get_mut(&message_id) {
            if let Some(old) = message.packet_id.replace(packet_id) {
                self.by_packet.remove(&old);
            }
        }
        self.by_packet.insert(packet_id, message_id);
    }

    fn acknowledged(&mut self, packet_id: PacketId, ack: Acknowledgement) {
        if self.ghosts.contains(&packet_id) {
            // The exchange of a message already done with: a PUBREC leaves it waiting for its
            // PUBCOMP, which ends it.
            if ack != Acknowledgement::Pubrec {
                self.ghosts.remove(&packet_id);
                self.released.remove(&packet_id);
            }
            return;
        }
        match ack {
            Acknowledgement::Puback | Acknowledgement::Pubcomp => {
                self.forget_packet(packet_id);
                self.released.remove(&packet_id);
            }
            Acknowledgement::Pubrec => {
                // Also a snapshot's way of saying "this id awaits PUBCOMP".
                self.forget_packet(packet_id);
                self.released.insert(packet_id);
            }
        }
    }

    /// Drops the message in flight under `packet_id`, if any.
    fn forget_packet(&mut self, packet_id: PacketId) {
        if let Some(message_id) = self.by_packet.remove(&packet_id) {
            self.messages.remove(&message_id);
        }
    }
}

/// The images of every session some records describe, by client id.
#[derive(Debug, Default)]
pub struct SessionImages {
    images: AHashMap<Arc<str>, SessionImage>,
}

impl SessionImages {
    /// Folds one record over the images (records of retained messages are not for this and
    /// are ignored). `own` says whether the record comes from the folding core's own files.
    pub fn apply(&mut self, record: Record, own: bool) {
        match record {
            Record::SessionCreated {
                client_id,
                expiry_interval,
            } => {
                let image = SessionImage::new(client_id.clone(), expiry_interval, own);
                self.images.insert(client_id, image);
            }
            Record::SessionExpiry {
                client_id,
                expiry_interval,
                offline_since,
            } => {
                if let Some(image) = self.images.get_mut(&client_id) {
                    image.expiry_interval = expiry_interval;
                    image.offline_since = offline_since;
                }
            }
            Record::SessionEnded { client_id } => {
                self.images.remove(&client_id);
            }
            Record::SubscriptionAdded {
                client_id,
                filter,
                options,
                subscription_id,
            } => {
                if let Some(image) = self.images.get_mut(&client_id) {
                    image.subscriptions.insert(
                        filter,
                        RecordedSubscription {
                            options,
                            subscription_id,
                        },
                    );
                }
            }
            Record::SubscriptionRemoved { client_id, filter } => {
                if let Some(image) = self.images.get_mut(&client_id) {
                    image.subscriptions.remove(&filter);
                }
            }
            Record::MessageQueued(message) => {
                if let Some(image) = self.images.get_mut(&message.client_id) {
                    image.queue(message);
                }
            }
            Record::MessageSent {
                client_id,
                message_id,
                packet_id,
            } => {
                if let Some(image) = self.images.get_mut(&client_id) {
                    image.sent(message_id, packet_id);
                }
            }
            Record::MessageDropped {
                client_id,
                message_id,
            } => {
                if let Some(image) = self.images.get_mut(&client_id) {
                    if let Some(message) = image.messages.remove(&message_id) {
                        if let Some(packet_id) = message.packet_id {
                            image.by_packet.remove(&packet_id);
                        }
                    }
                }
            }
            Record::MessageAcknowledged {
                client_id,
                packet_id,
                ack,
            } => {
                if let Some(image) = self.images.get_mut(&client_id) {
                    image.acknowledged(packet_id, ack);
                }
            }
            Record::Qos2Received {
                client_id,
                packet_id,
            } => {
                if let Some(image) = self.images.get_mut(&client_id) {
                    image.incoming_qos2.insert(packet_id);
                }
            }
            Record::Qos2Released {
                client_id,
                packet_id,
            } => {
                if let Some(image) = self.images.get_mut(&client_id) {
                    image.incoming_qos2.remove(&packet_id);
                }
            }
            Record::WillStored(will) => {
                if let Some(image) = self.images.get_mut(&will.client_id) {
                    image.will = Some(will);
                }
            }
            Record::WillCleared { client_id } => {
                if let Some(image) = self.images.get_mut(&client_id) {
                    image.will = None;
                }
            }
            Record::RetainedSet(_) | Record::RetainedCleared { .. } => {}
        }
    }

    /// Number of sessions described.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether no session is described.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The images, in no particular order.
    pub fn into_images(self) -> Vec<SessionImage> {
        self.images.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::QoS;

    fn id(value: u16) -> PacketId {
        PacketId::new(value).unwrap_or(PacketId::MIN)
    }

    fn client() -> Arc<str> {
        Arc::from("c")
    }

    fn queued(message_id: u64, packet_id: Option<u16>) -> Record {
        Record::MessageQueued(QueuedMessage {
            client_id: client(),
            message_id,
            packet_id: packet_id.map(id),
            qos: QoS::ExactlyOnce,
            dup: false,
            retain: false,
            topic: Bytes::from_static(b"t"),
            payload: Bytes::from(message_id.to_string()),
            properties: Bytes::new(),
            expires_at: None,
        })
    }

    fn fold(records: Vec<Record>) -> Option<SessionImage> {
        let mut images = SessionImages::default();
        for record in records {
            images.apply(record, true);
        }
        images.into_images().pop()
    }

    fn created(expiry_interval: u32) -> Record {
        Record::SessionCreated {
            client_id: client(),
            expiry_interval,
        }
    }

    fn ack(packet_id: u16, ack: Acknowledgement) -> Record {
        Record::MessageAcknowledged {
            client_id: client(),
            packet_id: id(packet_id),
            ack,
        }
    }

    #[test]
    fn subscriptions_and_expiry_follow_the_records() {
        let image = fold(vec![
            created(60),
            Record::SubscriptionAdded {
                client_id: client(),
                filter: Bytes::from_static(b"a/#"),
                options: 1,
                subscription_id: None,
            },
            Record::SubscriptionAdded {
                client_id: client(),
                filter: Bytes::from_static(b"b"),
                options: 2,
                subscription_id: Some(7),
            },
            Record::SubscriptionRemoved {
                client_id: client(),
                filter: Bytes::from_static(b"a/#"),
            },
            Record::SessionExpiry {
                client_id: client(),
                expiry_interval: 30,
                offline_since: Some(SystemTime::UNIX_EPOCH),
            },
        ])
        .expect("a session");
        assert_eq!(image.expiry_interval, 30);
        assert_eq!(image.offline_since, Some(SystemTime::UNIX_EPOCH));
        assert_eq!(image.subscriptions.len(), 1);
        assert_eq!(
            image.subscriptions[&Bytes::from_static(b"b")],
            RecordedSubscription {
                options: 2,
                subscription_id: Some(7)
            }
        );
    }

    #[test]
    fn an_ended_session_is_gone_and_a_new_one_starts_empty() {
        assert_eq!(
            fold(vec![
                created(60),
                queued(1, None),
                Record::SessionEnded {
                    client_id: client()
                }
            ]),
            None
        );
        let image = fold(vec![created(60), queued(1, None), created(10)]).expect("a session");
        assert!(image.messages.is_empty());
        assert_eq!(image.expiry_interval, 10);
    }

    #[test]
    fn messages_follow_their_progress_and_replays_are_idempotent() {
        let image = fold(vec![
            created(60),
            queued(1, Some(1)),
            queued(2, Some(2)),
            queued(3, None),
            queued(4, None),
            queued(2, Some(2)),
            ack(1, Acknowledgement::Puback),
            ack(2, Acknowledgement::Pubrec),
            Record::MessageSent {
                client_id: client(),
                message_id: 3,
                packet_id: id(3),
            },
            Record::MessageDropped {
                client_id: client(),
                message_id: 4,
            },
            ack(9, Acknowledgement::Puback),
            Record::MessageSent {
                client_id: client(),
                message_id: 99,
                packet_id: id(5),
            },
            queued(5, None),
        ])
        .expect("a session");
        let ids: Vec<u64> = image.messages.keys().copied().collect();
        assert_eq!(ids, vec![3, 5]);
        assert_eq!(image.messages[&3].packet_id, Some(id(3)));
        assert_eq!(
            image.released.iter().copied().collect::<Vec<_>>(),
            vec![id(2)]
        );
        assert_eq!(image.highest_message_id, 5);
        assert_eq!(image.last_packet_id, Some(id(3)));

        let done = fold(vec![
            created(60),
            queued(1, Some(1)),
            ack(1, Acknowledgement::Pubrec),
            ack(1, Acknowledgement::Pubcomp),
        ])
        .expect("a session");
        assert!(done.messages.is_empty() && done.released.is_empty());
    }

    fn sent(message_id: u64, packet_id: u16) -> Record {
        Record::MessageSent {
            client_id: client(),
            message_id,
            packet_id: id(packet_id),
        }
    }

    #[test]
    fn a_packet_id_reused_after_the_copy_keeps_the_later_message() {
        // The log after the seal: message 1 sent with id 7 and acknowledged, message 2 sent
        // with id 7 again (still unacknowledged), message 3 sent with id 8, PUBREC'd and
        // completed, message 4 sent with id 8 and PUBREC'd.
        let log = vec![
            queued(1, None),
            sent(1, 7),
            ack(7, Acknowledgement::Puback),
            queued(2, None),
            sent(2, 7),
            queued(3, None),
            sent(3, 8),
            ack(8, Acknowledgement::Pubrec),
            ack(8, Acknowledgement::Pubcomp),
            queued(4, None),
            sent(4, 8),
            ack(8, Acknowledgement::Pubrec),
        ];
        // The session as a compaction copied it after all of that.
        let mut copied = vec![
            created(60),
            queued(2, Some(7)),
            ack(8, Acknowledgement::Pubrec),
        ];
        let expected = fold(copied.clone()).expect("a session");
        copied.extend(log.clone());
        let image = fold(copied).expect("a session");
        assert_eq!(
            image.messages, expected.messages,
            "message 2 stays in flight"
        );
        assert_eq!(
            image.released, expected.released,
            "id 8 still awaits PUBCOMP"
        );
        // And the log alone, after a copy made before any of it, gives the same.
        let mut whole = vec![created(60)];
        whole.extend(log);
        let from_start = fold(whole).expect("a session");
        assert_eq!(from_start.messages, expected.messages);
        assert_eq!(from_start.released, expected.released);
    }

    #[test]
    fn a_message_sent_at_once_whose_id_was_reused_before_the_copy_keeps_the_later_one() {
        // After the seal: message 1 sent at once with id 7 and acknowledged, then message 2
        // sent at once with id 7 too (unacknowledged). The copy holds message 2 only.
        let log = vec![
            queued(1, Some(7)),
            ack(7, Acknowledgement::Puback),
            queued(2, Some(7)),
        ];
        let mut copied = vec![created(60), queued(2, Some(7))];
        let expected = fold(copied.clone()).expect("a session");
        copied.extend(log);
        let image = fold(copied).expect("a session");
        assert_eq!(
            image.messages, expected.messages,
            "message 2 stays in flight"
        );
    }

    #[test]
    fn a_completed_exchange_replayed_after_the_copy_leaves_no_id_awaiting_pubcomp() {
        // After the seal: message 3 sent with id 8, message 4 queued, id 8 PUBREC'd; the copy
        // is taken then (id 8 awaiting PUBCOMP, message 4 queued); the PUBCOMP follows.
        let log = vec![
            queued(3, None),
            sent(3, 8),
            queued(4, None),
            ack(8, Acknowledgement::Pubrec),
            ack(8, Acknowledgement::Pubcomp),
        ];
        let mut copied = vec![
            created(60),
            ack(8, Acknowledgement::Pubrec),
            queued(4, None),
        ];
        copied.extend(log.clone());
        let image = fold(copied).expect("a session");
        assert!(image.released.is_empty(), "{:?}", image.released);
        let mut whole = vec![created(60)];
        whole.extend(log);
        let from_start = fold(whole).expect("a session");
        assert_eq!(
            image.messages, from_start.messages,
            "message 4 waits, alone"
        );
    }

    #[test]
    fn qos2_ids_from_the_client_and_the_will_are_kept_until_released() {
        let will = StoredWill {
            client_id: client(),
            topic: Bytes::from_static(b"w"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Bytes::new(),
            delay: 5,
            publish_at: None,
        };
        let image = fold(vec![
            created(60),
            Record::Qos2Received {
                client_id: client(),
                packet_id: id(4),
            },
            Record::Qos2Received {
                client_id: client(),
                packet_id: id(5),
            },
            Record::Qos2Released {
                client_id: client(),
                packet_id: id(4),
            },
            Record::WillStored(will.clone()),
        ])
        .expect("a session");
        assert_eq!(
            image.incoming_qos2.iter().copied().collect::<Vec<_>>(),
            vec![id(5)]
        );
        assert_eq!(image.will, Some(will));
        let cleared = fold(vec![
            created(60),
            Record::WillStored(image.will.clone().expect("a will")),
            Record::WillCleared {
                client_id: client(),
            },
        ])
        .expect("a session");
        assert_eq!(cleared.will, None);
    }

    #[test]
    fn records_of_unknown_sessions_are_ignored() {
        assert_eq!(
            fold(vec![
                queued(1, None),
                Record::SubscriptionAdded {
                    client_id: client(),
                    filter: Bytes::from_static(b"x"),
                    options: 0,
                    subscription_id: None,
                },
                Record::SessionExpiry {
                    client_id: client(),
                    expiry_interval: 5,
                    offline_since: None,
                },
            ]),
            None
        );
    }
}
