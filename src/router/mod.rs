//! The publish path: from a PUBLISH received on one core to every matching subscriber on every
//! core, and the retained store.
//!
//! A publish is offered to the retained store (via the topic's owner core), sent once to each
//! other core that announced a matching filter, and delivered to this core's subscribers. Local
//! delivery encodes the PUBLISH once per wire layout and appends that shared encoding to each
//! subscriber's queue; the subscribers' writer tasks then flush what gathered in one write.

mod interest;
mod retained;
mod subscriptions;

use std::cmp::max;

pub use interest::Interest;
pub use retained::{RetainOutcome, RetainedStore};

use crate::connection::Frame;
use crate::message::Message;
use crate::protocol::{EncodedPublish, QoS};
use crate::session::FlowAction;
use crate::shard::{Counters, SessionKey, Shard, ShardId, ShardMsg, ShardState};
use crate::topic::TopicFilter;

/// Subscribers served between two chances for other tasks of the core to run.
const FANOUT_CHUNK: usize = 256;

/// The encodings of one message made during one fan-out, one per delivered QoS.
struct EncodingCache<'a> {
    message: &'a Message,
    retain: bool,
    by_qos: [Option<EncodedPublish>; 3],
}

impl<'a> EncodingCache<'a> {
    fn new(message: &'a Message, retain: bool) -> Self {
        Self {
            message,
            retain,
            by_qos: [None, None, None],
        }
    }

    fn get(&mut self, qos: QoS) -> &EncodedPublish {
        let message = self.message;
        let retain = self.retain;
        self.by_qos[qos as usize].get_or_insert_with(|| {
            EncodedPublish::new(&message.topic, &message.payload, qos, retain)
        })
    }
}

impl Shard {
    /// Routes a PUBLISH received from a client of this core.
    pub async fn publish(&self, message: Message) {
        Counters::add(&self.counters.publish_received, 1);
        if message.retain {
            self.retain(message.clone()).await;
        }
        // Live subscribers always receive the retain flag cleared [MQTT-3.3.1-9].
        let live = Message {
            retain: false,
            ..message
        };
        let remote = self.state.borrow().interest.remote_shards(&live.topic);
        for shard in remote {
            self.peers
                .send(shard, ShardMsg::Publish(live.clone()))
                .await;
        }
        self.deliver_local(&live).await;
    }

    /// Hands a retained publish to its topic's owner core, which orders and replicates it,
    /// and waits until it has: a SUBSCRIBE made after the publisher's PUBACK then finds it.
    async fn retain(&self, message: Message) {
        let owner = self.owner_of(message.topic.as_bytes());
        if owner == self.id {
            self.apply_retained_as_owner(message);
        } else {
            let (token, wait) = self.expect_acks(1);
            self.peers
                .send(owner, ShardMsg::RetainRequest { message, token })
                .await;
            self.wait_for_acks(token, wait, "retained publish").await;
        }
    }

    /// Applies a retained update on the owner core and replicates it if accepted.
    fn apply_retained_as_owner(&self, message: Message) {
        let outcome = self.state.borrow_mut().retained.apply(message.clone());
        match outcome {
            RetainOutcome::Refused => tracing::warn!(
                topic = %message.topic,
                "retained message not stored: max_retained_messages or max_retained_bytes reached"
            ),
            RetainOutcome::Stored | RetainOutcome::Cleared => self
                .peers
                .broadcast(|| ShardMsg::RetainApply(message.clone())),
        }
    }

    /// Delivers a message to this core's matching subscribers: once per session, at the
    /// highest QoS among its matching subscriptions.
    pub async fn deliver_local(&self, message: &Message) {
        let mut targets = {
            let mut state = self.state.borrow_mut();
            let mut targets = std::mem::take(&mut state.scratch_targets);
            state
                .subscriptions
                .for_each_match(&message.topic, |key, granted| targets.push((key, *granted)));
            targets
        };
        if targets.is_empty() {
            self.state.borrow_mut().scratch_targets = targets;
            return;
        }
        if targets.len() > 1 {
            targets.sort_unstable_by_key(|&(key, _)| key);
            targets.dedup_by(|later, kept| {
                if later.0 == kept.0 {
                    kept.1 = max(kept.1, later.1);
                    true
                } else {
                    false
                }
            });
        }
        let mut encodings = EncodingCache::new(message, false);
        for chunk in targets.chunks(FANOUT_CHUNK) {
            {
                let mut state = self.state.borrow_mut();
                for &(key, granted) in chunk {
                    self.deliver_to(&mut state, key, granted, &mut encodings);
                }
            }
            if chunk.len() == FANOUT_CHUNK {
                glommio::yield_if_needed().await;
            }
        }
        targets.clear();
        self.state.borrow_mut().scratch_targets = targets;
    }

    /// Sends the retained messages matching `filter` to a session that just subscribed.
    pub fn deliver_retained(&self, key: SessionKey, filter: &TopicFilter, granted: QoS) {
        let mut matching = Vec::new();
        self.state
            .borrow()
            .retained
            .for_each_match(filter, |message| matching.push(message.clone()));
        let mut state = self.state.borrow_mut();
        for message in &matching {
            let mut encodings = EncodingCache::new(message, true);
            self.deliver_to(&mut state, key, granted, &mut encodings);
        }
    }

    /// Queues one message for one session: QoS 0 straight to its connection's queue (dropped
    /// and counted when full, never kept for an offline client), QoS 1/2 through its flow.
    fn deliver_to(
        &self,
        state: &mut ShardState,
        key: SessionKey,
        granted: QoS,
        encodings: &mut EncodingCache<'_>,
    ) {
        let ShardState {
            sessions,
            scratch_actions: actions,
            ..
        } = state;
        let Some(slot) = sessions.get_mut(&key) else {
            return;
        };
        let message = encodings.message;
        let qos = message.qos.min(granted);
        if qos == QoS::AtMostOnce {
            if let Some(conn) = &slot.conn {
                let frame = Frame::Publish {
                    packet: encodings.get(qos).clone(),
                    packet_id: None,
                    dup: false,
                };
                if conn.send_droppable(frame) {
                    Counters::add(&self.counters.publish_sent, 1);
                } else {
                    Counters::add(&self.counters.publish_dropped, 1);
                }
            }
            return;
        }
        let delivered = Message {
            topic: message.topic.clone(),
            payload: message.payload.clone(),
            qos,
            retain: encodings.retain,
        };
        actions.clear();
        let online = slot.conn.is_some();
        if let Err(full) = slot.state.outgoing.offer(delivered, online, actions) {
            Counters::add(&self.counters.publish_dropped, 1);
            match &slot.conn {
                Some(conn) => conn.record_flow_drop(),
                None => {
                    tracing::debug!(client_id = %slot.state.client_id, %full, "message for offline client dropped")
                }
            }
            return;
        }
        if let Some(conn) = &slot.conn {
            conn.record_queued();
            for action in actions.drain(..) {
                Counters::add(&self.counters.publish_sent, 1);
                // The offer may first release older queued messages: only the offered one
                // shares this fan-out's encoding.
                let shared = match &action {
                    FlowAction::Publish { message: sent, .. } if is_same(sent, message) => {
                        Some(encodings.get(qos))
                    }
                    _ => None,
                };
                conn.send_flow_action(action, shared);
            }
        }
    }

    /// Handles a message from another core. Never waits on a peer (see `Peers::post`).
    pub async fn on_peer_message(&self, from: ShardId, msg: ShardMsg) {
        match msg {
            ShardMsg::Publish(message) => self.deliver_local(&message).await,
            ShardMsg::Interest { filter, present } => self
                .state
                .borrow_mut()
                .interest
                .set_remote(from, &filter, present),
            ShardMsg::Barrier { token } => self.peers.post(from, ShardMsg::Ack { token }),
            ShardMsg::Ack { token } => self.on_ack(token),
            ShardMsg::RetainRequest { message, token } => {
                self.apply_retained_as_owner(message);
                // Posted after the replicas: every core that receives a later message from
                // this one already holds the update.
                self.peers.post(from, ShardMsg::Ack { token });
            }
            ShardMsg::RetainApply(message) => self.state.borrow_mut().retained.replicate(message),
            other => self.on_session_message(other),
        }
    }
}

/// Whether `a` is the very message `b` (same shared topic and payload buffers), as opposed to
/// an equal-looking one published separately.
fn is_same(a: &Message, b: &Message) -> bool {
    let same_bytes =
        |x: &bytes::Bytes, y: &bytes::Bytes| x.as_ptr() == y.as_ptr() && x.len() == y.len();
    same_bytes(a.topic.as_bytes(), b.topic.as_bytes()) && same_bytes(&a.payload, &b.payload)
}
