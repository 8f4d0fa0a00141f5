//! Persistent sessions on disk: the records a session's changes are written as, on the core
//! that holds it, and the sessions rebuilt from them at start-up.
//!
//! A session is written when persistence is on and it outlives its connection (a session
//! expiry interval above 0; MQTT 3.1.1's clean session 0 is "never expires"): a
//! `SessionCreated` when it is made, a `SessionExpiry` each time its client comes or goes (the
//! wall-clock time it went away, so that offline time counts across a restart), its
//! subscriptions as they are granted and removed, and a `SessionEnded` when it ends. A compaction
//! writes each one's whole state instead, one session at a time ([`PersistedSessions`]).
//!
//! At start-up each core rebuilds the sessions its files (and those of cores that no longer
//! run, which fall to it) describe, offline, on itself: sessions never move between cores, so
//! the core that held a session before the restart holds it again. It tells each client id's
//! owner core where the session is (`ShardMsg::Restored`), so that a client reconnecting on any
//! core resumes it (CONNACK session present, its subscriptions in place). A session whose
//! expiry passed while the broker was down is dropped.

use std::cmp::Reverse;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::{
    DelayedWill, FlowAction, FlowEvent, RestoredMessage, SessionState, Subscription, NEVER_EXPIRES,
};
use crate::connection::{ConnHandle, Frame};
use crate::message::{Message, MessageExtras};
use crate::persist::{Acknowledgement, Record, SessionImage};
use crate::protocol::{LastWill, PacketId, WillProperties};
use crate::router::MemberState;
use crate::shard::{
    queued_record, recovered_queued, recovered_will, will_record, ConnId, Durable, SessionKey,
    SessionSlot, Shard, ShardMsg,
};
use crate::topic::TopicFilter;

/// Earliest a will restored at start-up is published, after the restoration: the other cores
/// may still be restoring the subscriptions it goes to (a will due while the broker was down is
/// published this long after the restart).
const RESTORED_WILL_GRACE: Duration = Duration::from_secs(1);

/// What [`Shard::restore_sessions`] did, for the start-up log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoredSessions {
    /// Sessions rebuilt.
    pub restored: u64,
    /// Sessions whose expiry passed while the broker was down (or that ended with their
    /// connection).
    pub expired: u64,
    /// Subscriptions whose filter or options no longer decode (skipped).
    pub invalid_subscriptions: u64,
    /// Queued and in-flight messages restored.
    pub messages: u64,
    /// Messages not restored: expired while the broker was down, or no longer valid.
    pub dropped_messages: u64,
    /// Wills restored (waiting for their delay) or due at once (their session expired).
    pub wills: u64,
    /// Sessions read from the files of a core that no longer runs, written to this core's log.
    pub adopted: u64,
    /// Sessions ended because restoring them would have kept more offline sessions than
    /// `max_offline_sessions` (the oldest offline first, as when a client goes away).
    pub over_limit: u64,
}

/// How long after its connection ended a will with `delay` of a session with
/// `expiry_interval` is published: its delay, or the end of the session if that comes first.
fn will_wait(delay: u32, expiry_interval: u32) -> Duration {
    Duration::from_secs(u64::from(delay.min(expiry_interval)))
}

/// The wall-clock time of `instant`, a moment in the past.
fn wall_clock_of(instant: Instant) -> SystemTime {
    let now = SystemTime::now();
    now.checked_sub(instant.elapsed()).unwrap_or(now)
}

/// Every record that describes `slot`'s session as it is now (what a snapshot holds of it, or
/// what a core adopting it writes to its own log).
fn session_records(slot: &SessionSlot) -> Vec<Record> {
    let session = &slot.state;
    let client_id = &session.client_id;
    let mut records = Vec::with_capacity(2 + session.subscriptions.len());
    records.push(Record::SessionCreated {
        client_id: client_id.clone(),
        expiry_interval: session.expiry_interval,
    });
    records.push(Record::SessionExpiry {
        client_id: client_id.clone(),
        expiry_interval: session.expiry_interval,
        offline_since: slot.disconnected_at.map(wall_clock_of),
    });
    for (filter, subscription) in session.subscriptions.iter() {
        records.push(subscription_record(client_id, filter, subscription));
    }
    for packet_id in session.incoming.ids() {
        records.push(Record::Qos2Received {
            client_id: client_id.clone(),
            packet_id,
        });
    }
    if let Some(will) = &session.pending_will {
        let publish_at = slot
            .disconnected_at
            .map(|since| wall_clock_of(since) + will_wait(will.delay, session.expiry_interval));
        records.push(will_record(
            client_id,
            &will.message,
            will.delay,
            publish_at,
        ));
    } else if let Some(will) = &session.connected_will {
        records.push(will_record(client_id, &will.message, will.delay, None));
    }
    let (released, messages) = session.outgoing.held();
    for packet_id in released {
        // An id awaiting PUBCOMP, with no message: a PUBREC of an id no record put in flight.
        records.push(Record::MessageAcknowledged {
            client_id: client_id.clone(),
            packet_id,
            ack: Acknowledgement::Pubrec,
        });
    }
    for (message_id, packet_id, message) in messages {
        records.push(queued_record(client_id, message_id, packet_id, message));
    }
    records
}

/// A compaction's walk over the persistent sessions of a core, one session at a time: the
/// records of each are made when the walk reaches it, so no copy of every session and every
/// queued message is made at once, and the core's other tasks run between two sessions.
///
/// A session reached late may already hold changes made after the log was sealed, which the
/// log after the snapshot repeats. Folding repeats each such change to the same state (message
/// ids only grow, subscriptions, wills, expiry and QoS 2 ids are set to their last value, a
/// record naming what is gone is ignored, and a packet id freed and used again is told apart:
/// see `persist::sessions`), so the snapshot and the log still replay to the live state. A
/// session that ended meanwhile is left out (its end is in the log), one made meanwhile is in
/// the log from its creation.
pub(crate) struct PersistedSessions {
    shard: Rc<Shard>,
    /// The persistent sessions when the walk began (a key reused meanwhile names a session
    /// made after the seal, whose whole history is in the log: copying it repeats that).
    keys: std::vec::IntoIter<SessionKey>,
    /// The records of the session being written.
    records: std::vec::IntoIter<Record>,
}

impl Iterator for PersistedSessions {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        loop {
            if let Some(record) = self.records.next() {
                return Some(record);
            }
            let key = self.keys.next()?;
            let state = self.shard.state.borrow();
            if let Some(slot) = state.sessions.get(&key) {
                if slot.state.persisted {
                    self.records = session_records(slot).into_iter();
                }
            }
        }
    }
}

fn subscription_record(
    client_id: &Arc<str>,
    filter: &TopicFilter,
    subscription: &Subscription,
) -> Record {
    Record::SubscriptionAdded {
        client_id: client_id.clone(),
        filter: filter.as_bytes().clone(),
        options: subscription.options_byte(),
        subscription_id: subscription.id.map(|id| id.get()),
    }
}

impl Shard {
    /// Writes that connection-bound session `key` was just made (`resumed` false) or resumed:
    /// a new session that outlives its connection starts its records, a resumed one says its
    /// client is back (with its expiry interval, which the new CONNECT may have changed).
    pub(crate) fn persist_bound(&self, key: SessionKey, resumed: bool) {
        let record = {
            let mut state = self.state.borrow_mut();
            let Some(slot) = state.sessions.get_mut(&key) else {
                return;
            };
            let session = &mut slot.state;
            if !resumed && !session.ends_with_connection() && self.persists() {
                session.persisted = true;
                session.outgoing.set_journaling(true);
                Record::SessionCreated {
                    client_id: session.client_id.clone(),
                    expiry_interval: session.expiry_interval,
                }
            } else if resumed && session.persisted {
                session.connected_will = None;
                if std::mem::take(&mut session.will_stored) {
                    // Back in time: the will waiting for its delay is not sent.
                    self.persist_session_record(&Record::WillCleared {
                        client_id: session.client_id.clone(),
                    });
                }
                Record::SessionExpiry {
                    client_id: session.client_id.clone(),
                    expiry_interval: session.expiry_interval,
                    offline_since: None,
                }
            } else {
                return;
            }
        };
        self.persist_session_record(&record);
    }

    /// Writes the will of the connection just bound to persistent session `key`: if the
    /// broker stops while it is connected, the will is published after the restart.
    pub fn persist_connection_will(
        &self,
        key: SessionKey,
        will: &LastWill,
        properties: &WillProperties,
    ) {
        let mut state = self.state.borrow_mut();
        let Some(slot) = state.sessions.get_mut(&key) else {
            return;
        };
        if !slot.state.persisted {
            return;
        }
        let message = Message {
            topic: will.topic.clone(),
            payload: will.payload.clone(),
            qos: will.qos,
            retain: will.retain,
            extras: MessageExtras::new(properties.message.clone(), Instant::now()),
        };
        let delay = properties.will_delay_interval.unwrap_or(0);
        slot.state.will_stored = true;
        self.persist_session_record(&will_record(&slot.state.client_id, &message, delay, None));
        slot.state.connected_will = Some(Box::new(DelayedWill { message, delay }));
    }

    /// Writes what became of persistent session `key`'s will when its connection `conn`
    /// ended: waiting for its delay (with the time it is due), or gone (published, denied,
    /// or cancelled by a normal DISCONNECT).
    pub fn persist_will_after_close(&self, key: SessionKey, conn: ConnId) {
        let mut state = self.state.borrow_mut();
        let Some(slot) = state.sessions.get_mut(&key) else {
            return;
        };
        if slot.last_conn != conn || !slot.state.persisted {
            return;
        }
        let session = &mut slot.state;
        session.connected_will = None;
        let record = match &session.pending_will {
            Some(will) => {
                session.will_stored = true;
                let publish_at = SystemTime::now() + will_wait(will.delay, session.expiry_interval);
                will_record(
                    &session.client_id,
                    &will.message,
                    will.delay,
                    Some(publish_at),
                )
            }
            None if std::mem::take(&mut session.will_stored) => Record::WillCleared {
                client_id: session.client_id.clone(),
            },
            None => return,
        };
        self.persist_session_record(&record);
    }

    /// Writes that `session`'s will left it (it is being published).
    pub(crate) fn persist_will_gone(&self, session: &mut SessionState) {
        if std::mem::take(&mut session.will_stored) {
            self.persist_session_record(&Record::WillCleared {
                client_id: session.client_id.clone(),
            });
        }
    }

    /// Writes that session `key`'s client went away (now), with the expiry interval it keeps.
    pub(crate) fn persist_offline(&self, key: SessionKey) {
        let record = {
            let state = self.state.borrow();
            let Some(slot) = state.sessions.get(&key) else {
                return;
            };
            if !slot.state.persisted {
                return;
            }
            Record::SessionExpiry {
                client_id: slot.state.client_id.clone(),
                expiry_interval: slot.state.expiry_interval,
                offline_since: Some(SystemTime::now()),
            }
        };
        self.persist_session_record(&record);
    }

    /// Writes that the session of `slot` ended (taken out of this core's state).
    pub(crate) fn persist_ended(&self, slot: &SessionSlot) {
        if slot.state.persisted {
            self.persist_session_record(&Record::SessionEnded {
                client_id: slot.state.client_id.clone(),
            });
        }
    }

    /// Writes what the QoS 1/2 flow of `session` (held by this core) journaled since the last
    /// call: messages given to it, sent, dropped, acknowledged. Called after every operation
    /// on a persistent session's flow.
    /// Returns what the last record other than a `MessageQueued` needs to be durable.
    pub(crate) fn persist_flow(&self, session: &mut SessionState) -> Option<Durable> {
        if !session.outgoing.has_journal_events() {
            return None;
        }
        let mut durable = None;
        let client_id = &session.client_id;
        for event in session.outgoing.take_journal() {
            let record = match event {
                FlowEvent::Queued {
                    message_id,
                    packet_id,
                    message,
                } => {
                    self.persist_queued_record(&queued_record(
                        client_id, message_id, packet_id, &message,
                    ));
                    continue;
                }
                FlowEvent::Sent {
                    message_id,
                    packet_id,
                } => Record::MessageSent {
                    client_id: client_id.clone(),
                    message_id,
                    packet_id,
                },
                FlowEvent::Dropped { message_id } => Record::MessageDropped {
                    client_id: client_id.clone(),
                    message_id,
                },
                FlowEvent::Acknowledged { packet_id, ack } => Record::MessageAcknowledged {
                    client_id: client_id.clone(),
                    packet_id,
                    ack,
                },
            };
            durable = self.persist_session_record(&record).or(durable);
        }
        durable
    }

    /// Takes the PUBRELs out of `actions` and sends them on `conn` once `durable` (the record
    /// of the PUBREC they answer) is: a client told its QoS 2 message is released must never
    /// be sent it again after a restart. Without a record to wait for, nothing changes.
    pub fn hold_pubrels(
        &self,
        conn: &Rc<ConnHandle>,
        actions: &mut Vec<FlowAction>,
        durable: Option<Durable>,
    ) {
        let Some(durable) = durable else {
            return;
        };
        let mut frames = Vec::new();
        actions.retain(|action| match action {
            FlowAction::PubRel(packet_id) => {
                frames.push(Frame::ack(0x62, *packet_id));
                false
            }
            FlowAction::Publish { .. } => true,
        });
        self.send_when_durable(conn, frames, Some(durable));
    }

    /// Sends `frames` on `conn` once `durable` is (at once without it): a PUBREL once its
    /// PUBREC is on disk, a PUBCOMP once the PUBREL it answers is.
    pub fn send_when_durable(
        &self,
        conn: &Rc<ConnHandle>,
        frames: Vec<Frame>,
        durable: Option<Durable>,
    ) {
        let Some(durable) = durable else {
            for frame in frames {
                conn.send(frame);
            }
            return;
        };
        if frames.is_empty() {
            return;
        }
        let conn = Rc::clone(conn);
        glommio::spawn_local(async move {
            durable.wait().await;
            for frame in frames {
                conn.send(frame);
            }
        })
        .detach();
    }

    /// Writes that `session` received a new QoS 2 PUBLISH with `packet_id` (`received`) or a
    /// PUBREL for it; returns what its PUBREC must wait for, so that a PUBLISH the client
    /// sends again after a restart is still recognised.
    pub(crate) fn persist_incoming_qos2(
        &self,
        session: &SessionState,
        packet_id: PacketId,
        received: bool,
    ) -> Option<Durable> {
        if !session.persisted {
            return None;
        }
        let client_id = session.client_id.clone();
        let record = if received {
            Record::Qos2Received {
                client_id,
                packet_id,
            }
        } else {
            Record::Qos2Released {
                client_id,
                packet_id,
            }
        };
        self.persist_session_record(&record)
    }

    /// Writes the subscriptions just granted to session `key` and waits until they are as
    /// durable as `sync` promises (before the SUBACK goes out).
    pub async fn persist_subscriptions(
        &self,
        key: SessionKey,
        granted: &[(TopicFilter, Subscription)],
    ) {
        let records: Vec<Record> = {
            let state = self.state.borrow();
            match state.sessions.get(&key) {
                Some(slot) if slot.state.persisted => granted
                    .iter()
                    .map(|(filter, subscription)| {
                        subscription_record(&slot.state.client_id, filter, subscription)
                    })
                    .collect(),
                _ => return,
            }
        };
        let mut last = None;
        for record in &records {
            last = self.persist_session_record(record).or(last);
        }
        if let Some(durable) = last {
            durable.wait().await;
        }
    }

    /// Writes that session `key` no longer subscribes to `filters` (those it did not hold
    /// change nothing when read back) and waits until that is as durable as `sync` promises
    /// (before the UNSUBACK goes out).
    pub async fn persist_unsubscriptions(&self, key: SessionKey, filters: &[TopicFilter]) {
        let client_id = {
            let state = self.state.borrow();
            match state.sessions.get(&key) {
                Some(slot) if slot.state.persisted => slot.state.client_id.clone(),
                _ => return,
            }
        };
        let mut last = None;
        for filter in filters {
            let record = Record::SubscriptionRemoved {
                client_id: client_id.clone(),
                filter: filter.as_bytes().clone(),
            };
            last = self.persist_session_record(&record).or(last);
        }
        if let Some(durable) = last {
            durable.wait().await;
        }
    }

    /// The records of every persistent session this core holds: what a compaction writes of
    /// them. Only the sessions' keys are taken now; each session's records are made when the
    /// walk reaches it, between the compaction's yields (see [`PersistedSessions`]).
    pub(crate) fn persisted_sessions(self: &Rc<Self>) -> PersistedSessions {
        let keys = {
            let state = self.state.borrow();
            state
                .sessions
                .iter()
                .filter(|(_, slot)| slot.state.persisted)
                .map(|(key, _)| *key)
                .collect()
        };
        PersistedSessions {
            shard: Rc::clone(self),
            keys: Vec::into_iter(keys),
            records: Vec::new().into_iter(),
        }
    }

    /// Rebuilds the sessions `images` describe on this core, offline, and tells their owner
    /// cores where they are (see the module documentation). Runs at start-up, once the mesh
    /// is served and before the listeners accept.
    pub(crate) async fn restore_sessions(&self, mut images: Vec<SessionImage>) -> RestoredSessions {
        let mut report = RestoredSessions::default();
        let now = Instant::now();
        let wall_now = SystemTime::now();
        let expiration = self.config.session.persistent_client_expiration;
        // Oldest offline first: the offline queue is kept in that order.
        images.sort_by_key(|image| Reverse(offline_for(image, wall_now)));
        let mut adopted_last = None;
        let mut ended_wills = Vec::new();
        let mut kept = Vec::with_capacity(images.len());
        for image in images {
            let offline = offline_for(&image, wall_now);
            let lifetime = (image.expiry_interval != NEVER_EXPIRES)
                .then(|| Duration::from_secs(u64::from(image.expiry_interval)));
            let outlived = lifetime.is_some_and(|lifetime| offline >= lifetime)
                || (expiration != 0 && offline.as_secs() >= expiration);
            if image.expiry_interval == 0 || outlived {
                report.expired += 1;
                self.end_restored(&image, &mut report, &mut ended_wills);
            } else {
                kept.push((image, offline, lifetime));
            }
        }
        // `max_offline_sessions` holds at start-up as when a client goes away: the oldest
        // offline sessions (first in `kept`) end until the rest fit.
        let room = self
            .config
            .session
            .max_offline_sessions
            .saturating_sub(self.state.borrow().offline_count);
        let over_limit = kept.len().saturating_sub(room);
        let mut kept = kept.into_iter();
        for (image, _, _) in kept.by_ref().take(over_limit) {
            tracing::warn!(
                client_id = %image.client_id,
                "offline session dropped at start-up: max_offline_sessions reached"
            );
            report.over_limit += 1;
            self.end_restored(&image, &mut report, &mut ended_wills);
        }
        for (image, offline, lifetime) in kept {
            let own = image.own;
            let was_connected = image.offline_since.is_none();
            let Some(key) = self
                .rebuild_session(image, now, offline, lifetime, &mut report)
                .await
            else {
                continue;
            };
            report.restored += 1;
            if !own {
                report.adopted += 1;
                let records = {
                    let state = self.state.borrow();
                    state
                        .sessions
                        .get(&key)
                        .map(|slot| session_records(slot))
                        .unwrap_or_default()
                };
                for record in &records {
                    adopted_last = self.persist_session_record(record).or(adopted_last);
                }
            } else if was_connected {
                // Its client went away with the broker: its offline time starts now, also
                // for a later restart.
                self.persist_offline(key);
            }
        }
        if let Some(durable) = adopted_last {
            durable.wait().await;
        }
        if !ended_wills.is_empty() {
            glommio::timer::sleep(RESTORED_WILL_GRACE).await;
            let mut state = self.state.borrow_mut();
            // No session publishes them: key 0 is never a session's.
            state
                .wills_due
                .extend(ended_wills.into_iter().map(|will| (0, will)));
        }
        report
    }

    /// Ends a recovered session instead of restoring it: its will, if it holds one, is
    /// published [MQTT-3.1.3-9], and its end written (a session read from another core's
    /// files is simply not copied here).
    fn end_restored(
        &self,
        image: &SessionImage,
        report: &mut RestoredSessions,
        ended_wills: &mut Vec<Message>,
    ) {
        if let Some(will) = image.will.as_ref().and_then(recovered_will) {
            report.wills += 1;
            ended_wills.push(will);
        }
        if image.own {
            self.persist_session_record(&Record::SessionEnded {
                client_id: image.client_id.clone(),
            });
        }
    }

    /// Installs one recovered session offline on this core, away for `offline` already, with
    /// its subscriptions, and tells its owner core; returns its key (`None`: its client id is
    /// already held here).
    async fn rebuild_session(
        &self,
        image: SessionImage,
        now: Instant,
        offline: Duration,
        lifetime: Option<Duration>,
        report: &mut RestoredSessions,
    ) -> Option<SessionKey> {
        let mut subscriptions = Vec::with_capacity(image.subscriptions.len());
        for (filter, recorded) in &image.subscriptions {
            let filter = TopicFilter::new(filter.clone()).ok();
            let subscription =
                Subscription::from_options_byte(recorded.options, recorded.subscription_id);
            match (filter, subscription) {
                (Some(filter), Some(subscription)) => subscriptions.push((filter, subscription)),
                _ => report.invalid_subscriptions += 1,
            }
        }
        let client_id = image.client_id.clone();
        let conn = self.new_conn_id();
        let since = now.checked_sub(offline).unwrap_or(now);
        let key = {
            let mut state = self.state.borrow_mut();
            if state.by_client_id.contains_key(&client_id) {
                return None;
            }
            let key = state.new_session_key();
            let mut session =
                SessionState::new(client_id.clone(), image.expiry_interval, self.flow_limits())
                    .with_queue_budget(self.queue_budget.clone());
            session.persisted = true;
            session.outgoing.set_journaling(true);
            let messages: Vec<RestoredMessage> = image
                .messages
                .values()
                .filter_map(|queued| {
                    let message = recovered_queued(queued);
                    if message.is_none() {
                        report.dropped_messages += 1;
                    }
                    Some(RestoredMessage {
                        message_id: queued.message_id,
                        packet_id: queued.packet_id,
                        message: message?,
                    })
                })
                .collect();
            report.messages += messages.len() as u64;
            session.outgoing.restore(
                image.released.iter().copied(),
                messages,
                image.highest_message_id,
                image.last_packet_id,
            );
            for packet_id in &image.incoming_qos2 {
                session.incoming.on_publish(*packet_id);
            }
            let will = image.will.as_ref().and_then(|stored| {
                let message = recovered_will(stored)?;
                // Due when recorded, or (its connection was up when the broker stopped) its
                // wait from now.
                let due = match stored.publish_at {
                    Some(at) => {
                        let left = at
                            .duration_since(SystemTime::now())
                            .unwrap_or(Duration::ZERO);
                        now.checked_add(left)
                    }
                    None => since.checked_add(will_wait(stored.delay, image.expiry_interval)),
                }?;
                let earliest = now.checked_add(RESTORED_WILL_GRACE)?;
                Some((message, stored.delay, due.max(earliest)))
            });
            if let Some((message, delay, _)) = &will {
                session.will_stored = true;
                session.pending_will = Some(Box::new(DelayedWill {
                    message: message.clone(),
                    delay: *delay,
                }));
            }
            state.sessions.insert(
                key,
                Box::new(SessionSlot {
                    state: session,
                    conn: None,
                    last_conn: conn,
                    disconnected_at: Some(since),
                    access: None,
                }),
            );
            state.by_client_id.insert(client_id.clone(), key);
            state.offline.push_back((key, since));
            state.offline_count += 1;
            if let Some(deadline) = lifetime.and_then(|lifetime| since.checked_add(lifetime)) {
                state.expiring.push(Reverse((deadline, key, since)));
            }
            if let Some((_, _, due)) = will {
                report.wills += 1;
                state.delayed_wills.push(Reverse((due, key, since)));
            }
            key
        };
        self.subscribe(key, &subscriptions).await;
        self.announce_shared_presence(&mut self.state.borrow_mut(), key, MemberState::Offline);
        let owner = self.owner_of(client_id.as_bytes());
        let restored = ShardMsg::Restored { client_id, conn };
        if owner == self.id {
            self.on_session_message(restored);
        } else {
            self.peers.post(owner, restored);
        }
        Some(key)
    }
}

/// How long the client of `image` has been away (0 for one connected when the broker stopped:
/// its offline time starts with the restart).
fn offline_for(image: &SessionImage, now: SystemTime) -> Duration {
    image
        .offline_since
        .and_then(|since| now.duration_since(since).ok())
        .unwrap_or(Duration::ZERO)
}
