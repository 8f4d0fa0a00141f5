//! Which cores have subscribers for which filters, so that a publish crosses to a core only
//! when that core has a matching subscriber.

use ahash::AHashMap;
use smallvec::SmallVec;

use crate::shard::ShardId;
use crate::topic::{SubscriptionTrie, TopicFilter, TopicName};

/// This core's view of subscription interest: its own filters (counted, to announce only the
/// first subscription and the last unsubscription of each) and the filters announced by the
/// other cores.
#[derive(Default)]
pub struct Interest {
    local: AHashMap<TopicFilter, u32>,
    remote: SubscriptionTrie<ShardId, ()>,
}

impl Interest {
    /// Counts one more local subscription to `filter`; true when it is the first, so that the
    /// other cores must be told.
    pub fn add_local(&mut self, filter: &TopicFilter) -> bool {
        let count = self.local.entry(filter.clone()).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// Counts one local subscription to `filter` fewer; true when it was the last.
    pub fn remove_local(&mut self, filter: &TopicFilter) -> bool {
        match self.local.get_mut(filter) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                self.local.remove(filter);
                true
            }
            None => false,
        }
    }

    /// Records what core `shard` announced about `filter`.
    pub fn set_remote(&mut self, shard: ShardId, filter: &TopicFilter, present: bool) {
        if present {
            self.remote.insert(filter, shard, ());
        } else {
            self.remote.remove(filter, shard);
        }
    }

    /// The other cores with a subscriber matching `topic`, each once.
    pub fn remote_shards(&self, topic: &TopicName) -> SmallVec<[ShardId; 8]> {
        let mut shards = SmallVec::new();
        self.remote.for_each_match(topic, |shard, _| {
            if !shards.contains(&shard) {
                shards.push(shard);
            }
        });
        shards
    }

    /// Distinct filters subscribed on this core.
    pub fn local_filters(&self) -> usize {
        self.local.len()
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
    fn only_the_first_and_last_local_subscription_are_announced() {
        let mut interest = Interest::default();
        assert!(interest.add_local(&filter("a/#")));
        assert!(!interest.add_local(&filter("a/#")));
        assert!(!interest.remove_local(&filter("a/#")));
        assert!(interest.remove_local(&filter("a/#")));
        assert!(!interest.remove_local(&filter("a/#")));
        assert_eq!(interest.local_filters(), 0);
    }

    #[test]
    fn remote_shards_are_listed_once_per_matching_core() {
        let mut interest = Interest::default();
        interest.set_remote(1, &filter("a/#"), true);
        interest.set_remote(1, &filter("a/+"), true);
        interest.set_remote(2, &filter("b"), true);
        assert_eq!(interest.remote_shards(&topic("a/x")).as_slice(), &[1]);
        assert!(interest.remote_shards(&topic("c")).is_empty());
        interest.set_remote(1, &filter("a/#"), false);
        interest.set_remote(1, &filter("a/+"), false);
        assert!(interest.remote_shards(&topic("a/x")).is_empty());
    }
}
