//! Validated topic names (what a PUBLISH carries) and topic filters (what a SUBSCRIBE
//! carries). Both borrow the bytes of the packet they came from, so validating a topic costs
//! no allocation and a topic can be shared across cores as cheaply as its payload.

use std::fmt;

use bytes::Bytes;
use thiserror::Error;

/// Longest topic the wire format can carry (a UTF-8 string with a 16-bit length prefix).
pub const MAX_TOPIC_LEN: usize = u16::MAX as usize;

/// Why a topic name or filter was refused. Each variant names the specification rule broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TopicError {
    /// Topic names and filters must be at least one character long [MQTT-4.7.3-1].
    #[error("topic is empty")]
    Empty,
    /// The encoded form must fit a 16-bit length prefix [MQTT-1.5.3].
    #[error("topic is longer than 65535 bytes")]
    TooLong,
    /// Strings on the wire must be well-formed UTF-8 [MQTT-1.5.3-1].
    #[error("topic is not valid UTF-8")]
    InvalidUtf8,
    /// U+0000 must not appear in a string [MQTT-1.5.3-2].
    #[error("topic contains the null character U+0000")]
    NullCharacter,
    /// A topic name (as opposed to a filter) must not contain `+` or `#` [MQTT-3.3.2-2].
    #[error("topic name contains a wildcard character")]
    WildcardInName,
    /// `#` must occupy a whole level and be the last one [MQTT-4.7.1-2].
    #[error("'#' must be the last level of a filter and stand alone in it")]
    MisplacedMultiLevelWildcard,
    /// `+` must occupy a whole level [MQTT-4.7.1-3].
    #[error("'+' must stand alone in its level")]
    MisplacedSingleLevelWildcard,
}

/// Checks the rules shared by names and filters and returns the text.
fn checked_str(bytes: &Bytes) -> Result<&str, TopicError> {
    if bytes.is_empty() {
        return Err(TopicError::Empty);
    }
    if bytes.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| TopicError::InvalidUtf8)?;
    if text.as_bytes().contains(&0) {
        return Err(TopicError::NullCharacter);
    }
    Ok(text)
}

/// The text of `bytes`, which a constructor of this module has already validated as UTF-8.
fn validated_str(bytes: &Bytes) -> &str {
    // SAFETY: every `TopicName`/`TopicFilter` is built by `new`, which ran `checked_str` (a
    // full UTF-8 validation) on exactly these bytes, and `Bytes` is immutable.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// A topic name a message is published to: non-empty UTF-8 without wildcards.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TopicName(Bytes);

impl TopicName {
    /// Validates `bytes` as a topic name.
    pub fn new(bytes: Bytes) -> Result<Self, TopicError> {
        let text = checked_str(&bytes)?;
        if text.bytes().any(|b| b == b'+' || b == b'#') {
            return Err(TopicError::WildcardInName);
        }
        Ok(Self(bytes))
    }

    /// The topic as text.
    pub fn as_str(&self) -> &str {
        validated_str(&self.0)
    }

    /// The topic's encoded bytes, shared with the packet it came from.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The `/`-separated levels; an empty level is a level too (`a//b` has three).
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.as_str().split('/')
    }

    /// Topics starting with `$` (such as `$SYS/...`) are not matched by a leading wildcard.
    pub fn is_dollar(&self) -> bool {
        self.0.first() == Some(&b'$')
    }
}

impl TryFrom<&str> for TopicName {
    type Error = TopicError;
    fn try_from(text: &str) -> Result<Self, TopicError> {
        Self::new(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A subscription's topic filter: non-empty UTF-8 in which `+` and `#` stand alone in their
/// level and `#` comes last.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(Bytes);

impl TopicFilter {
    /// Validates `bytes` as a topic filter.
    pub fn new(bytes: Bytes) -> Result<Self, TopicError> {
        let text = checked_str(&bytes)?;
        let mut levels = text.split('/').peekable();
        while let Some(level) = levels.next() {
            if level.contains('#') && (level != "#" || levels.peek().is_some()) {
                return Err(TopicError::MisplacedMultiLevelWildcard);
            }
            if level.contains('+') && level != "+" {
                return Err(TopicError::MisplacedSingleLevelWildcard);
            }
        }
        Ok(Self(bytes))
    }

    /// The filter as text.
    pub fn as_str(&self) -> &str {
        validated_str(&self.0)
    }

    /// The filter's encoded bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The `/`-separated levels.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.as_str().split('/')
    }

    /// Whether the filter contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.0.iter().any(|&b| b == b'+' || b == b'#')
    }

    /// Whether `topic` matches this filter, by the rules of [MQTT-4.7]: `+` matches exactly
    /// one level, `#` the parent level and any number below it, and a leading wildcard never
    /// matches a topic starting with `$` [MQTT-4.7.2-1].
    pub fn matches(&self, topic: &TopicName) -> bool {
        let mut filter_levels = self.levels();
        let mut topic_levels = topic.levels();
        let mut first = true;
        loop {
            match (filter_levels.next(), topic_levels.next()) {
                (Some("#"), _) => return !(first && topic.is_dollar()),
                (Some("+"), Some(_)) => {
                    if first && topic.is_dollar() {
                        return false;
                    }
                }
                (Some(f), Some(t)) => {
                    if f != t {
                        return false;
                    }
                }
                (None, None) => return true,
                _ => return false,
            }
            first = false;
        }
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = TopicError;
    fn try_from(text: &str) -> Result<Self, TopicError> {
        Self::new(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> TopicName {
        TopicName::try_from(s).expect("valid test topic")
    }
    fn filter(s: &str) -> TopicFilter {
        TopicFilter::try_from(s).expect("valid test filter")
    }

    #[test]
    fn names_reject_wildcards_empty_and_null() {
        assert_eq!(TopicName::try_from(""), Err(TopicError::Empty));
        assert_eq!(TopicName::try_from("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::try_from("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::try_from("a\0b"), Err(TopicError::NullCharacter));
        assert_eq!(
            TopicName::new(Bytes::from_static(&[0xff, 0x61])),
            Err(TopicError::InvalidUtf8)
        );
        assert_eq!(name("/").levels().count(), 2);
    }

    #[test]
    fn filters_enforce_wildcard_placement() {
        for ok in ["#", "+", "a/+/b", "a/#", "+/+", "/", "$SYS/#", "a//+"] {
            assert!(TopicFilter::try_from(ok).is_ok(), "{ok}");
        }
        for (bad, err) in [
            ("a/#/b", TopicError::MisplacedMultiLevelWildcard),
            ("a#", TopicError::MisplacedMultiLevelWildcard),
            ("a/b#", TopicError::MisplacedMultiLevelWildcard),
            ("a+", TopicError::MisplacedSingleLevelWildcard),
            ("a/+b", TopicError::MisplacedSingleLevelWildcard),
        ] {
            assert_eq!(TopicFilter::try_from(bad), Err(err), "{bad}");
        }
    }

    #[test]
    fn matching_follows_the_specification_examples() {
        let cases = [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
            ),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/score/wimbledon",
                true,
            ),
            ("sport/#", "sport", true),
            ("#", "sport/tennis", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "$SYS/uptime", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/monitor/Clients", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
            ("a/b", "a/b", true),
            ("a/b", "a/b/c", false),
        ];
        for (f, t, expected) in cases {
            assert_eq!(filter(f).matches(&name(t)), expected, "{f} vs {t}");
        }
    }
}
