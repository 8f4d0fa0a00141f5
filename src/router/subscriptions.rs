//! Adding and removing a session's subscriptions on its core: the trie that local delivery
//! matches against, and the interest announcements that let other cores forward to this one.

use std::rc::Rc;
use std::time::Duration;

use crate::protocol::QoS;
use crate::shard::{InterestWait, SessionKey, Shard, ShardMsg, ShardState};
use crate::topic::TopicFilter;

/// Longest a SUBSCRIBE waits for the other cores to record its new filters.
const INTEREST_ACK_TIMEOUT: Duration = Duration::from_secs(5);

impl Shard {
    /// Subscribes session `key` to `filters` and answers once every other core knows about
    /// the filters that are new to this core, so that a publish made anywhere after the SUBACK
    /// reaches the subscriber.
    pub async fn subscribe(&self, key: SessionKey, filters: &[(TopicFilter, QoS)]) {
        let mut new_filters = Vec::new();
        {
            let mut state = self.state.borrow_mut();
            for (filter, granted) in filters {
                if add_subscription(&mut state, key, filter, *granted) {
                    new_filters.push(filter.clone());
                }
            }
        }
        if new_filters.is_empty() || self.count == 1 {
            return;
        }
        let token = self.new_token();
        let wait = Rc::new(InterestWait::default());
        wait.missing.set(new_filters.len() * (self.count - 1));
        self.interest_waits.borrow_mut().insert(token, wait.clone());
        for filter in new_filters {
            self.peers.broadcast(|| ShardMsg::Interest {
                filter: filter.clone(),
                present: true,
                token,
            });
        }
        let acknowledged = futures_lite::future::or(
            async {
                wait.done.notified().await;
                true
            },
            async {
                glommio::timer::sleep(INTEREST_ACK_TIMEOUT).await;
                false
            },
        )
        .await;
        if !acknowledged {
            self.interest_waits.borrow_mut().remove(&token);
            tracing::warn!("other cores did not acknowledge a subscription in time");
        }
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

    /// Puts every subscription session `key` already lists into this core's trie and
    /// interest (after a takeover brought the session here).
    pub fn attach_subscriptions(&self, state: &mut ShardState, key: SessionKey) {
        let filters: Vec<(TopicFilter, QoS)> = match state.sessions.get(&key) {
            Some(slot) => slot
                .state
                .subscriptions
                .iter()
                .map(|(filter, qos)| (filter.clone(), *qos))
                .collect(),
            None => return,
        };
        for (filter, granted) in filters {
            state.subscriptions.insert(&filter, key, granted);
            if state.interest.add_local(&filter) {
                self.announce(&filter, true);
            }
        }
    }

    fn forget_subscription(&self, state: &mut ShardState, key: SessionKey, filter: &TopicFilter) {
        state.subscriptions.remove(filter, key);
        if state.interest.remove_local(filter) {
            self.announce(filter, false);
        }
    }

    fn announce(&self, filter: &TopicFilter, present: bool) {
        self.peers.broadcast(|| ShardMsg::Interest {
            filter: filter.clone(),
            present,
            token: 0,
        });
    }
}

/// Records one subscription in the session and the trie; true when the filter is new to the
/// core (the caller announces it).
fn add_subscription(
    state: &mut ShardState,
    key: SessionKey,
    filter: &TopicFilter,
    granted: QoS,
) -> bool {
    let Some(slot) = state.sessions.get_mut(&key) else {
        return false;
    };
    let replaced = slot
        .state
        .subscriptions
        .insert(filter.clone(), granted)
        .is_some();
    state.subscriptions.insert(filter, key, granted);
    !replaced && state.interest.add_local(filter)
}
