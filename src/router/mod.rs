//! The publish path: from a PUBLISH received on one core to every matching subscriber on every
//! core, and the retained store.
//!
//! A publish is offered to the retained store (via the topic's owner core), sent once to each
//! other core that announced a matching filter, delivered to this core's subscribers, and
//! handed to one member of each matching shared subscription group (`shared`). Local delivery
//! merges each session's matching subscriptions into one target (`target`), encodes the
//! PUBLISH once per wire layout (protocol family, QoS, RETAIN) and appends that shared
//! encoding to each subscriber's queue (`delivery`); the subscribers' connection tasks then
//! flush what gathered in one write. A message keeps its RETAIN flag and its MQTT 5 extras all the
//! way: each delivery decides what its subscriber is shown.

mod delivery;
mod interest;
mod retained;
mod shared;
mod subscriptions;
mod target;

pub use interest::Interest;
pub use retained::{RetainOutcome, RetainedStore};
pub use shared::{shared_filter, InvalidSharedFilter, MemberState, SharedDelivery, SharedGroups};
pub use target::{Target, TargetIds};

use std::rc::Rc;
use std::time::Instant;

use crate::message::Message;
use crate::session::Subscription;
use crate::shard::{AckWait, Durable, SessionKey, Shard, ShardId, ShardMsg};
use crate::topic::TopicFilter;
use delivery::EncodingCache;

/// Subscribers served between two chances for other tasks of the core to run.
const FANOUT_CHUNK: usize = 256;

/// A publish handed to every subscriber whose publisher's acknowledgement may still have to
/// wait for durable copies of it (persistent sessions, with persistence on).
#[must_use = "the acknowledgement waits for `settled`"]
pub struct Routed {
    /// Whether any subscriber, on any core, matched.
    matched: bool,
    /// The copies this core queued for its persistent sessions.
    local_copies: Option<Durable>,
    /// The other cores' acknowledgements of their durable copies.
    remote_copies: Option<(u64, Rc<AckWait>)>,
    /// The same, from the cores of shared subscription members.
    shared_copies: Option<(u64, Rc<AckWait>)>,
}

impl Routed {
    /// Whether any subscriber, on any core, matched.
    pub fn is_matched(&self) -> bool {
        self.matched
    }

    /// Whether the acknowledgement needs no wait at all.
    pub fn is_settled(&self) -> bool {
        self.local_copies.is_none() && self.remote_copies.is_none() && self.shared_copies.is_none()
    }

    /// Waits until every copy is durable; returns whether any subscriber matched.
    pub async fn settled(self, shard: &Shard) -> bool {
        if let Some(durable) = self.local_copies {
            durable.wait().await;
        }
        if let Some((token, wait)) = self.remote_copies {
            shard.wait_for_acks(token, wait, "persistent copies").await;
        }
        if let Some((token, wait)) = self.shared_copies {
            shard
                .wait_for_acks(token, wait, "persistent shared copies")
                .await;
        }
        self.matched
    }
}

impl Shard {
    /// Routes a PUBLISH received from session `origin` of this core (its client's will
    /// included); returns whether any subscriber, on any core, matched it (an MQTT 5 publisher
    /// is told when none did). The message keeps its RETAIN flag on its way: each delivery
    /// decides whether to show it (see `EncodingCache::retain`).
    pub async fn publish(&self, message: Message, origin: SessionKey) -> bool {
        self.route(message, Some(origin)).await.settled(self).await
    }

    /// [`Shard::publish`] up to the waits for persistent copies: the message has reached
    /// every subscriber (in order with the publisher's other messages) when this returns,
    /// and what is left to wait for before the publisher's acknowledgement comes with it.
    pub async fn publish_unsettled(&self, message: Message, origin: SessionKey) -> Routed {
        self.route(message, Some(origin)).await
    }

    /// Routes a message the broker publishes itself (the `$SYS` tree): as a client's publish,
    /// but no session published it, so every matching subscription gets it.
    pub async fn publish_from_broker(&self, message: Message) -> bool {
        self.route(message, None).await.settled(self).await
    }

    /// The path of [`Shard::publish`]; `origin` is the publishing session, if one did. One
    /// fan-out in `PUBLISH_LATENCY_SAMPLE_EVERY` is timed from here, when the message has just
    /// been read.
    async fn route(&self, message: Message, origin: Option<SessionKey>) -> Routed {
        let received = self.metrics.latency_sample();
        if message.retain {
            self.retain(message.clone()).await;
        }
        let remote = self.state.borrow().interest.remote_shards(&message.topic);
        let matched_remote = !remote.is_empty();
        // Persistent sessions' copies must be durable before the publisher's acknowledgement.
        let mark = self.queued_mark(message.qos);
        let remote_acks =
            (mark.is_some() && matched_remote).then(|| self.expect_acks(remote.len()));
        for shard in remote {
            self.peers
                .send(
                    shard,
                    ShardMsg::Publish {
                        message: message.clone(),
                        received,
                        durable: remote_acks.as_ref().map(|(token, _)| *token),
                    },
                )
                .await;
        }
        let matched_local = self.deliver_local_timed(&message, origin, received).await;
        let shared = self.route_shared(&message, mark.is_some()).await;
        Routed {
            matched: matched_remote || matched_local || shared.matched,
            local_copies: self.queued_since(mark),
            remote_copies: remote_acks,
            shared_copies: shared.acks,
        }
    }

    /// Hands a retained publish to its topic's owner core, which orders and replicates it
    /// (and writes it, with persistence), and waits until it has: a SUBSCRIBE made after the
    /// publisher's PUBACK then finds it, and a restart too.
    async fn retain(&self, message: Message) {
        let owner = self.owner_of(message.topic.as_bytes());
        if owner == self.id {
            self.wait_for_persistence_room().await;
            if let Some(durable) = self.apply_retained_as_owner(message) {
                durable.wait().await;
            }
        } else {
            let (token, wait) = self.expect_acks(1);
            self.peers
                .send(owner, ShardMsg::RetainRequest { message, token })
                .await;
            self.wait_for_acks(token, wait, "retained publish").await;
        }
    }

    /// Applies a retained update on the owner core, replicates it if accepted and writes it
    /// to this core's log; returns what its acknowledgement must wait for.
    fn apply_retained_as_owner(&self, message: Message) -> Option<Durable> {
        let outcome = self.state.borrow_mut().retained.apply(message.clone());
        match outcome {
            RetainOutcome::Refused => {
                tracing::warn!(
                    topic = %message.topic,
                    "retained message not stored: max_retained_messages or max_retained_bytes reached"
                );
                None
            }
            RetainOutcome::Stored | RetainOutcome::Cleared => {
                self.peers
                    .broadcast(|| ShardMsg::RetainApply(message.clone()));
                self.persist_retained(&message)
            }
        }
    }

    /// Delivers a message to this core's matching subscribers: once per session, at the
    /// highest QoS among its matching subscriptions. `origin` is the publisher's session when
    /// it is on this core (a session lives on one core: another core never holds it), whose
    /// no-local subscriptions do not match. Returns whether any subscription matched. One
    /// call in `PUBLISH_LATENCY_SAMPLE_EVERY` is timed from its start.
    pub async fn deliver_local(&self, message: &Message, origin: Option<SessionKey>) -> bool {
        let received = self.metrics.latency_sample();
        self.deliver_local_timed(message, origin, received).await
    }

    /// [`Shard::deliver_local`], timed from `received` when that is `Some`.
    async fn deliver_local_timed(
        &self,
        message: &Message,
        origin: Option<SessionKey>,
        received: Option<Instant>,
    ) -> bool {
        if message.is_expired() {
            return false;
        }
        let mut targets = {
            let mut state = self.state.borrow_mut();
            let mut targets = std::mem::take(&mut state.scratch_targets);
            state
                .subscriptions
                .for_each_match(&message.topic, |key, subscription| {
                    if !(subscription.no_local && origin == Some(key)) {
                        targets.push(Target::new(key, subscription));
                    }
                });
            targets
        };
        if targets.is_empty() {
            self.state.borrow_mut().scratch_targets = targets;
            return false;
        }
        target::merge_by_session(&mut targets);
        let mut encodings = EncodingCache::new(message, false).timed(received);
        for chunk in targets.chunks(FANOUT_CHUNK) {
            {
                let mut state = self.state.borrow_mut();
                for target in chunk {
                    let own = origin == Some(target.key);
                    self.deliver_to(&mut state, target, own, None, &mut encodings);
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

    /// Sends the retained messages matching `filter` to a session that just subscribed
    /// through `subscription`.
    pub fn deliver_retained(
        &self,
        key: SessionKey,
        filter: &TopicFilter,
        subscription: &Subscription,
    ) {
        let target = Target::new(key, subscription);
        let mut matching = Vec::new();
        self.state
            .borrow()
            .retained
            .for_each_match(filter, |message| matching.push(message.clone()));
        let mut state = self.state.borrow_mut();
        for message in matching.iter().filter(|message| !message.is_expired()) {
            let mut encodings = EncodingCache::new(message, true);
            self.deliver_to(&mut state, &target, false, None, &mut encodings);
        }
    }

    /// Handles a message from another core. Never waits on a peer (see `Peers::post`).
    pub async fn on_peer_message(&self, from: ShardId, msg: ShardMsg) {
        match msg {
            ShardMsg::Publish {
                message,
                received,
                durable,
            } => {
                let mark = durable.and_then(|_| self.queued_mark(message.qos));
                self.deliver_local_timed(&message, None, received).await;
                if let Some(token) = durable {
                    self.ack_when_queued(from, token, mark);
                }
            }
            ShardMsg::Interest { filter, present } => self
                .state
                .borrow_mut()
                .interest
                .set_remote(from, &filter, present),
            ShardMsg::Barrier { token } => self.peers.post(from, ShardMsg::Ack { token }),
            ShardMsg::Ack { token } => self.on_ack(token),
            ShardMsg::RetainRequest { message, token } => {
                let durable = self.apply_retained_as_owner(message);
                // Posted after the replicas: every core that receives a later message from
                // this one already holds the update.
                self.ack_when_durable(from, token, durable);
            }
            ShardMsg::RetainApply(message) => {
                self.state.borrow_mut().retained.replicate(message);
                // A peer replaying its whole store at start-up sends these without pause.
                glommio::yield_if_needed().await;
            }
            ShardMsg::SharedMember { filter, key, state } => self
                .state
                .borrow_mut()
                .shared
                .set_member(&filter, from, key, state),
            ShardMsg::SharedPublish(delivery) => self.on_shared_publish(from, &delivery),
            ShardMsg::Metrics(snapshot) => self.accept_snapshot(*snapshot),
            other => self.on_session_message(other),
        }
    }
}
