//! Adding and removing a session's subscriptions on its core: the trie that local delivery
//! matches against, and the interest announcements that let other cores forward to this one
//! (shared subscriptions instead join their group on every core: see `shared`).

use super::shared::{self, MemberState};
use crate::session::Subscription;
use crate::shard::{SessionKey, Shard, ShardMsg, ShardState};
use crate::topic::TopicFilter;

impl Shard {
    /// Subscribes session `key` to `filters`, then waits for one acknowledged round trip with
    /// every other core. Each core-to-core channel is FIFO, so once it returns every core has
    /// recorded this core's filters (including ones announced by a concurrent SUBSCRIBE that
    /// has not finished yet), and this core holds every retained update acknowledged before:
    /// a publish made anywhere after the SUBACK reaches the subscriber, and the retained
    /// messages it is sent are current.
    pub async fn subscribe(&self, key: SessionKey, filters: &[(TopicFilter, Subscription)]) {
        {
            let mut state = self.state.borrow_mut();
            for (filter, granted) in filters {
                if let Some(slot) = state.sessions.get_mut(&key) {
                    let replaced = slot
                        .state
                        .subscriptions
                        .insert(filter.clone(), *granted)
                        .is_some();
                    if shared::shared_filter(filter).is_some() {
                        if !replaced {
                            self.announce_member(&mut state, filter, key, MemberState::Online);
                        }
                    } else if add_subscription(&mut state, key, filter, *granted, replaced) {
                        self.announce(filter, true);
                    }
                }
            }
        }
        self.round_trip_with_peers("subscription").await;
    }

    /// Waits for one acknowledged round trip with every other core: each core-to-core channel
    /// is FIFO, so every core has then handled what this one sent it before (`what` names
    /// the wait in the log line of one that timed out).
    pub async fn round_trip_with_peers(&self, what: &'static str) {
        if self.count == 1 {
            return;
        }
        let (token, wait) = self.expect_acks(self.count - 1);
        self.peers.broadcast(|| ShardMsg::Barrier { token });
        self.wait_for_acks(token, wait, what).await;
    }

    /// Removes session `key`'s subscription to `filter`; returns whether it existed.
    pub fn unsubscribe(&self, key: SessionKey, filter: &TopicFilter) -> bool {
        let mut state = self.state.borrow_mut();
        let existed = match state.sessions.get_mut(&key) {
            Some(slot) => slot.state.subscriptions.remove(filter).is_some(),
            None => false,
        };
        if existed {
            self.forget_subscription(&mut state, key, filter);
        }
        existed
    }

    /// Replaces the options of session `key`'s existing subscription to `filter`, in the
    /// session and in the trie (the filter stays, so no other core needs telling).
    pub fn update_subscription(
        &self,
        key: SessionKey,
        filter: &TopicFilter,
        updated: Subscription,
    ) {
        let mut state = self.state.borrow_mut();
        let Some(slot) = state.sessions.get_mut(&key) else {
            return;
        };
        let Some(existing) = slot.state.subscriptions.get_mut(filter) else {
            return;
        };
        *existing = updated;
        if shared::shared_filter(filter).is_none() {
            state.subscriptions.insert(filter, key, updated);
        }
    }

    /// Takes every subscription of session `key` out of this core's trie and interest (the
    /// session keeps its own list, to be re-added here or on another core).
    pub fn detach_subscriptions(&self, state: &mut ShardState, key: SessionKey) {
        let filters: Vec<TopicFilter> = match state.sessions.get(&key) {
            Some(slot) => slot.state.subscriptions.keys().cloned().collect(),
            None => return,
        };
        for filter in &filters {
            self.forget_subscription(state, key, filter);
        }
    }

    fn forget_subscription(&self, state: &mut ShardState, key: SessionKey, filter: &TopicFilter) {
        if shared::shared_filter(filter).is_some() {
            self.announce_member(state, filter, key, MemberState::Left);
            return;
        }
        state.subscriptions.remove(filter, key);
        if state.interest.remove_local(filter) {
            self.announce(filter, false);
        }
    }

    fn announce(&self, filter: &TopicFilter, present: bool) {
        self.peers.broadcast(|| ShardMsg::Interest {
            filter: filter.clone(),
            present,
        });
    }
}

/// Records one subscription (already in the session, `replaced` saying whether it was there
/// before) in the trie; true when the filter is new to the core (the caller announces it).
fn add_subscription(
    state: &mut ShardState,
    key: SessionKey,
    filter: &TopicFilter,
    granted: Subscription,
    replaced: bool,
) -> bool {
    state.subscriptions.insert(filter, key, granted);
    !replaced && state.interest.add_local(filter)
}
