//! Test helpers shared by the persistence tests: a temporary directory, an executor to run
//! in, and a model of the durable state that records fold into.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::config::{PersistenceConfig, SyncMode};
use super::record::{Acknowledgement, QueuedMessage, Record, RetainedMessage, StoredWill};
use crate::protocol::{PacketId, QoS};

pub(crate) use crate::testing::{run, TempDir};

/// Persistence in `dir` with the `sync` mode and everything else at its default.
pub fn config(dir: &Path, sync: SyncMode) -> PersistenceConfig {
    PersistenceConfig {
        persistence: true,
        persistence_location: dir.to_owned(),
        sync,
        ..PersistenceConfig::default()
    }
}

/// A packet id from a number (1 when it is 0).
pub fn packet_id(value: u16) -> PacketId {
    PacketId::new(value).unwrap_or(PacketId::MIN)
}

/// One session's durable state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionModel {
    pub expiry_interval: u32,
    pub offline_since: Option<SystemTime>,
    pub subscriptions: BTreeMap<Bytes, (u8, Option<u32>)>,
    pub messages: BTreeMap<u64, QueuedMessage>,
    pub awaiting_pubcomp: BTreeSet<u16>,
    pub incoming_qos2: BTreeSet<u16>,
    pub will: Option<StoredWill>,
}

/// A core's durable state as the records describe it: what a broker would rebuild.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub retained: BTreeMap<Bytes, RetainedMessage>,
    pub sessions: BTreeMap<Arc<str>, SessionModel>,
}

impl Model {
    /// The model after `records`, from empty.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Model {
        let mut model = Model::default();
        for record in records {
            model.apply(record);
        }
        model
    }

    /// Applies one change (records about unknown sessions or messages are ignored).
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::RetainedSet(message) => {
                self.retained.insert(message.topic.clone(), message.clone());
            }
            Record::RetainedCleared { topic } => {
                self.retained.remove(topic);
            }
            Record::SessionCreated {
                client_id,
                expiry_interval,
            } => {
                self.sessions.insert(
                    client_id.clone(),
                    SessionModel {
                        expiry_interval: *expiry_interval,
                        ..SessionModel::default()
                    },
                );
            }
            Record::SessionExpiry {
                client_id,
                expiry_interval,
                offline_since,
            } => {
                if let Some(session) = self.sessions.get_mut(client_id) {
                    session.expiry_interval = *expiry_interval;
                    session.offline_since = *offline_since;
                }
            }
            Record::SessionEnded { client_id } => {
                self.sessions.remove(client_id);
            }
            Record::SubscriptionAdded {
                client_id,
                filter,
                options,
                subscription_id,
            } => {
                if let Some(session) = self.sessions.get_mut(client_id) {
                    session
                        .subscriptions
                        .insert(filter.clone(), (*options, *subscription_id));
                }
            }
            Record::SubscriptionRemoved { client_id, filter } => {
                if let Some(session) = self.sessions.get_mut(client_id) {
                    session.subscriptions.remove(filter);
                }
            }
            Record::MessageQueued(message) => {
                if let Some(session) = self.sessions.get_mut(&message.client_id) {
                    session.messages.insert(message.message_id, message.clone());
                }
            }
            Record::MessageSent {
                client_id,
                message_id,
                packet_id,
            } => {
                if let Some(message) = self
                    .sessions
                    .get_mut(client_id)
                    .and_then(|session| session.messages.get_mut(message_id))
                {
                    message.packet_id = Some(*packet_id);
                }
            }
            Record::MessageDropped {
                client_id,
                message_id,
            } => {
                if let Some(session) = self.sessions.get_mut(client_id) {
                    session.messages.remove(message_id);
                }
            }
            Record::MessageAcknowledged {
                client_id,
                packet_id,
                ack,
            } => {
                if let Some(session) = self.sessions.get_mut(client_id) {
                    session
                        .messages
                        .retain(|_, message| message.packet_id != Some(*packet_id));
                    match ack {
                        Acknowledgement::Pubrec => {
                            session.awaiting_pubcomp.insert(packet_id.get());
                        }
                        Acknowledgement::Puback | Acknowledgement::Pubcomp => {
                            session.awaiting_pubcomp.remove(&packet_id.get());
                        }
                    }
                }
            }
            Record::Qos2Received {
                client_id,
                packet_id,
            } => {
                if let Some(session) = self.sessions.get_mut(client_id) {
                    session.incoming_qos2.insert(packet_id.get());
                }
            }
            Record::Qos2Released {
                client_id,
                packet_id,
            } => {
                if let Some(session) = self.sessions.get_mut(client_id) {
                    session.incoming_qos2.remove(&packet_id.get());
                }
            }
            Record::WillStored(will) => {
                if let Some(session) = self.sessions.get_mut(&will.client_id) {
                    session.will = Some(will.clone());
                }
            }
            Record::WillCleared { client_id } => {
                if let Some(session) = self.sessions.get_mut(client_id) {
                    session.will = None;
                }
            }
        }
    }

    /// The records describing this state, as a broker would give them to compaction.
    pub fn snapshot_records(&self) -> Vec<Record> {
        let mut records: Vec<Record> = self
            .retained
            .values()
            .cloned()
            .map(Record::RetainedSet)
            .collect();
        for (client_id, session) in &self.sessions {
            records.push(Record::SessionCreated {
                client_id: client_id.clone(),
                expiry_interval: session.expiry_interval,
            });
            if session.offline_since.is_some() {
                records.push(Record::SessionExpiry {
                    client_id: client_id.clone(),
                    expiry_interval: session.expiry_interval,
                    offline_since: session.offline_since,
                });
            }
            for (filter, (options, subscription_id)) in &session.subscriptions {
                records.push(Record::SubscriptionAdded {
                    client_id: client_id.clone(),
                    filter: filter.clone(),
                    options: *options,
                    subscription_id: *subscription_id,
                });
            }
            for message in session.messages.values() {
                records.push(Record::MessageQueued(message.clone()));
            }
            for id in &session.awaiting_pubcomp {
                records.push(Record::MessageAcknowledged {
                    client_id: client_id.clone(),
                    packet_id: packet_id(*id),
                    ack: Acknowledgement::Pubrec,
                });
            }
            for id in &session.incoming_qos2 {
                records.push(Record::Qos2Received {
                    client_id: client_id.clone(),
                    packet_id: packet_id(*id),
                });
            }
            if let Some(will) = &session.will {
                records.push(Record::WillStored(will.clone()));
            }
        }
        records
    }
}

/// A deterministic generator (xorshift) so that workloads reproduce.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A realistic stream of changes: retained updates, sessions coming and going, subscriptions,
/// queued messages sent and acknowledged. Each call returns the next record, valid against
/// `model` (which the caller updates by applying it).
pub fn next_change(rng: &mut Rng, model: &Model, sequence: u64) -> Record {
    let client_id: Arc<str> = Arc::from(format!("client-{}", rng.below(8)));
    let session = model.sessions.get(&client_id);
    match (rng.below(12), session) {
        (0..=2, _) => Record::RetainedSet(RetainedMessage {
            topic: Bytes::from(format!("retained/{}", rng.below(50))),
            payload: Bytes::from(format!("value {sequence}")),
            qos: QoS::AtLeastOnce,
            properties: Bytes::new(),
            expires_at: None,
        }),
        (3, _) => Record::RetainedCleared {
            topic: Bytes::from(format!("retained/{}", rng.below(50))),
        },
        (4, None) | (5, None) | (6, None) => Record::SessionCreated {
            client_id,
            expiry_interval: 3600,
        },
        (4, Some(_)) => Record::SubscriptionAdded {
            client_id,
            filter: Bytes::from(format!("topic/{}/#", rng.below(5))),
            options: 1,
            subscription_id: Some(sequence as u32 % 1000 + 1),
        },
        (5, Some(session)) => match session.messages.iter().find(|(_, m)| m.packet_id.is_none()) {
            Some((message_id, _)) => Record::MessageSent {
                client_id,
                message_id: *message_id,
                packet_id: packet_id((sequence % 65535 + 1) as u16),
            },
            None => Record::SubscriptionRemoved {
                client_id,
                filter: Bytes::from(format!("topic/{}/#", rng.below(5))),
            },
        },
        (6, Some(session)) => match session.messages.values().find_map(|m| m.packet_id) {
            Some(id) => Record::MessageAcknowledged {
                client_id,
                packet_id: id,
                ack: if rng.below(2) == 0 {
                    Acknowledgement::Puback
                } else {
                    Acknowledgement::Pubrec
                },
            },
            None => Record::Qos2Received {
                client_id,
                packet_id: packet_id(rng.below(100) as u16 + 1),
            },
        },
        (7, _) => Record::SessionExpiry {
            client_id,
            expiry_interval: 60,
            offline_since: Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(sequence)),
        },
        (8, _) if rng.below(4) == 0 => Record::SessionEnded { client_id },
        (8, _) => Record::WillStored(StoredWill {
            client_id,
            topic: Bytes::from_static(b"will"),
            payload: Bytes::from(format!("gone {sequence}")),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Bytes::new(),
            delay: 5,
            publish_at: None,
        }),
        _ => Record::MessageQueued(QueuedMessage {
            client_id,
            message_id: sequence,
            packet_id: None,
            qos: QoS::ExactlyOnce,
            dup: false,
            retain: false,
            topic: Bytes::from(format!("topic/{}", rng.below(5))),
            payload: Bytes::from(vec![b'x'; rng.below(200) as usize]),
            properties: Bytes::new(),
            expires_at: None,
        }),
    }
}
