//! The topic aliases an MQTT 5 client defines when it publishes [MQTT-3.3.2.3.4]: numbers
//! standing for topic names on one connection, up to the topic alias maximum the broker
//! announced in its CONNACK (`max_topic_alias`).

use bytes::Bytes;

use super::CloseReason;
use crate::protocol::{PublishTopic, ReasonCode, TopicAlias};
use crate::topic::TopicName;

/// One connection's aliases from client to broker. Empty, it holds no memory: the table is
/// allocated when the client defines its first alias.
#[derive(Debug, Default)]
pub(super) struct TopicAliases {
    /// The table, once an alias is defined (boxed: one pointer while there is none).
    names: Option<Box<AliasTable>>,
}

/// Topic name of alias `n` at index `n - 1`; grown up to the highest alias defined.
#[derive(Debug, Default)]
struct AliasTable(Vec<Option<TopicName>>);

impl TopicAliases {
    /// The topic a PUBLISH is for, recording the alias it defines. An alias above `max`, or
    /// one used without ever being defined, ends the connection with 0x94 (an alias of 0 is
    /// refused by the codec with the same code).
    pub fn resolve(&mut self, topic: PublishTopic, max: usize) -> Result<TopicName, CloseReason> {
        let check = |alias: TopicAlias| {
            let index = usize::from(alias.get()) - 1;
            if index < max {
                Ok(index)
            } else {
                Err(CloseReason::protocol_error(
                    ReasonCode::TopicAliasInvalid,
                    format!("topic alias {alias} is above the topic alias maximum {max}"),
                ))
            }
        };
        match topic {
            PublishTopic::Name(name) => Ok(name),
            PublishTopic::NameWithAlias(name, alias) => {
                let index = check(alias)?;
                let names = &mut self.names.get_or_insert_with(Box::default).0;
                if names.len() <= index {
                    names.resize(index + 1, None);
                }
                // A copy of its own: the name must not pin the packet it arrived in.
                names[index] = TopicName::new(Bytes::copy_from_slice(name.as_bytes())).ok();
                Ok(name)
            }
            PublishTopic::Alias(alias) => {
                let index = check(alias)?;
                self.names
                    .as_ref()
                    .and_then(|table| table.0.get(index))
                    .and_then(Option::clone)
                    .ok_or_else(|| {
                        CloseReason::protocol_error(
                            ReasonCode::TopicAliasInvalid,
                            format!("topic alias {alias} was never defined on this connection"),
                        )
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias(n: u16) -> TopicAlias {
        TopicAlias::new(n).expect("non-zero")
    }

    fn name(text: &str) -> TopicName {
        TopicName::try_from(text).expect("valid topic")
    }

    fn code(result: Result<TopicName, CloseReason>) -> Option<ReasonCode> {
        result.err().and_then(|reason| reason.disconnect_code())
    }

    #[test]
    fn an_alias_stands_for_the_topic_it_was_defined_with() {
        let mut aliases = TopicAliases::default();
        assert!(aliases.names.is_none());
        assert_eq!(
            aliases.resolve(PublishTopic::NameWithAlias(name("a/b"), alias(3)), 10),
            Ok(name("a/b"))
        );
        assert_eq!(
            aliases.resolve(PublishTopic::Alias(alias(3)), 10),
            Ok(name("a/b"))
        );
        aliases
            .resolve(PublishTopic::NameWithAlias(name("c"), alias(3)), 10)
            .expect("redefined");
        assert_eq!(
            aliases.resolve(PublishTopic::Alias(alias(3)), 10),
            Ok(name("c"))
        );
    }

    #[test]
    fn unknown_or_out_of_range_aliases_are_topic_alias_invalid() {
        let mut aliases = TopicAliases::default();
        assert_eq!(
            code(aliases.resolve(PublishTopic::Alias(alias(1)), 10)),
            Some(ReasonCode::TopicAliasInvalid)
        );
        assert_eq!(
            code(aliases.resolve(PublishTopic::NameWithAlias(name("t"), alias(11)), 10)),
            Some(ReasonCode::TopicAliasInvalid)
        );
        assert_eq!(
            code(aliases.resolve(PublishTopic::NameWithAlias(name("t"), alias(1)), 0)),
            Some(ReasonCode::TopicAliasInvalid)
        );
    }
}
