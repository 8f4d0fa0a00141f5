//! Topics: validated names and filters, and the tries that index them.

mod name;

pub use name::{TopicError, TopicFilter, TopicName, MAX_TOPIC_LEN};
