//! The persistence of one core: its [`StateLog`] opened at start-up and the state rebuilt from
//! what the files held, each change the core orders written before it is acknowledged,
//! compaction on the housekeeping tick, and the log closed at shutdown. What is kept: retained
//! messages (here) and persistent sessions (their records and their restoration are in
//! `session::persisted`; this file reads them back and includes them in compactions).
//!
//! # Who writes what, and when a publisher hears back
//! A retained topic's owner core (by topic hash) orders its updates; it appends a
//! `RetainedSet` or `RetainedCleared` for each update it applies, and the publisher's
//! acknowledgement waits for that record: for QoS 1/2 until it is as durable as `sync`
//! promises (synced with `"always"`, written to the kernel otherwise), for QoS 0 until it is
//! written. So a crash of the broker (`kill -9` included) never loses an acknowledged retained
//! message, whatever the mode. The replicas on other cores write nothing, and `$SYS` topics
//! are not written at all: the broker publishes them afresh.
//!
//! # Start-up, in two steps
//! 1. [`open`], before the mesh is served: the core recovers its own directory and, after a
//!    change of `cores`, the directories of cores that no longer run whose number falls to it
//!    (number modulo the new count). The records are folded into the last value of each
//!    topic, its own files' over the others'. The topics it now owns go into its retained
//!    store (those from another directory are appended to its own log too); the others are
//!    kept for their owners.
//! 2. [`restore`], once every core serves the mesh and before the listeners accept: the core
//!    replicates what it owns to the other cores (in batches, each closed by a barrier, so no
//!    backlog grows without bound), hands each kept record to its owner as a retained publish
//!    (which the owner applies, replicates and writes before answering), flushes the file
//!    system so that the owners' copies survive a power cut, then compacts its own log so
//!    that it no longer holds topics of other cores, and removes the directories it adopted.
//!    Between the hand-over and the flush it rebuilds the persistent sessions its files (and
//!    the adopted ones) describe (`session::persisted`), writing the adopted ones to its log.
//!    A handed-over record is applied after the owner's own records. Until all this is done,
//!    no client can change a topic, so a crash part way only repeats the same hand-over.
//!
//! # Compaction
//! On the housekeeping tick, when the engine says compaction is due (or recovery advised it),
//! a task compacts the log with the retained messages the core owns, read a few at a time
//! from the store's owned slots between the engine's yields: no copy of the whole set is
//! made, and the core's other tasks wait at most about [`crate::persist::SLICE_BUDGET`] at a
//! time. A topic changed during the walk is seen with either value, and the change is in the
//! log after the snapshot anyway, so the snapshot and the log replay to the right state.
//! Persistent sessions are walked the same way, one session at a time, before the retained
//! messages (`session::persisted::PersistedSessions`); only their keys are taken at once.

use std::cell::Cell;
use std::collections::hash_map::Entry;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ahash::AHashMap;
use bytes::{BufMut, Bytes, BytesMut};

use super::{AckWait, Shard, ShardId, ShardMsg};
use crate::message::{Message, MessageExtras};
use crate::metrics::Latency;
use crate::persist::{
    self, CompactError, LogError, PersistenceConfig, QueuedMessage, Record, RetainedMessage,
    SessionImage, SessionImages, StateLog, StoredWill, SyncMode, Ticket,
};
use crate::protocol::{
    self, FixedHeader, MessageProperties, Packet, PacketId, ProtocolVersion, PublishProperties,
    PublishTopic, PublishV5, QoS, SubscriptionId,
};
use crate::router::RetainOutcome;
use crate::topic::TopicName;

/// Retained messages replicated to the other cores at start-up between two barriers.
const REPLICATE_BATCH: usize = 4096;

/// Retained messages handed to their owner cores at start-up before waiting for their answers.
const HAND_OVER_BATCH: usize = 2048;

/// Longest shutdown waits for a running compaction to let go of the log.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How often start-up says it is still waiting for other cores.
const WAIT_REPORT: Duration = Duration::from_secs(10);

/// How long after a failed compaction the next one may start (a full disk is not retried on
/// every tick).
const COMPACTION_RETRY: Duration = Duration::from_secs(30);

/// The first level of the topics the broker publishes itself, which are not written.
const SYS_PREFIX: &[u8] = b"$SYS";

/// One core's persistence while it runs.
pub struct Persistence {
    log: StateLog,
    /// Whether a compaction task is running.
    compacting: Cell<bool>,
    /// Compact at the next housekeeping tick even if the trigger does not say so (recovery
    /// found damage or several logs).
    compaction_wanted: Cell<bool>,
    /// Whether a failure of the log has been reported (once is enough: it stops for good).
    failure_reported: Cell<bool>,
    /// No compaction starts before this, after one failed.
    retry_compaction_at: Cell<Option<Instant>>,
    /// `MessageQueued` records appended so far: a publish's fan-out compares it before and
    /// after to know whether its acknowledgement waits for the log.
    queued_records: Cell<u64>,
}

impl Persistence {
    /// Says once that this core's records are no longer written.
    fn report_failure(&self, error: &dyn std::fmt::Display) {
        if !self.failure_reported.replace(true) {
            tracing::error!(
                %error,
                "persistence failed on this core: its retained messages and sessions are no \
                 longer written"
            );
        }
    }
}

/// What a retained update's acknowledgement waits for: its record, durable as the publisher's
/// QoS needs (see the module documentation).
pub struct Durable {
    ticket: Ticket,
    persistence: Rc<Persistence>,
}

impl Durable {
    /// Waits for the record; a failed log is reported, and the update is acknowledged anyway
    /// (it is held in memory, as without persistence).
    pub async fn wait(self) {
        if let Err(error) = self.ticket.await {
            self.persistence.report_failure(&error);
        }
    }
}

impl Shard {
    /// This core's persistence, when it runs.
    fn active_persistence(&self) -> Option<Rc<Persistence>> {
        self.persistence.borrow().clone()
    }

    /// Waits while this core's log has `write_buffer_bytes` waiting for the disk: taken by a
    /// publisher before its retained update is applied here as the topic's owner.
    pub(crate) async fn wait_for_persistence_room(&self) {
        let Some(persistence) = self.active_persistence() else {
            return;
        };
        if let Err(error) = persistence.log.wait_for_room().await {
            persistence.report_failure(&error);
        }
    }

    /// Whether this core writes its state (persistence is on and its log opened).
    pub(crate) fn persists(&self) -> bool {
        self.persistence.borrow().is_some()
    }

    /// Appends a record of a persistent session this core holds, without waiting; returns
    /// what an acknowledgement depending on it must wait for (`None`: nothing is written).
    pub(crate) fn persist_session_record(&self, record: &Record) -> Option<Durable> {
        let persistence = self.active_persistence()?;
        match persistence.log.append_now(record) {
            Ok(ticket) => Some(Durable {
                ticket,
                persistence,
            }),
            Err(error) => {
                persistence.report_failure(&error);
                None
            }
        }
    }

    /// Appends the `MessageQueued` record of a message given to a persistent session here (its
    /// publisher's acknowledgement waits for it: see [`Shard::queued_since`]).
    pub(crate) fn persist_queued_record(&self, record: &Record) {
        let Some(persistence) = self.active_persistence() else {
            return;
        };
        match persistence.log.append_now(record) {
            Ok(_ticket) => {
                persistence
                    .queued_records
                    .set(persistence.queued_records.get() + 1);
            }
            // Over the disk bound the message is kept in memory only (logged by the log).
            Err(crate::persist::AppendError::OverDiskBound) => {}
            Err(error) => persistence.report_failure(&error),
        }
    }

    /// Where the count of `MessageQueued` records stands before a fan-out of a message of
    /// `qos` whose acknowledgement depends on them (`None`: QoS 0, or nothing is written).
    pub(crate) fn queued_mark(&self, qos: QoS) -> Option<u64> {
        if qos == QoS::AtMostOnce {
            return None;
        }
        Some(self.active_persistence()?.queued_records.get())
    }

    /// What the `MessageQueued` records appended since `mark` must wait for to be as durable
    /// as `sync` promises (`None` when there are none). Waiting for everything appended so far
    /// covers them: the log is one sequence, and other records appended meanwhile share its
    /// sync.
    pub(crate) fn queued_since(&self, mark: Option<u64>) -> Option<Durable> {
        let mark = mark?;
        let persistence = self.active_persistence()?;
        if persistence.queued_records.get() == mark {
            return None;
        }
        let ticket = persistence.log.ticket_now();
        Some(Durable {
            ticket,
            persistence,
        })
    }

    /// Answers core `from`'s publish `token` once the `MessageQueued` records this core wrote
    /// for it since `mark` are durable.
    pub(crate) fn ack_when_queued(&self, from: ShardId, token: u64, mark: Option<u64>) {
        let unchanged = match (&mark, self.active_persistence()) {
            (Some(mark), Some(persistence)) => persistence.queued_records.get() == *mark,
            _ => true,
        };
        if unchanged {
            self.peers.post(from, ShardMsg::Ack { token });
            return;
        }
        let peers = Rc::clone(&self.peers);
        let durable = self.active_persistence().map(|persistence| Durable {
            ticket: persistence.log.ticket_now(),
            persistence,
        });
        glommio::spawn_local(async move {
            if let Some(durable) = durable {
                durable.wait().await;
            }
            peers.post(from, ShardMsg::Ack { token });
        })
        .detach();
    }

    /// Appends the record of a retained update this core just applied as the topic's owner;
    /// returns what its acknowledgement must wait for (`None`: nothing).
    pub(crate) fn persist_retained(&self, message: &Message) -> Option<Durable> {
        let persistence = self.active_persistence()?;
        if is_sys_topic(&message.topic) {
            return None;
        }
        match persistence.log.append_now(&retained_record(message)) {
            Ok(ticket) => {
                let ticket = if message.qos == QoS::AtMostOnce {
                    ticket.written()
                } else {
                    ticket
                };
                Some(Durable {
                    ticket,
                    persistence,
                })
            }
            Err(error) => {
                persistence.report_failure(&error);
                None
            }
        }
    }

    /// Answers core `from`'s `RetainRequest` once its record is `durable` (at once when there
    /// is none). The answer is posted after the update's replicas, as before.
    pub(crate) fn ack_when_durable(&self, from: ShardId, token: u64, durable: Option<Durable>) {
        let Some(durable) = durable else {
            self.peers.post(from, ShardMsg::Ack { token });
            return;
        };
        let peers = Rc::clone(&self.peers);
        glommio::spawn_local(async move {
            durable.wait().await;
            peers.post(from, ShardMsg::Ack { token });
        })
        .detach();
    }
}

/// Whether `topic` is one the broker publishes itself.
fn is_sys_topic(topic: &TopicName) -> bool {
    let bytes = topic.as_bytes();
    bytes.starts_with(SYS_PREFIX) && matches!(bytes.get(SYS_PREFIX.len()), None | Some(b'/'))
}

/// The record of a retained update (an empty payload clears the topic).
fn retained_record(message: &Message) -> Record {
    let topic = message.topic.as_bytes().clone();
    if message.payload.is_empty() {
        return Record::RetainedCleared { topic };
    }
    let (properties, expires_at) = match &message.extras {
        None => (Bytes::new(), None),
        Some(extras) => (
            encode_properties(&message.topic, &extras.properties, &[]),
            extras.expires_at.map(wall_clock),
        ),
    };
    Record::RetainedSet(RetainedMessage {
        topic,
        payload: message.payload.clone(),
        qos: message.qos,
        properties,
        expires_at,
    })
}

/// The wall-clock time of `deadline` (a deadline must mean the same after a restart).
fn wall_clock(deadline: Instant) -> SystemTime {
    let left = deadline.saturating_duration_since(Instant::now());
    let now = SystemTime::now();
    now.checked_add(left).unwrap_or(now)
}

/// The MQTT 5 property block of `properties` (and of a delivery's `subscription_ids`) as a
/// PUBLISH to `topic` carries it on the wire.
fn encode_properties(
    topic: &TopicName,
    properties: &MessageProperties,
    subscription_ids: &[SubscriptionId],
) -> Bytes {
    let packet = PublishV5 {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: PublishTopic::Name(topic.clone()),
        packet_id: None,
        properties: PublishProperties {
            message: properties.clone(),
            subscription_ids: subscription_ids.to_vec(),
        },
        payload: Bytes::new(),
    };
    let mut out = BytesMut::with_capacity(packet.encoded_len());
    packet.encode(&mut out);
    let header_len = match FixedHeader::parse(&out, usize::MAX, Some(ProtocolVersion::V5)) {
        Ok(Some(header)) => header.header_len,
        // A PUBLISH the codec just encoded always has a valid fixed header.
        _ => return Bytes::new(),
    };
    // Fixed header, then the topic as a length-prefixed string, then the property block.
    out.freeze()
        .slice(header_len + 2 + topic.as_bytes().len()..)
}

/// The properties in `block` (as [`encode_properties`] wrote it), read back with the codec;
/// `None` if they do not decode.
fn decode_properties(topic: &TopicName, block: &Bytes) -> Option<PublishProperties> {
    let topic_bytes = topic.as_bytes();
    let topic_len = u16::try_from(topic_bytes.len()).ok()?;
    let mut remaining = 2 + topic_bytes.len() + block.len();
    let mut packet = BytesMut::with_capacity(remaining + 5);
    packet.put_u8(0x30);
    loop {
        // The remaining length as MQTT's variable byte integer.
        let digit = (remaining % 128) as u8;
        remaining /= 128;
        if remaining == 0 {
            packet.put_u8(digit);
            break;
        }
        packet.put_u8(digit | 0x80);
    }
    packet.put_u16(topic_len);
    packet.put_slice(topic_bytes);
    packet.put_slice(block);
    match protocol::decode_with(&mut packet, usize::MAX, Some(ProtocolVersion::V5)) {
        Ok(Some(Packet::PublishV5(publish))) => Some(publish.properties),
        _ => None,
    }
}

/// The record of a message given to persistent session `client_id` under `message_id` (sent
/// at once with `packet_id`, or queued), as delivered to it (QoS, RETAIN, subscription ids).
pub(crate) fn queued_record(
    client_id: &Arc<str>,
    message_id: u64,
    packet_id: Option<PacketId>,
    message: &Message,
) -> Record {
    let (properties, expires_at) = match &message.extras {
        None => (Bytes::new(), None),
        Some(extras) => (
            encode_properties(&message.topic, &extras.properties, &extras.subscription_ids),
            extras.expires_at.map(wall_clock),
        ),
    };
    Record::MessageQueued(QueuedMessage {
        client_id: client_id.clone(),
        message_id,
        packet_id,
        qos: message.qos,
        dup: false,
        retain: message.retain,
        topic: message.topic.as_bytes().clone(),
        payload: message.payload.clone(),
        properties,
        expires_at,
    })
}

/// The message a recovered `MessageQueued` describes; `None` when it is invalid (not QoS 1/2,
/// a bad topic or properties) or, not yet sent, expired while the broker was down.
pub(crate) fn recovered_queued(queued: &QueuedMessage) -> Option<Message> {
    if queued.qos == QoS::AtMostOnce {
        return None;
    }
    let topic = TopicName::new(queued.topic.clone()).ok()?;
    let expires_at = match queued.expires_at {
        None => None,
        Some(at) => match at.duration_since(SystemTime::now()) {
            Ok(left) if !left.is_zero() => Instant::now().checked_add(left),
            // A message already sent has started its delivery: it is sent again even late
            // (as a live re-delivery is), and its packet id stays taken until then.
            _ if queued.packet_id.is_some() => Some(Instant::now()),
            _ => return None,
        },
    };
    let extras = if queued.properties.is_empty() {
        None
    } else {
        let properties = decode_properties(&topic, &queued.properties)?;
        Some(Arc::new(MessageExtras {
            properties: properties.message,
            expires_at,
            subscription_ids: properties.subscription_ids,
            shared_group: None,
        }))
    };
    Some(Message {
        topic,
        payload: queued.payload.clone(),
        qos: queued.qos,
        retain: queued.retain,
        extras,
    })
}

/// The record of `message`, the will of persistent session `client_id` with a will delay of
/// `delay` seconds, due at `publish_at` (`None`: its connection is still up).
pub(crate) fn will_record(
    client_id: &Arc<str>,
    message: &Message,
    delay: u32,
    publish_at: Option<SystemTime>,
) -> Record {
    let properties = match &message.extras {
        None => Bytes::new(),
        Some(extras) => encode_properties(&message.topic, &extras.properties, &[]),
    };
    Record::WillStored(StoredWill {
        client_id: client_id.clone(),
        topic: message.topic.as_bytes().clone(),
        payload: message.payload.clone(),
        qos: message.qos,
        retain: message.retain,
        properties,
        delay,
        publish_at,
    })
}

/// The will message a recovered `WillStored` describes (its expiry interval, if any, starts
/// when it is published); `None` when it is no longer valid.
pub(crate) fn recovered_will(will: &StoredWill) -> Option<Message> {
    let topic = TopicName::new(will.topic.clone()).ok()?;
    let extras = if will.properties.is_empty() {
        None
    } else {
        let properties = decode_properties(&topic, &will.properties)?;
        MessageExtras::new(properties.message, Instant::now())
    };
    Some(Message {
        topic,
        payload: will.payload.clone(),
        qos: will.qos,
        retain: will.retain,
        extras,
    })
}

/// Why a recovered retained record is not restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NotRestored {
    /// Its topic is not a valid topic name, or its properties do not decode.
    Invalid,
    /// Its message expiry interval ran out while the broker was down.
    Expired,
}

/// The retained message a recovered record describes.
fn recovered_message(retained: RetainedMessage) -> Result<Message, NotRestored> {
    let topic = TopicName::new(retained.topic).map_err(|_| NotRestored::Invalid)?;
    if retained.payload.is_empty() {
        return Err(NotRestored::Invalid);
    }
    let expires_at = match retained.expires_at {
        None => None,
        Some(at) => match at.duration_since(SystemTime::now()) {
            Ok(left) if !left.is_zero() => Instant::now().checked_add(left),
            _ => return Err(NotRestored::Expired),
        },
    };
    let extras = if retained.properties.is_empty() {
        None
    } else {
        let properties =
            decode_properties(&topic, &retained.properties).ok_or(NotRestored::Invalid)?;
        Some(Arc::new(MessageExtras {
            properties: properties.message,
            expires_at,
            subscription_ids: Vec::new(),
            shared_group: None,
        }))
    };
    Ok(Message {
        topic,
        payload: retained.payload,
        qos: retained.qos,
        retain: true,
        extras,
    })
}

/// The update that clears `topic`.
fn clearing(topic: Bytes) -> Result<Message, NotRestored> {
    Ok(Message {
        topic: TopicName::new(topic).map_err(|_| NotRestored::Invalid)?,
        payload: Bytes::new(),
        qos: QoS::AtMostOnce,
        retain: true,
        extras: None,
    })
}

/// The last value of each retained topic in some files, and whether it came from this core's
/// own (`None`: the topic was cleared); and the persistent sessions they describe.
#[derive(Default)]
struct LastValues {
    topics: AHashMap<Bytes, (Option<RetainedMessage>, bool)>,
    /// The persistent sessions (see `session::persisted`).
    sessions: SessionImages,
}

impl LastValues {
    /// Folds `records`, in order, over what is there (the later record of a topic wins).
    fn fold(&mut self, records: Vec<Record>, own: bool) {
        self.topics.reserve(records.len());
        for record in records {
            let (topic, value) = match record {
                Record::RetainedSet(retained) => (retained.topic.clone(), Some(retained)),
                Record::RetainedCleared { topic } => (topic, None),
                other => {
                    self.sessions.apply(other, own);
                    continue;
                }
            };
            match self.topics.entry(topic) {
                Entry::Occupied(mut held) => *held.get_mut() = (value, own),
                Entry::Vacant(empty) => {
                    empty.insert((value, own));
                }
            }
        }
    }
}

/// What [`restore`] does once the mesh is served, and what start-up found so far.
#[derive(Default)]
pub struct Restore {
    /// Recovered retained messages and clears of topics other cores own.
    hand_over: Vec<Message>,
    /// Whether this core's own files hold topics other cores own.
    own_files_hold_others: bool,
    /// Cores that no longer run whose directories were read here.
    adopted: Vec<u64>,
    /// The last record appended here for the adopted directories' topics.
    last_adopted: Option<Ticket>,
    /// Retained messages stored here (owned by this core).
    stored: u64,
    /// Refused by `max_retained_messages` or `max_retained_bytes`.
    refused: u64,
    /// Not restored: expired.
    expired: u64,
    /// Not restored: invalid.
    invalid: u64,
    /// The persistent sessions the files describe, rebuilt by [`restore`].
    sessions: Vec<SessionImage>,
    /// When start-up began.
    started: Option<Instant>,
    /// How long [`open`] took (reading the files, storing what this core owns).
    opened_in: Duration,
}

/// Opens this core's log, recovers its files (and those of the cores that no longer run that
/// fall to it) and stores the retained messages it owns; returns what [`restore`] finishes.
/// Persistence off, or a directory that cannot be used, leaves the core without persistence
/// (logged); damaged files never stop it.
pub async fn open(shard: &Rc<Shard>) -> Restore {
    let config = &shard.config.persistence;
    if !config.persistence {
        return Restore::default();
    }
    let started = Instant::now();
    let (log, recovered) = match StateLog::open(config, shard.id as u64).await {
        Ok(opened) => opened,
        Err(error) => {
            tracing::error!(
                core = shard.id,
                %error,
                "persistence is off on this core: its retained messages and sessions are not \
                 written"
            );
            return Restore::default();
        }
    };
    let metrics = Rc::clone(&shard.metrics);
    log.observe_syncs(move |took| metrics.record(Latency::PersistenceSync, took));
    let persistence = Rc::new(Persistence {
        log,
        compacting: Cell::new(false),
        compaction_wanted: Cell::new(recovered.report.compaction_advised()),
        failure_reported: Cell::new(false),
        retry_compaction_at: Cell::new(None),
        queued_records: Cell::new(0),
    });
    *shard.persistence.borrow_mut() = Some(Rc::clone(&persistence));

    let mut last = LastValues::default();
    let mut adopted = Vec::new();
    for core in cores_to_adopt(config, shard.id, shard.count) {
        match persist::recover(&config.persistence_location, core).await {
            Ok(files) => {
                last.fold(files.records, false);
                adopted.push(core);
            }
            Err(error) => tracing::error!(
                core = shard.id,
                adopted_core = core,
                %error,
                "cannot read the files of a core that no longer runs; they are left as they are"
            ),
        }
    }
    last.fold(recovered.records, true);

    let mut restore = Restore {
        adopted,
        sessions: std::mem::take(&mut last.sessions).into_images(),
        started: Some(started),
        ..Restore::default()
    };
    for (topic, (value, own)) in last.topics {
        let message = match value {
            Some(retained) => recovered_message(retained),
            None => clearing(topic),
        };
        let message = match message {
            Ok(message) => message,
            Err(NotRestored::Expired) => {
                restore.expired += 1;
                continue;
            }
            Err(NotRestored::Invalid) => {
                restore.invalid += 1;
                continue;
            }
        };
        if shard.owner_of(message.topic.as_bytes()) != shard.id {
            restore.own_files_hold_others |= own;
            restore.hand_over.push(message);
            continue;
        }
        if message.payload.is_empty() {
            continue;
        }
        let outcome = shard
            .state
            .borrow_mut()
            .retained
            .apply_recovered(message.clone());
        if outcome == RetainOutcome::Refused {
            restore.refused += 1;
            continue;
        }
        restore.stored += 1;
        if !own {
            match persistence.log.append(&retained_record(&message)).await {
                Ok(ticket) => restore.last_adopted = Some(ticket),
                Err(error) => persistence.report_failure(&error),
            }
        }
    }
    restore.opened_in = started.elapsed();
    restore
}

/// The cores with files under the persistence directory that no longer run and fall to core
/// `id` of `count`.
fn cores_to_adopt(config: &PersistenceConfig, id: ShardId, count: usize) -> Vec<u64> {
    let count = count.max(1) as u64;
    match persist::stored_cores(&config.persistence_location) {
        Ok(cores) => cores
            .into_iter()
            .filter(|core| *core >= count && core % count == id as u64)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Finishes start-up (see the module documentation): replicas, hand-over, flush, compaction
/// of other cores' topics out of this core's log, removal of adopted directories. Runs after
/// every core's [`open`], once this core serves the mesh and before its listeners accept.
pub async fn restore(shard: &Rc<Shard>, restore: Restore) {
    let Some(persistence) = shard.active_persistence() else {
        return;
    };
    let replicating = Instant::now();
    let replicated = replicate_owned(shard).await;
    let replicated_in = replicating.elapsed();
    let handed_over = restore.hand_over.len();
    let all_answered = hand_over(shard, restore.hand_over).await;
    let sessions = shard.restore_sessions(restore.sessions).await;
    let moved = handed_over > 0 || restore.last_adopted.is_some() || sessions.adopted > 0;
    if let Some(ticket) = restore.last_adopted {
        if let Err(error) = ticket.await {
            persistence.report_failure(&error);
        }
    }
    let config = &shard.config.persistence;
    let mut rehomed = all_answered && persistence.log.failure().is_none();
    if moved && rehomed && config.sync != SyncMode::Never {
        // The owners' records are written; flush them (and ours) before the old copies go.
        if let Err(error) = sync_file_system(&config.persistence_location) {
            tracing::warn!(core = shard.id, %error, "cannot flush the persistence files");
            rehomed = false;
        }
    }
    if !rehomed && (restore.own_files_hold_others || !restore.adopted.is_empty()) {
        tracing::warn!(
            core = shard.id,
            "retained messages of other cores were not all confirmed by their owners: the \
             files holding them are kept, and handed over again at the next start"
        );
    }
    if rehomed && restore.own_files_hold_others && !compact(shard, &persistence).await {
        persistence.compaction_wanted.set(true);
    }
    if rehomed {
        for core in &restore.adopted {
            match persist::retire(&config.persistence_location, *core).await {
                Ok(files) => tracing::info!(
                    core = shard.id,
                    adopted_core = core,
                    files,
                    "files of a core that no longer runs removed: their retained messages \
                     live with their owners now"
                ),
                Err(error) => tracing::warn!(
                    core = shard.id,
                    adopted_core = core,
                    %error,
                    "cannot remove the files of a core that no longer runs"
                ),
            }
        }
    }
    tracing::info!(
        core = shard.id,
        restored = sessions.restored,
        expired = sessions.expired,
        adopted = sessions.adopted,
        over_limit = sessions.over_limit,
        messages = sessions.messages,
        dropped_messages = sessions.dropped_messages,
        wills = sessions.wills,
        invalid_subscriptions = sessions.invalid_subscriptions,
        "persistent sessions restored"
    );
    tracing::info!(
        core = shard.id,
        stored = restore.stored,
        replicated,
        handed_over,
        adopted_cores = ?restore.adopted,
        expired = restore.expired,
        invalid = restore.invalid,
        refused = restore.refused,
        read_ms = restore.opened_in.as_millis(),
        replicated_ms = replicated_in.as_millis(),
        elapsed_ms = restore.started.map_or(0, |started| started.elapsed().as_millis()),
        "retained messages restored"
    );
}

/// Sends every retained message this core owns to the other cores' replicas, in batches each
/// followed by a barrier; returns how many. Two batches are in flight at a time, so the peers
/// apply one while the next is posted, and no backlog holds more than two.
async fn replicate_owned(shard: &Shard) -> u64 {
    let mut slot = 0;
    let mut sent = 0;
    let mut in_flight = None;
    loop {
        let mut batch = 0;
        {
            let state = shard.state.borrow();
            let retained = &state.retained;
            while slot < retained.owned_slots() && batch < REPLICATE_BATCH {
                if let Some(message) = retained.owned_at(slot) {
                    shard
                        .peers
                        .broadcast(|| ShardMsg::RetainApply(message.clone()));
                    batch += 1;
                }
                slot += 1;
            }
        }
        sent += batch as u64;
        let barrier = (batch > 0 && shard.count > 1).then(|| {
            let (token, wait) = shard.expect_acks(shard.count - 1);
            shard.peers.broadcast(|| ShardMsg::Barrier { token });
            (token, wait)
        });
        if let Some((token, wait)) = std::mem::replace(&mut in_flight, barrier) {
            if !wait_at_start_up(shard, token, wait, "replicas of retained messages").await {
                return sent;
            }
        }
        if batch == 0 {
            return sent;
        }
    }
}

/// Hands recovered retained messages to their owner cores as retained publishes, in batches;
/// returns whether every one was answered (applied, replicated and written by its owner).
async fn hand_over(shard: &Shard, messages: Vec<Message>) -> bool {
    let mut all_answered = true;
    let mut messages = messages.into_iter().peekable();
    while messages.peek().is_some() {
        let batch: Vec<Message> = messages.by_ref().take(HAND_OVER_BATCH).collect();
        let (token, wait) = shard.expect_acks(batch.len());
        for message in batch {
            let owner = shard.owner_of(message.topic.as_bytes());
            shard
                .peers
                .post(owner, ShardMsg::RetainRequest { message, token });
        }
        if !wait_at_start_up(shard, token, wait, "hand-over of retained messages").await {
            all_answered = false;
            break;
        }
    }
    all_answered
}

/// Waits for the acknowledgements of start-up request `token` with no deadline (another core
/// may take long to read its files), saying every [`WAIT_REPORT`] what it waits for; gives up
/// only when the broker shuts down. Returns whether every acknowledgement came.
async fn wait_at_start_up(shard: &Shard, token: u64, wait: Rc<AckWait>, what: &str) -> bool {
    let started = Instant::now();
    while wait.missing.get() > 0 {
        if shard.is_shutting_down() {
            shard.ack_waits.borrow_mut().remove(&token);
            return false;
        }
        let answered = futures_lite::future::or(
            async {
                wait.done.notified().await;
                true
            },
            async {
                glommio::timer::sleep(WAIT_REPORT).await;
                false
            },
        )
        .await;
        if !answered {
            tracing::info!(
                core = shard.id,
                what,
                missing = wait.missing.get(),
                waited_s = started.elapsed().as_secs(),
                "start-up waits for other cores"
            );
        }
    }
    true
}

/// Flushes every file of the file system holding `location` to the disk (`syncfs`): the
/// owner cores' logs included, which this core cannot sync itself.
fn sync_file_system(location: &Path) -> std::io::Result<()> {
    let directory = std::fs::File::open(location)?;
    // SAFETY: syncfs only reads the descriptor, which `directory` keeps open for the call.
    if unsafe { libc::syncfs(directory.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Starts a compaction when the engine says it is due (or recovery advised one) and none
/// runs: called on the housekeeping tick.
pub fn housekeeping(shard: &Rc<Shard>) {
    let Some(persistence) = shard.active_persistence() else {
        return;
    };
    let backing_off = persistence
        .retry_compaction_at
        .get()
        .is_some_and(|at| Instant::now() < at);
    if backing_off
        || persistence.compacting.get()
        || !(persistence.compaction_wanted.get() || persistence.log.compaction_due())
    {
        return;
    }
    persistence.compacting.set(true);
    let shard = Rc::clone(shard);
    glommio::spawn_local(async move {
        compact(&shard, &persistence).await;
    })
    .detach();
}

/// Compacts this core's log into a snapshot of its persistent sessions and the retained
/// messages it owns (both walked); returns whether it completed (a failure is logged, and the
/// log goes on as it was).
async fn compact(shard: &Rc<Shard>, persistence: &Persistence) -> bool {
    persistence.compacting.set(true);
    persistence.compaction_wanted.set(false);
    // The sessions' keys are taken with no await before the log is sealed; each session is
    // copied when the walk reaches it (see `PersistedSessions`). Taking the keys is done
    // without yielding: it counts as a slice of the compaction.
    let copy_started = Instant::now();
    let sessions = shard.persisted_sessions();
    let session_copy = copy_started.elapsed();
    persistence.log.note_compaction_stall(session_copy);
    let live = sessions.chain(OwnedRetained {
        shard: Rc::clone(shard),
        next_slot: 0,
    });
    let result = persistence.log.compact(live).await;
    persistence.compacting.set(false);
    match result {
        Ok(report) => {
            tracing::info!(
                core = shard.id,
                records = report.records,
                snapshot_bytes = report.snapshot_bytes,
                logs_removed = report.logs_removed,
                elapsed_ms = report.elapsed.as_millis(),
                longest_slice_us = report.longest_slice.max(session_copy).as_micros(),
                session_copy_us = session_copy.as_micros(),
                slices = report.slices,
                over_bound = report.over_bound,
                "persistence compacted"
            );
            true
        }
        Err(CompactError::InProgress) => false,
        Err(error) => {
            persistence
                .retry_compaction_at
                .set(Some(Instant::now() + COMPACTION_RETRY));
            tracing::warn!(
                core = shard.id,
                %error,
                retry_in_s = COMPACTION_RETRY.as_secs(),
                "persistence compaction failed; the log goes on and nothing is lost"
            );
            false
        }
    }
}

/// The retained messages this core owns, as records, read from the store's owned slots one at
/// a time (see the module documentation: a walk, not a copy).
struct OwnedRetained {
    shard: Rc<Shard>,
    next_slot: usize,
}

impl Iterator for OwnedRetained {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        let state = self.shard.state.borrow();
        let retained = &state.retained;
        while self.next_slot < retained.owned_slots() {
            let slot = self.next_slot;
            self.next_slot += 1;
            match retained.owned_at(slot) {
                Some(message) if !is_sys_topic(&message.topic) && !message.is_expired() => {
                    return Some(retained_record(message));
                }
                _ => {}
            }
        }
        None
    }
}

/// Closes this core's log at shutdown, once a running compaction lets go of it (it is then
/// only dropped: nothing acknowledged depends on a close, every acknowledged record was
/// written already).
pub async fn close(shard: &Shard) {
    let Some(mut persistence) = shard.persistence.borrow_mut().take() else {
        return;
    };
    let deadline = Instant::now() + CLOSE_GRACE;
    let owned = loop {
        match Rc::try_unwrap(persistence) {
            Ok(owned) => break owned,
            Err(shared) if Instant::now() < deadline => {
                persistence = shared;
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => {
                tracing::warn!(
                    core = shard.id,
                    "persistence log left open at shutdown: a compaction was still running"
                );
                return;
            }
        }
    };
    match owned.log.close().await {
        Ok(()) | Err(LogError::Closed) => {}
        Err(error) => {
            tracing::warn!(core = shard.id, %error, "persistence log closed with an error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::UserProperty;

    fn topic(text: &str) -> TopicName {
        TopicName::try_from(text).expect("valid topic")
    }

    #[test]
    fn properties_survive_their_round_trip_through_a_record() {
        let properties = MessageProperties {
            message_expiry_interval: Some(3600),
            content_type: Some("application/json".try_into().expect("valid string")),
            correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
            user_properties: vec![UserProperty::new("k", "v").expect("valid pair")],
            ..MessageProperties::default()
        };
        let message = Message {
            topic: topic("a/b"),
            payload: Bytes::from_static(b"payload"),
            qos: QoS::AtLeastOnce,
            retain: true,
            extras: MessageExtras::new(properties.clone(), Instant::now()),
        };
        let Record::RetainedSet(retained) = retained_record(&message) else {
            panic!("a retained message with a payload is a RetainedSet");
        };
        assert!(!retained.properties.is_empty());
        let expires_at = retained.expires_at.expect("a deadline");
        let left = expires_at
            .duration_since(SystemTime::now())
            .expect("in the future");
        assert!(left > Duration::from_secs(3590), "{left:?}");
        let restored = recovered_message(retained).expect("restored");
        assert_eq!(restored.topic, message.topic);
        assert_eq!(restored.payload, message.payload);
        assert_eq!(restored.qos, QoS::AtLeastOnce);
        let extras = restored.extras.expect("extras");
        assert_eq!(extras.properties, properties);
        let subscription_ids: Vec<SubscriptionId> = [1, 268_435_455]
            .into_iter()
            .filter_map(SubscriptionId::new)
            .collect();
        let delivered = message.with_subscription_ids(&subscription_ids);
        let client_id: Arc<str> = Arc::from("c");
        let Record::MessageQueued(queued) = queued_record(&client_id, 9, None, &delivered) else {
            panic!("a queued message is a MessageQueued");
        };
        let back = recovered_queued(&queued).expect("restored");
        assert_eq!(back.topic, delivered.topic);
        let back_extras = back.extras.expect("extras");
        assert_eq!(back_extras.properties, properties);
        assert_eq!(back_extras.subscription_ids, subscription_ids);
        assert!(extras.expires_at.is_some());

        // Expired while the broker was down: dropped while queued, kept once sent (its
        // delivery has started, and its packet id is the client's).
        let mut expired = queued;
        expired.expires_at = Some(SystemTime::now() - Duration::from_secs(1));
        assert!(recovered_queued(&expired).is_none());
        expired.packet_id = PacketId::new(7);
        let resent = recovered_queued(&expired).expect("an expired message in flight is kept");
        assert!(resent.is_expired());
    }

    #[test]
    fn expired_invalid_and_cleared_records_are_told_apart() {
        let expired = RetainedMessage {
            topic: Bytes::from_static(b"t"),
            payload: Bytes::from_static(b"p"),
            qos: QoS::AtMostOnce,
            properties: Bytes::new(),
            expires_at: Some(SystemTime::now() - Duration::from_secs(1)),
        };
        assert_eq!(
            recovered_message(expired.clone()).err(),
            Some(NotRestored::Expired)
        );
        let wildcard = RetainedMessage {
            topic: Bytes::from_static(b"a/#"),
            expires_at: None,
            ..expired.clone()
        };
        assert_eq!(
            recovered_message(wildcard).err(),
            Some(NotRestored::Invalid)
        );
        let garbage = RetainedMessage {
            properties: Bytes::from_static(b"\x05\xff\xff"),
            expires_at: None,
            ..expired
        };
        assert_eq!(recovered_message(garbage).err(), Some(NotRestored::Invalid));
        let cleared = Message {
            topic: topic("gone"),
            payload: Bytes::new(),
            qos: QoS::AtLeastOnce,
            retain: true,
            extras: None,
        };
        assert_eq!(
            retained_record(&cleared),
            Record::RetainedCleared {
                topic: Bytes::from_static(b"gone")
            }
        );
    }

    #[test]
    fn only_the_sys_tree_is_left_out() {
        assert!(is_sys_topic(&topic("$SYS")));
        assert!(is_sys_topic(&topic("$SYS/broker/uptime")));
        assert!(!is_sys_topic(&topic("$SYSTEM/x")));
        assert!(!is_sys_topic(&topic("$share-like/x")));
        assert!(!is_sys_topic(&topic("sys/x")));
    }

    #[test]
    fn the_last_record_of_a_topic_wins_and_own_files_fold_last() {
        let set = |topic: &'static str, payload: &'static str| {
            Record::RetainedSet(RetainedMessage {
                topic: Bytes::from_static(topic.as_bytes()),
                payload: Bytes::from_static(payload.as_bytes()),
                qos: QoS::AtMostOnce,
                properties: Bytes::new(),
                expires_at: None,
            })
        };
        let clear = |topic: &'static str| Record::RetainedCleared {
            topic: Bytes::from_static(topic.as_bytes()),
        };
        let mut last = LastValues::default();
        last.fold(
            vec![set("a", "old"), set("b", "kept"), set("c", "x")],
            false,
        );
        last.fold(
            vec![
                set("a", "1"),
                set("a", "2"),
                clear("c"),
                Record::WillCleared {
                    client_id: Arc::from("client"),
                },
            ],
            true,
        );
        let value = |topic: &'static str| {
            let (value, own) = &last.topics[&Bytes::from_static(topic.as_bytes())];
            (
                value.as_ref().map(|retained| retained.payload.clone()),
                *own,
            )
        };
        assert_eq!(value("a"), (Some(Bytes::from_static(b"2")), true));
        assert_eq!(value("b"), (Some(Bytes::from_static(b"kept")), false));
        assert_eq!(value("c"), (None, true));
        assert!(last.sessions.is_empty(), "a will of no session is ignored");
    }
}
