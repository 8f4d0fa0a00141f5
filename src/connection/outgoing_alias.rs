//! The topic aliases hydrant uses when it sends PUBLISHes to an MQTT 5 client
//! [MQTT-3.3.2.3.4]: a firehose repeats long topics, and an alias replaces the topic name
//! with two bytes.
//!
//! The client announces how many aliases it accepts (its CONNECT's Topic Alias Maximum; none
//! when absent [MQTT-3.3.2-9]) and hydrant uses at most that many, and at most
//! `[limits] max_topic_alias_out`. The aliases are decided as the writer drains the outgoing
//! queue, in wire order, so an alias is only ever used after the PUBLISH that defined it went
//! out on the same connection; the shared encoding of a fan-out is written with the alias
//! (see `EncodedPublish::write_aliased_to`), nothing is encoded per subscriber.
//!
//! Policy: a topic gets an alias the first time it is sent (topic name + alias); later
//! PUBLISHes send the alias with an empty topic name. When every alias is taken, the least
//! recently used one is given to the new topic (that PUBLISH carries the name again). A
//! re-delivery (DUP) always carries its topic name. Aliases belong to one connection
//! [MQTT-3.3.2-7]: every connection, a resumed session's too, starts with none.

use crate::protocol::{EncodedPublish, OutgoingAlias, TopicAlias};

/// One connection's aliases from broker to client. Empty, it costs one pointer: the table is
/// allocated when the first PUBLISH that can use an alias is written.
#[derive(Debug, Default)]
pub struct OutgoingAliases {
    /// Aliases this connection may use: the client's maximum within the broker's (0 = none).
    max: u16,
    /// The largest packet the client accepts: a PUBLISH that would exceed it with the alias
    /// goes without.
    max_packet_size: u32,
    /// The table, once a topic has an alias.
    table: Option<Box<AliasTable>>,
}

/// The topics that have an alias: alias `n` at index `n - 1`.
#[derive(Debug, Default)]
struct AliasTable {
    topics: Vec<AliasedTopic>,
    /// Counts the uses of any alias: the least recently used one has the smallest stamp.
    clock: u64,
}

/// A topic name that an alias stands for on the connection.
#[derive(Debug)]
struct AliasedTopic {
    /// A copy of its own: it must not pin a fan-out's shared header.
    name: Box<[u8]>,
    /// The table's clock when the alias was last sent.
    last_used: u64,
}

impl OutgoingAliases {
    /// At most `max` aliases (0 = none) for a client that accepts packets of at most
    /// `max_packet_size` bytes.
    pub fn new(max: u16, max_packet_size: u32) -> Self {
        Self {
            max,
            max_packet_size,
            table: None,
        }
    }

    /// How `packet` goes out now (`dup`: it is a re-delivery), recording the alias it
    /// defines; `None` to send it as encoded (no alias allowed, not an MQTT 5 PUBLISH with a
    /// topic name, or too large with the alias).
    pub fn alias_for(&mut self, packet: &EncodedPublish, dup: bool) -> Option<OutgoingAlias> {
        if self.max == 0 {
            return None;
        }
        let topic = packet.aliasable_topic()?;
        let max_packet_size = usize::try_from(self.max_packet_size).unwrap_or(usize::MAX);
        let fits = |alias| {
            packet
                .aliased_len(alias)
                .is_some_and(|len| len <= max_packet_size)
        };
        let table = self.table.get_or_insert_with(Box::default);
        table.clock += 1;
        let known = table
            .topics
            .iter()
            .position(|aliased| *aliased.name == *topic);
        let (index, alias) = match known {
            Some(index) => {
                let number = alias_number(index)?;
                let alias = if dup {
                    OutgoingAlias::Define(number)
                } else {
                    OutgoingAlias::Use(number)
                };
                (index, alias)
            }
            None => {
                let index = if table.topics.len() < usize::from(self.max) {
                    table.topics.len()
                } else {
                    table.least_recently_used()?
                };
                (index, OutgoingAlias::Define(alias_number(index)?))
            }
        };
        if !fits(alias) {
            return None;
        }
        let clock = table.clock;
        match (known, table.topics.get_mut(index)) {
            (Some(_), Some(slot)) => slot.last_used = clock,
            (_, slot) => {
                let defined = AliasedTopic {
                    name: Box::from(topic),
                    last_used: clock,
                };
                match slot {
                    Some(slot) => *slot = defined,
                    None => table.topics.push(defined),
                }
            }
        }
        Some(alias)
    }
}

impl AliasTable {
    /// Index of the alias sent longest ago.
    fn least_recently_used(&self) -> Option<usize> {
        self.topics
            .iter()
            .enumerate()
            .min_by_key(|(_, aliased)| aliased.last_used)
            .map(|(index, _)| index)
    }
}

/// The alias at table index `index` (`None` past the largest alias, which a table bounded by
/// a `u16` maximum never reaches).
fn alias_number(index: usize) -> Option<TopicAlias> {
    TopicAlias::new(u16::try_from(index + 1).ok()?)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::{DeliveryProperties, MessageProperties, PublishTopic, QoS};
    use crate::topic::TopicName;

    fn publish(topic: &str) -> EncodedPublish {
        let properties = MessageProperties::default();
        EncodedPublish::new_v5(
            &PublishTopic::Name(TopicName::try_from(topic).expect("valid topic")),
            &Bytes::from_static(b"payload"),
            QoS::AtMostOnce,
            false,
            DeliveryProperties {
                message: &properties,
                message_expiry_interval: None,
                subscription_ids: &[],
            },
        )
    }

    fn define(n: u16) -> Option<OutgoingAlias> {
        TopicAlias::new(n).map(OutgoingAlias::Define)
    }

    fn reuse(n: u16) -> Option<OutgoingAlias> {
        TopicAlias::new(n).map(OutgoingAlias::Use)
    }

    #[test]
    fn a_topic_is_defined_once_then_sent_by_alias() {
        let mut aliases = OutgoingAliases::new(2, u32::MAX);
        assert!(aliases.table.is_none());
        assert_eq!(
            aliases.alias_for(&publish("a/long/topic"), false),
            define(1)
        );
        assert_eq!(aliases.alias_for(&publish("b"), false), define(2));
        assert_eq!(aliases.alias_for(&publish("a/long/topic"), false), reuse(1));
        assert_eq!(aliases.alias_for(&publish("b"), false), reuse(2));
        assert_eq!(
            aliases.alias_for(&publish("b"), true),
            define(2),
            "a re-delivery carries its name"
        );
    }

    #[test]
    fn a_full_table_gives_the_least_recently_used_alias_to_a_new_topic() {
        let mut aliases = OutgoingAliases::new(2, u32::MAX);
        aliases.alias_for(&publish("a"), false);
        aliases.alias_for(&publish("b"), false);
        aliases.alias_for(&publish("a"), false);
        assert_eq!(aliases.alias_for(&publish("c"), false), define(2));
        assert_eq!(aliases.alias_for(&publish("a"), false), reuse(1));
        assert_eq!(aliases.alias_for(&publish("b"), false), define(2));
        assert_eq!(aliases.alias_for(&publish("c"), false), define(1));
    }

    #[test]
    fn no_alias_without_a_maximum_for_v3_encodings_or_past_the_packet_size() {
        let mut none = OutgoingAliases::new(0, u32::MAX);
        assert_eq!(none.alias_for(&publish("a"), false), None);
        assert!(none.table.is_none());
        let mut aliases = OutgoingAliases::new(5, u32::MAX);
        let topic = TopicName::try_from("a").expect("valid topic");
        let v3 = EncodedPublish::new(&topic, &Bytes::new(), QoS::AtMostOnce, false);
        assert_eq!(aliases.alias_for(&v3, false), None);
        let packet = publish("a/b");
        let mut tight = OutgoingAliases::new(5, u32::try_from(packet.len()).expect("small"));
        assert_eq!(tight.alias_for(&packet, false), None);
        assert_eq!(tight.alias_for(&packet, false), None, "nothing was defined");
    }
}
