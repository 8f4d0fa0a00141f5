//! The topic filter of one ACL rule, with the `%u`/`%c` placeholders of `pattern` rules, and
//! the three questions the ACL asks of it: does it match a topic, does it cover every topic a
//! subscription's filter can match, does it share at least one topic with that filter.
//!
//! A placeholder counts only when it is a whole level (`devices/%c/state`; `a%c` is plain
//! text), as in Mosquitto. A user name or client id is substituted only when it is a safe
//! level: non-empty, without `/`, `+`, `#` or NUL, and (in the first level) not starting with
//! `$`. Otherwise a grant does not match at all (Mosquitto's rule), and a deny is cut at that
//! level and ends in `#` instead (`devices/%c/config` denies all of `devices/#`): whatever
//! the value would have expanded to lies under that prefix, so a strange client id can
//! never slip past a deny.

use smallvec::SmallVec;

use crate::topic::{TopicFilter, TopicName};

/// One level of a rule's filter as written in the ACL file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RuleLevel {
    /// Text that must equal the topic's level.
    Literal(Box<str>),
    /// `+`.
    SingleWildcard,
    /// `#`.
    MultiWildcard,
    /// `%u` in a `pattern` rule.
    Username,
    /// `%c` in a `pattern` rule.
    ClientId,
}

/// One level after the placeholders were substituted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level<'a> {
    Exact(&'a str),
    Plus,
    Hash,
}

/// Resolved levels: eight inline cover the topics seen in practice without allocating.
type Levels<'a> = SmallVec<[Level<'a>; 8]>;

/// What to do with a placeholder whose value is not a safe level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnsafeValue {
    /// The rule does not apply (grants).
    SkipRule,
    /// The filter ends at that level with `#` (denies).
    Widen,
}

/// The identity the placeholders are filled from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Substitution<'a> {
    /// `%u`; a rule with `%u` never applies to a client without a user name.
    pub username: Option<&'a str>,
    /// `%c`.
    pub client_id: &'a str,
}

/// An ACL rule's filter, validated as an MQTT topic filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleFilter {
    /// The filter as written (placeholders included).
    filter: TopicFilter,
    /// Its levels, placeholders recognised.
    levels: Box<[RuleLevel]>,
    /// Whether any level is a placeholder (otherwise `filter` answers directly).
    has_placeholders: bool,
}

impl RuleFilter {
    /// A `topic` rule's filter: `%u` and `%c` are plain text.
    pub(crate) fn literal(filter: TopicFilter) -> Self {
        Self::build(filter, false)
    }

    /// A `pattern` rule's filter: whole-level `%u` and `%c` are placeholders.
    pub(crate) fn pattern(filter: TopicFilter) -> Self {
        Self::build(filter, true)
    }

    fn build(filter: TopicFilter, placeholders: bool) -> Self {
        let levels: Box<[RuleLevel]> = filter
            .levels()
            .map(|level| match level {
                "+" => RuleLevel::SingleWildcard,
                "#" => RuleLevel::MultiWildcard,
                "%u" if placeholders => RuleLevel::Username,
                "%c" if placeholders => RuleLevel::ClientId,
                text => RuleLevel::Literal(text.into()),
            })
            .collect();
        let has_placeholders = levels
            .iter()
            .any(|l| matches!(l, RuleLevel::Username | RuleLevel::ClientId));
        Self {
            filter,
            levels,
            has_placeholders,
        }
    }

    /// Whether the rule applies to a message on `topic`.
    pub(crate) fn matches_topic(
        &self,
        topic: &TopicName,
        who: Substitution<'_>,
        unsafe_value: UnsafeValue,
    ) -> bool {
        if !self.has_placeholders {
            return self.filter.matches(topic);
        }
        match self.resolve(who, unsafe_value) {
            Some(levels) => levels_match_topic(&levels, topic),
            None => false,
        }
    }

    /// Whether every topic `subscription` can match is matched by this rule.
    pub(crate) fn covers(
        &self,
        subscription: &TopicFilter,
        who: Substitution<'_>,
        unsafe_value: UnsafeValue,
    ) -> bool {
        match self.resolve(who, unsafe_value) {
            Some(levels) => levels_cover(&levels, &filter_levels(subscription)),
            None => false,
        }
    }

    /// Whether at least one topic is matched by both this rule and `subscription`.
    pub(crate) fn overlaps(
        &self,
        subscription: &TopicFilter,
        who: Substitution<'_>,
        unsafe_value: UnsafeValue,
    ) -> bool {
        match self.resolve(who, unsafe_value) {
            Some(levels) => levels_overlap(&levels, &filter_levels(subscription)),
            None => false,
        }
    }

    /// The levels with placeholders filled in, or `None` when the rule does not apply.
    fn resolve<'a>(
        &'a self,
        who: Substitution<'a>,
        unsafe_value: UnsafeValue,
    ) -> Option<Levels<'a>> {
        let mut resolved = Levels::new();
        for (index, level) in self.levels.iter().enumerate() {
            let value = match level {
                RuleLevel::Literal(text) => Some(Level::Exact(text)),
                RuleLevel::SingleWildcard => Some(Level::Plus),
                RuleLevel::MultiWildcard => Some(Level::Hash),
                // A rule with `%u` never applies to a client without a user name.
                RuleLevel::Username => safe_level(who.username?, index),
                RuleLevel::ClientId => safe_level(who.client_id, index),
            };
            match (value, unsafe_value) {
                (Some(level), _) => resolved.push(level),
                (None, UnsafeValue::SkipRule) => return None,
                (None, UnsafeValue::Widen) => {
                    resolved.push(Level::Hash);
                    break;
                }
            }
        }
        Some(resolved)
    }
}

/// A placeholder's value as a level, if it is a safe one.
fn safe_level(value: &str, index: usize) -> Option<Level<'_>> {
    let is_unsafe = value.is_empty()
        || value.contains(['/', '+', '#', '\0'])
        || (index == 0 && value.starts_with('$'));
    let is_safe = !is_unsafe;
    is_safe.then_some(Level::Exact(value))
}

fn filter_levels(filter: &TopicFilter) -> Levels<'_> {
    filter
        .levels()
        .map(|level| match level {
            "+" => Level::Plus,
            "#" => Level::Hash,
            text => Level::Exact(text),
        })
        .collect()
}

/// Whether a level can only match topics starting with `$` (a first level such as `$SYS`).
fn is_dollar(level: Option<&Level<'_>>) -> bool {
    matches!(level, Some(Level::Exact(text)) if text.starts_with('$'))
}

/// Topic matching by [MQTT-4.7], the same rules as [`TopicFilter::matches`].
fn levels_match_topic(filter: &[Level<'_>], topic: &TopicName) -> bool {
    let dollar = topic.is_dollar();
    let mut topic_levels = topic.levels();
    for (index, level) in filter.iter().enumerate() {
        match level {
            Level::Hash => return !(index == 0 && dollar),
            Level::Plus => {
                if topic_levels.next().is_none() || (index == 0 && dollar) {
                    return false;
                }
            }
            Level::Exact(text) => {
                if topic_levels.next() != Some(*text) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

/// Whether every topic matched by `sub` is matched by `rule`.
fn levels_cover(rule: &[Level<'_>], sub: &[Level<'_>]) -> bool {
    let mut index = 0;
    loop {
        let first = index == 0;
        match (rule.get(index), sub.get(index)) {
            // `#` covers whatever follows, and the parent level itself; a leading wildcard
            // never covers `$` topics.
            (Some(Level::Hash), other) => return !(first && is_dollar(other)),
            (Some(Level::Plus), Some(Level::Plus)) => {}
            (Some(Level::Plus), other @ Some(Level::Exact(_))) => {
                if first && is_dollar(other) {
                    return false;
                }
            }
            (Some(Level::Exact(a)), Some(Level::Exact(b))) => {
                if a != b {
                    return false;
                }
            }
            (None, None) => return true,
            // A wildcard in the subscription against a narrower rule level, or one filter
            // longer than the other.
            _ => return false,
        }
        index += 1;
    }
}

/// Whether at least one topic is matched by both `rule` and `sub`.
fn levels_overlap(rule: &[Level<'_>], sub: &[Level<'_>]) -> bool {
    let mut index = 0;
    loop {
        let first = index == 0;
        match (rule.get(index), sub.get(index)) {
            (Some(Level::Hash), other) | (other, Some(Level::Hash)) => {
                return !(first && is_dollar(other));
            }
            (Some(Level::Plus), Some(Level::Plus)) => {}
            (Some(Level::Plus), other @ Some(Level::Exact(_)))
            | (other @ Some(Level::Exact(_)), Some(Level::Plus)) => {
                if first && is_dollar(other) {
                    return false;
                }
            }
            (Some(Level::Exact(a)), Some(Level::Exact(b))) => {
                if a != b {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
        index += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::try_from(text).expect("valid test filter")
    }
    fn topic(text: &str) -> TopicName {
        TopicName::try_from(text).expect("valid test topic")
    }
    const NOBODY: Substitution<'static> = Substitution {
        username: None,
        client_id: "client",
    };

    const FILTERS: [&str; 16] = [
        "#", "+", "a", "a/#", "a/+", "a/b", "a/b/c", "+/b", "+/+", "/#", "a//b", "$SYS/#",
        "$SYS/+", "$SYS", "+/#", "a/+/#",
    ];
    const TOPICS: [&str; 12] = [
        "a", "a/b", "a/b/c", "a/c", "b", "x/b", "/", "/a", "a//b", "$SYS", "$SYS/x", "$SYS/x/y",
    ];

    #[test]
    fn level_matching_agrees_with_topic_filter() {
        for f in FILTERS {
            let rule = filter(f);
            let levels = filter_levels(&rule);
            for t in TOPICS {
                let t = topic(t);
                assert_eq!(
                    levels_match_topic(&levels, &t),
                    rule.matches(&t),
                    "{f} vs {t}"
                );
            }
        }
    }

    /// `covers` and `overlaps` checked against their definitions, on every sample topic.
    #[test]
    fn covers_and_overlaps_agree_with_their_definitions_on_samples() {
        for r in FILTERS {
            let rule = filter(r);
            let rule_levels = filter_levels(&rule);
            for s in FILTERS {
                let sub = filter(s);
                let sub_levels = filter_levels(&sub);
                let matched_by_sub: Vec<TopicName> = TOPICS
                    .iter()
                    .map(|t| topic(t))
                    .filter(|t| sub.matches(t))
                    .collect();
                if levels_cover(&rule_levels, &sub_levels) {
                    for t in &matched_by_sub {
                        assert!(rule.matches(t), "{r} covers {s} but misses {t}");
                    }
                }
                if matched_by_sub.iter().any(|t| rule.matches(t)) {
                    assert!(
                        levels_overlap(&rule_levels, &sub_levels),
                        "{r} and {s} share"
                    );
                }
            }
        }
    }

    #[test]
    fn covering_examples() {
        let cases = [
            ("#", "#", true),
            ("#", "a/+/c", true),
            ("#", "$SYS/#", false),
            ("#", "+/x", true),
            ("$SYS/#", "$SYS/broker/+", true),
            ("$SYS/#", "$SYS", true),
            ("a/#", "a", true),
            ("a/#", "a/#", true),
            ("a/#", "#", false),
            ("a/+", "a/#", false),
            ("a/+", "a/+", true),
            ("a/+", "a/b", true),
            ("a/b", "a/+", false),
            ("+/b", "$SYS/b", false),
            ("a", "a/b", false),
            ("a/b", "a", false),
        ];
        for (rule, sub, expected) in cases {
            let covered = levels_cover(&filter_levels(&filter(rule)), &filter_levels(&filter(sub)));
            assert_eq!(covered, expected, "{rule} covers {sub}");
        }
    }

    #[test]
    fn overlap_examples() {
        let cases = [
            ("a/#", "#", true),
            ("secret/#", "+/x", true),
            ("a/b", "a/+", true),
            ("a/b", "c/+", false),
            ("#", "$SYS/#", false),
            ("$SYS/#", "+/+", false),
            ("a/#", "a", true),
            ("a/b", "a", false),
            ("a/+/c", "a/b/+", true),
        ];
        for (rule, sub, expected) in cases {
            let shared =
                levels_overlap(&filter_levels(&filter(rule)), &filter_levels(&filter(sub)));
            assert_eq!(shared, expected, "{rule} overlaps {sub}");
        }
    }

    #[test]
    fn placeholders_are_whole_levels_only() {
        let rule = RuleFilter::pattern(filter("dev/%c/a%c"));
        let who = Substitution {
            username: None,
            client_id: "x",
        };
        assert!(rule.matches_topic(&topic("dev/x/a%c"), who, UnsafeValue::SkipRule));
        assert!(!rule.matches_topic(&topic("dev/x/ax"), who, UnsafeValue::SkipRule));
        let literal = RuleFilter::literal(filter("dev/%c"));
        assert!(literal.matches_topic(&topic("dev/%c"), who, UnsafeValue::SkipRule));
        assert!(!literal.matches_topic(&topic("dev/x"), who, UnsafeValue::SkipRule));
    }

    #[test]
    fn username_placeholders_need_a_user_name() {
        let rule = RuleFilter::pattern(filter("users/%u/#"));
        for mode in [UnsafeValue::SkipRule, UnsafeValue::Widen] {
            assert!(!rule.matches_topic(&topic("users/x"), NOBODY, mode));
            assert!(!rule.covers(&filter("users/x/#"), NOBODY, mode));
        }
        let who = Substitution {
            username: Some("bob"),
            client_id: "c",
        };
        assert!(rule.matches_topic(&topic("users/bob/inbox"), who, UnsafeValue::SkipRule));
        assert!(rule.covers(&filter("users/bob/#"), who, UnsafeValue::SkipRule));
        assert!(!rule.covers(&filter("users/+/#"), who, UnsafeValue::SkipRule));
    }

    #[test]
    fn unsafe_values_skip_grants_and_widen_denies() {
        let rule = RuleFilter::pattern(filter("dev/%c/cfg"));
        for id in ["a/b", "+", "#", "", "x+y"] {
            let who = Substitution {
                username: None,
                client_id: id,
            };
            assert!(
                !rule.matches_topic(&topic("dev/a/b/cfg"), who, UnsafeValue::SkipRule),
                "{id:?}"
            );
            for t in ["dev/other/cfg", "dev/a/b/cfg", "dev/x"] {
                assert!(
                    rule.matches_topic(&topic(t), who, UnsafeValue::Widen),
                    "a deny with {id:?} widens to dev/# and matches {t}"
                );
            }
            assert!(rule.covers(&filter("dev/#"), who, UnsafeValue::Widen));
        }
        let first = RuleFilter::pattern(filter("%u/#"));
        let dollar = Substitution {
            username: Some("$SYS"),
            client_id: "c",
        };
        assert!(!first.matches_topic(&topic("$SYS/x"), dollar, UnsafeValue::SkipRule));
        assert!(!first.covers(&filter("$SYS/#"), dollar, UnsafeValue::SkipRule));
    }
}
