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
use crate::protocol::{EncodedPublish, ProtocolVersion, QoS};
use crate::shard::{Counters, SessionKey, Shard, ShardId, ShardMsg, ShardState};
use crate::topic::TopicFilter;

/// Subscribers served between two chances for other tasks of the core to run.
const FANOUT_CHUNK: usize = 256;

/// The encodings of one message made during one fan-out, one per wire layout: protocol
/// family (MQTT 3.1/3.1.1 or 5) and delivered QoS.
struct EncodingCache<'a> {
    message: &'a Message,
    retain: bool,
    by_layout: [[Option<EncodedPublish>; 3]; 2],
}

impl<'a> EncodingCache<'a> {
    fn new(message: &'a Message, retain: bool) -> Self {
        Self {
            message,
            retain,
            by_layout: Default::default(),
        }
    }

    fn get(&mut self, protocol: ProtocolVersion, qos: QoS) -> &EncodedPublish {
        let message = self.message;
        let retain = self.retain;
        let family = usize::from(protocol == ProtocolVersion::V5);
        self.by_layout[family][qos as usize]
            .get_or_insert_with(|| message.encode(protocol, qos, retain))
    }
}

impl Shard {
    /// Routes a PUBLISH received from a client of this core; returns whether any subscriber,
    /// on any core, matched it (an MQTT 5 publisher is told when none did).
    pub async fn publish(&self, message: Message) -> bool {
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
        let matched_remote = !remote.is_empty();
        for shard in remote {
            self.peers
                .send(shard, ShardMsg::Publish(live.clone()))
                .await;
        }
        let matched_local = self.deliver_local(&live).await;
        matched_remote || matched_local
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
    /// highest QoS among its matching subscriptions. Returns whether any subscription matched.
    pub async fn deliver_local(&self, message: &Message) -> bool {
        if message.is_expired() {
            return false;
        }
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
            return false;
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
        true
    }

    /// Sends the retained messages matching `filter` to a session that just subscribed.
    pub fn deliver_retained(&self, key: SessionKey, filter: &TopicFilter, granted: QoS) {
        let mut matching = Vec::new();
        self.state
            .borrow()
            .retained
            .for_each_match(filter, |message| matching.push(message.clone()));
        let mut state = self.state.borrow_mut();
        for message in matching.iter().filter(|message| !message.is_expired()) {
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
                let packet = encodings.get(conn.protocol, qos);
                if packet.len() > conn.max_packet_size() {
                    conn.record_too_large(packet.len());
                    Counters::add(&self.counters.publish_dropped, 1);
                    return;
                }
                let frame = Frame::Publish {
                    packet: packet.clone(),
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
            qos,
            retain: encodings.retain,
            ..message.clone()
        };
        let shared = match &slot.conn {
            Some(conn) => {
                let packet = encodings.get(conn.protocol, qos);
                if packet.len() > conn.max_packet_size() {
                    conn.record_too_large(packet.len());
                    Counters::add(&self.counters.publish_dropped, 1);
                    return;
                }
                Some(packet)
            }
            None => None,
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
            // The offer may first release older queued messages: only the offered one
            // shares this fan-out's encoding.
            let sent = conn.send_flow_actions(
                &mut slot.state.outgoing,
                actions,
                shared.map(|packet| (message, packet)),
            );
            Counters::add(&self.counters.publish_sent, sent.publishes);
            Counters::add(&self.counters.publish_dropped, sent.dropped);
        }
    }

    /// Handles a message from another core. Never waits on a peer (see `Peers::post`).
    pub async fn on_peer_message(&self, from: ShardId, msg: ShardMsg) {
        match msg {
            ShardMsg::Publish(message) => {
                self.deliver_local(&message).await;
            }
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
