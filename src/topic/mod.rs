//! Topics: validated names and filters, and the tries that index them.

mod name;
mod retained;
mod trie;

pub use name::{Levels, TopicError, TopicFilter, TopicName, MAX_TOPIC_LEN};
pub use retained::RetainedTree;
pub use trie::SubscriptionTrie;
