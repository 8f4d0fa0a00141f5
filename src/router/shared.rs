//! Shared subscriptions, `$share/<group>/<filter>` [MQTT-4.8.2] (offered to MQTT 3.1.1 clients
//! too, as Mosquitto does): each message matching a group's filter goes to one member of the
//! group, at the QoS that member was granted.
//!
//! Distribution policy. Every core knows the members of every group on every core: a core
//! announces its sessions joining a group, leaving it, and their clients going offline and
//! coming back (`ShardMsg::SharedMember`), before the SUBACK of the SUBSCRIBE that joined.
//! The core where a message is published picks one member per matching group, round-robin
//! over all the group's members on every core, skipping members whose client is offline while
//! any member is online, and hands the message to the member's core (`ShardMsg::SharedPublish`,
//! on the same FIFO channel as the core's other publishes, so per-publisher order holds), which
//! delivers it through the member's session. Each core keeps its own turn per group: one
//! publisher's messages are spread exactly in turn; several publishers on several cores each
//! spread theirs.
//!
//! When a member leaves. QoS 1/2 messages already handed to a member (in flight, or queued in
//! its session) stay with its session while it lasts: a persistent session gets them when its
//! client returns. When the session ends, its copy of each message remembers the group it came
//! through (`Message::shared_group`), and the messages another client may still be given (those
//! never sent, and QoS 1 ones not acknowledged) go to the group's member in turn at the next
//! housekeeping [MQTT-4.8.2]; a QoS 2 message already sent goes to no other client
//! [MQTT-4.8.2-5]. A message that reaches its member's core after the member left (between
//! the pick and its arrival) goes to another member the same way. The copies read back from
//! disk after a restart do not remember their group, and end with their session. While every
//! member is offline, messages still go to them in turn: QoS 1/2 ones wait in their sessions,
//! QoS 0 ones are dropped.
//!
//! Durability. With persistence, a QoS 1/2 message handed to a member on another core carries
//! a token (`SharedDelivery::durable`), as a plain publish to another core does: the member's
//! core answers `Ack { token }` once the copy it queued for a persistent session is as durable
//! as `sync` promises, and the publisher's PUBACK/PUBREC waits for every such answer. A
//! message handed to another member because the first one left is not: between the first
//! member's session ending (its records say so at once) and the copy queued for the second
//! one, it is only in memory, for up to a housekeeping tick; a crash, or a shutdown, in that
//! window loses it, as it lost every such message before they were handed on.

use std::rc::Rc;

use ahash::AHashMap;
use smallvec::SmallVec;

use crate::message::Message;
use crate::metrics::DropReason;
use crate::session::OutgoingFlow;
use crate::shard::{AckWait, Counters, SessionKey, Shard, ShardId, ShardMsg, ShardState};
use crate::topic::{SubscriptionTrie, TopicFilter, TopicName};

use super::delivery::EncodingCache;
use super::Target;

/// The first level of shared subscription filters, with its separator.
const SHARED_PREFIX: &str = "$share/";

/// What a core announces about one of its sessions in a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// A member whose client is connected.
    Online,
    /// A member whose (persistent) session waits for its client.
    Offline,
    /// No longer a member (unsubscribed, or its session ended).
    Left,
}

/// Whether `filter` is a shared subscription: `None` if it is not one, else the filter its
/// group matches topics with, or `Err` for a malformed one (an empty share name or one with a
/// wildcard, or no filter after it), which is refused with 0x8F Topic Filter invalid.
pub fn shared_filter(filter: &TopicFilter) -> Option<Result<TopicFilter, InvalidSharedFilter>> {
    let rest = filter.as_str().strip_prefix(SHARED_PREFIX)?;
    let Some((name, inner)) = rest.split_once('/') else {
        return Some(Err(InvalidSharedFilter));
    };
    if name.is_empty() || name.contains(['+', '#']) || inner.is_empty() {
        return Some(Err(InvalidSharedFilter));
    }
    let start = filter.as_str().len() - inner.len();
    Some(TopicFilter::new(filter.as_bytes().slice(start..)).map_err(|_| InvalidSharedFilter))
}

/// A `$share/...` filter that is not a valid shared subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("shared subscription filters are $share/<name>/<filter>, the name without wildcards")]
pub struct InvalidSharedFilter;

/// One member of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Member {
    shard: ShardId,
    key: SessionKey,
    online: bool,
}

/// One group: its members on every core and this core's turn.
#[derive(Debug)]
struct Group {
    /// The whole `$share/...` filter: the group's name in messages between cores and in the
    /// members' sessions.
    filter: TopicFilter,
    /// The filter topics are matched with.
    inner: TopicFilter,
    members: Vec<Member>,
    /// Where this core's round-robin resumes.
    next: usize,
}

impl Group {
    /// The next member in turn: the next online one, or the next one if none is online.
    fn pick(&mut self) -> Option<Member> {
        let count = self.members.len();
        let start = self.next % count.max(1);
        let chosen = (0..count)
            .map(|step| (start + step) % count)
            .find(|&index| self.members[index].online)
            .or((count > 0).then_some(start))?;
        self.next = chosen + 1;
        Some(self.members[chosen])
    }
}

/// Every shared subscription group known to this core, with members on every core.
#[derive(Debug, Default)]
pub struct SharedGroups {
    /// Groups by slot; a freed slot is reused.
    groups: Vec<Option<Group>>,
    free: Vec<u32>,
    /// Slot of each group, by its whole filter.
    slots: AHashMap<TopicFilter, u32>,
    /// The groups' filters, to match topics with.
    trie: SubscriptionTrie<u32, ()>,
}

impl SharedGroups {
    /// Records what core `shard` says of its session `key` in the group of `filter`.
    pub fn set_member(
        &mut self,
        filter: &TopicFilter,
        shard: ShardId,
        key: SessionKey,
        state: MemberState,
    ) {
        let slot = match self.slots.get(filter) {
            Some(&slot) => slot,
            None if state == MemberState::Left => return,
            None => match shared_filter(filter) {
                Some(Ok(inner)) => self.create(filter, inner),
                _ => return,
            },
        };
        let Some(group) = self.groups.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        let position = group
            .members
            .iter()
            .position(|member| member.shard == shard && member.key == key);
        match (state, position) {
            (MemberState::Left, Some(index)) => {
                group.members.remove(index);
                if group.members.is_empty() {
                    self.remove(slot);
                }
            }
            (MemberState::Left, None) => {}
            (_, Some(index)) => group.members[index].online = state == MemberState::Online,
            (_, None) => group.members.push(Member {
                shard,
                key,
                online: state == MemberState::Online,
            }),
        }
    }

    fn create(&mut self, filter: &TopicFilter, inner: TopicFilter) -> u32 {
        let group = Group {
            filter: filter.clone(),
            inner,
            members: Vec::new(),
            next: 0,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.groups[slot as usize] = Some(group);
                slot
            }
            None => {
                self.groups.push(Some(group));
                // Slots are bounded by the subscriptions of every core, far below u32::MAX.
                u32::try_from(self.groups.len() - 1).unwrap_or(u32::MAX)
            }
        };
        if let Some(Some(group)) = self.groups.get(slot as usize) {
            self.trie.insert(&group.inner, slot, ());
        }
        self.slots.insert(filter.clone(), slot);
        slot
    }

    fn remove(&mut self, slot: u32) {
        if let Some(group) = self.groups.get_mut(slot as usize).and_then(Option::take) {
            self.trie.remove(&group.inner, slot);
            self.slots.remove(&group.filter);
            self.free.push(slot);
        }
    }

    /// For each group whose filter matches `topic`, the member in turn: (group filter,
    /// member's core, member's session).
    pub fn pick(&mut self, topic: &TopicName) -> SmallVec<[(TopicFilter, ShardId, SessionKey); 2]> {
        let mut slots: SmallVec<[u32; 4]> = SmallVec::new();
        self.trie.for_each_match(topic, |slot, _| slots.push(slot));
        slots
            .into_iter()
            .filter_map(|slot| {
                let group = self.groups.get_mut(slot as usize)?.as_mut()?;
                let member = group.pick()?;
                Some((group.filter.clone(), member.shard, member.key))
            })
            .collect()
    }

    /// The member in turn in the group of the whole `$share/...` filter `filter`, if the
    /// group has one: (member's core, member's session).
    pub fn pick_member(&mut self, filter: &TopicFilter) -> Option<(ShardId, SessionKey)> {
        let slot = *self.slots.get(filter)?;
        let member = self.groups.get_mut(slot as usize)?.as_mut()?.pick()?;
        Some((member.shard, member.key))
    }

    /// Groups known.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no group is known.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// A message for one member of a shared subscription group, on the member's core.
#[derive(Debug)]
pub struct SharedDelivery {
    /// The message.
    pub message: Message,
    /// The member's session.
    pub key: SessionKey,
    /// The group's whole `$share/...` filter (the member's subscription to it says how).
    pub filter: TopicFilter,
    /// With persistence, for a QoS 1/2 message: answer `Ack { token }` once the record of the
    /// copy queued for the member's persistent session is durable (the publisher's
    /// acknowledgement waits for it).
    pub durable: Option<u64>,
    /// The message was first given to a member that left: the member's core counts it as
    /// redelivered when the member takes it.
    pub redelivery: bool,
}

/// What a publish handed to shared subscription groups must still wait for.
pub(super) struct SharedRouting {
    /// Whether any group matched.
    pub matched: bool,
    /// The acknowledgements owed by the cores of the members chosen on other cores, when the
    /// publisher's acknowledgement depends on their durable copies.
    pub acks: Option<(u64, Rc<AckWait>)>,
}

impl Shard {
    /// Hands `message` to one member of each shared subscription group it matches. With
    /// `durable` (the publisher's acknowledgement waits for persistent copies), each member
    /// chosen on another core is asked to acknowledge its durable copy.
    pub(super) async fn route_shared(&self, message: &Message, durable: bool) -> SharedRouting {
        let picks = self.state.borrow_mut().shared.pick(&message.topic);
        let remote = picks
            .iter()
            .filter(|(_, shard, _)| *shard != self.id)
            .count();
        let acks = (durable && remote > 0).then(|| self.expect_acks(remote));
        let token = acks.as_ref().map(|(token, _)| *token);
        let matched = !picks.is_empty();
        for (filter, shard, key) in picks {
            let delivery = SharedDelivery {
                message: message.clone(),
                key,
                filter,
                durable: token.filter(|_| shard != self.id),
                redelivery: false,
            };
            self.hand_to_member(shard, delivery).await;
        }
        SharedRouting { matched, acks }
    }

    /// Delivers `delivery` to its member on core `shard`: here at once, or through that core.
    async fn hand_to_member(&self, shard: ShardId, delivery: SharedDelivery) {
        if shard == self.id {
            self.deliver_shared(&delivery);
        } else {
            self.peers
                .send(shard, ShardMsg::SharedPublish(Box::new(delivery)))
                .await;
        }
    }

    /// Hands each message of the members that left since the last call (their sessions ended,
    /// or they left before a message chosen for them arrived) to another member of the shared
    /// subscription group it came through [MQTT-4.8.2]; the member that left is no longer in
    /// this core's list. A message whose group has no member left is dropped and counted as
    /// `shared_member_left`. Run periodically.
    pub async fn redeliver_shared_orphans(&self) {
        let orphans = std::mem::take(&mut self.state.borrow_mut().shared_orphans);
        for (filter, message) in orphans {
            self.queue_budget.release(message.queued_size());
            let member = self.state.borrow_mut().shared.pick_member(&filter);
            let Some((shard, key)) = member else {
                tracing::debug!(%filter, "no member left in the group to take a message of a member that left");
                self.metrics.dropped(DropReason::SharedMemberLeft, 1);
                continue;
            };
            let delivery = SharedDelivery {
                message,
                key,
                filter,
                durable: None,
                redelivery: true,
            };
            self.hand_to_member(shard, delivery).await;
        }
    }

    /// Keeps `message`, chosen for a member of the group of `filter` that left, for
    /// [`Shard::redeliver_shared_orphans`]. Until then it is charged to the core's queue
    /// budget (`max_queued_bytes_total`), as it was in the member's queue.
    fn keep_orphan(&self, state: &mut ShardState, filter: TopicFilter, message: Message) {
        self.queue_budget.charge(message.queued_size());
        state.shared_orphans.push((filter, message));
    }

    /// Keeps, for [`Shard::redeliver_shared_orphans`], the messages of an ending session's
    /// `outgoing` flow that came through a shared subscription group and that another member
    /// may still be given (see [`OutgoingFlow::transferable`]).
    pub fn keep_shared_orphans(&self, state: &mut ShardState, outgoing: &OutgoingFlow) {
        for message in outgoing.transferable() {
            if let Some(group) = message.shared_group() {
                self.keep_orphan(state, group.clone(), message.undelivered());
            }
        }
    }

    /// Delivers a shared subscription's message sent by core `from` to its member here, then
    /// answers its durability token, if it has one, once the copy queued here is durable.
    pub(super) fn on_shared_publish(&self, from: ShardId, delivery: &SharedDelivery) {
        let mark = delivery
            .durable
            .and_then(|_| self.queued_mark(delivery.message.qos));
        self.deliver_shared(delivery);
        if let Some(token) = delivery.durable {
            self.ack_when_queued(from, token, mark);
        }
    }

    /// Delivers a shared subscription's message to its chosen member on this core, through
    /// the member's subscription. If the member left meanwhile, the message goes to another
    /// member at the next housekeeping (see [`Shard::redeliver_shared_orphans`]).
    pub fn deliver_shared(&self, delivery: &SharedDelivery) {
        if delivery.message.is_expired() {
            self.metrics.dropped(DropReason::Expired, 1);
            return;
        }
        let mut state = self.state.borrow_mut();
        let subscription = state
            .sessions
            .get(&delivery.key)
            .and_then(|slot| slot.state.subscriptions.get(&delivery.filter).copied());
        let Some(subscription) = subscription else {
            tracing::debug!(filter = %delivery.filter, "shared subscription member left before its message arrived: another member gets it");
            self.keep_orphan(
                &mut state,
                delivery.filter.clone(),
                delivery.message.clone(),
            );
            return;
        };
        let target = Target::new(delivery.key, &subscription);
        let mut encodings = EncodingCache::new(&delivery.message, false);
        let taken = self.deliver_to(
            &mut state,
            &target,
            false,
            Some(&delivery.filter),
            &mut encodings,
        );
        if taken && delivery.redelivery {
            Counters::add(&self.counters.shared_redelivered, 1);
        }
    }

    /// Tells every core (this one included) that session `key` of this core is now `state`
    /// in each shared subscription group it belongs to: its client connected or went away.
    pub fn announce_shared_presence(
        &self,
        shard_state: &mut ShardState,
        key: SessionKey,
        state: MemberState,
    ) {
        let Some(slot) = shard_state.sessions.get(&key) else {
            return;
        };
        let filters: SmallVec<[TopicFilter; 2]> = slot
            .state
            .subscriptions
            .keys()
            .filter(|filter| filter.as_str().starts_with(SHARED_PREFIX))
            .cloned()
            .collect();
        for filter in filters {
            self.announce_member(shard_state, &filter, key, state);
        }
    }

    /// Records and broadcasts session `key`'s new `state` in the group of `filter`.
    pub(super) fn announce_member(
        &self,
        shard_state: &mut ShardState,
        filter: &TopicFilter,
        key: SessionKey,
        state: MemberState,
    ) {
        shard_state.shared.set_member(filter, self.id, key, state);
        self.peers.broadcast(|| ShardMsg::SharedMember {
            filter: filter.clone(),
            key,
            state,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::try_from(text).expect("valid filter")
    }

    fn topic(text: &str) -> TopicName {
        TopicName::try_from(text).expect("valid topic")
    }

    #[test]
    fn shared_filters_are_recognised_and_checked() {
        assert_eq!(shared_filter(&filter("a/b")), None);
        assert_eq!(
            shared_filter(&filter("$share/g/a/+")),
            Some(Ok(filter("a/+")))
        );
        for bad in [
            "$share/g",
            "$share//a",
            "$share/+/a",
            "$share/#",
            "$share/g/",
        ] {
            assert_eq!(
                shared_filter(&filter(bad)),
                Some(Err(InvalidSharedFilter)),
                "{bad}"
            );
        }
    }

    #[test]
    fn members_are_picked_in_turn_online_ones_first() {
        let mut groups = SharedGroups::default();
        let shared = filter("$share/g/t/#");
        groups.set_member(&shared, 0, 1, MemberState::Online);
        groups.set_member(&shared, 1, 2, MemberState::Online);
        groups.set_member(&shared, 1, 3, MemberState::Online);
        let keys: Vec<SessionKey> = (0..6).map(|_| groups.pick(&topic("t/x"))[0].2).collect();
        assert_eq!(keys, [1, 2, 3, 1, 2, 3]);
        assert!(groups.pick(&topic("other")).is_empty());

        groups.set_member(&shared, 1, 2, MemberState::Offline);
        let keys: Vec<SessionKey> = (0..4).map(|_| groups.pick(&topic("t/x"))[0].2).collect();
        assert_eq!(keys, [1, 3, 1, 3]);

        groups.set_member(&shared, 0, 1, MemberState::Offline);
        groups.set_member(&shared, 1, 3, MemberState::Offline);
        let keys: Vec<SessionKey> = (0..3).map(|_| groups.pick(&topic("t/x"))[0].2).collect();
        assert_eq!(keys.len(), 3, "all offline: still in turn");
    }

    #[test]
    fn a_group_without_members_is_forgotten_and_its_slot_reused() {
        let mut groups = SharedGroups::default();
        let first = filter("$share/a/t");
        groups.set_member(&first, 0, 1, MemberState::Online);
        groups.set_member(&first, 0, 1, MemberState::Left);
        assert!(groups.is_empty());
        assert!(groups.pick(&topic("t")).is_empty());
        let second = filter("$share/b/t");
        groups.set_member(&second, 0, 1, MemberState::Online);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups.groups.len(), 1, "the slot is reused");
        assert_eq!(groups.pick(&topic("t"))[0].0, second);
    }

    #[test]
    fn a_member_is_picked_by_group_name_in_the_same_turn() {
        let mut groups = SharedGroups::default();
        let shared = filter("$share/g/t/#");
        groups.set_member(&shared, 0, 1, MemberState::Online);
        groups.set_member(&shared, 1, 2, MemberState::Online);
        assert_eq!(groups.pick(&topic("t/x"))[0].2, 1);
        assert_eq!(groups.pick_member(&shared), Some((1, 2)));
        assert_eq!(groups.pick(&topic("t/x"))[0].2, 1);
        assert_eq!(groups.pick_member(&filter("$share/other/t/#")), None);
        groups.set_member(&shared, 0, 1, MemberState::Left);
        groups.set_member(&shared, 1, 2, MemberState::Left);
        assert_eq!(groups.pick_member(&shared), None, "no member left");
    }
}
