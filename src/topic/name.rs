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

/// Bytes [`scan`] reads at once: one machine word.
const WORD: usize = 8;

/// A word with every byte set to `byte`.
const fn splat(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; WORD])
}

/// The low bit of every byte of a word.
const LOW_BITS: u64 = splat(0x01);

/// The high bit of every byte of a word: set in the bytes of a UTF-8 sequence, clear in ASCII.
const HIGH_BITS: u64 = splat(0x80);

/// Whether some byte of `word` is zero. Exact: subtracting 1 from every byte sets the high bit
/// of a zero byte; a byte that had its high bit set already is masked out by `!word`, and a
/// borrow only runs on past a byte that was zero, so no word without one is reported.
const fn has_zero_byte(word: u64) -> bool {
    word.wrapping_sub(LOW_BITS) & !word & HIGH_BITS != 0
}

/// The one bit in which `#` (0x23) and `+` (0x2B) differ: with it set, both read as `+`.
const WILDCARD_BIT: u8 = b'+' ^ b'#';

/// Whether some byte of `word` is `+` or `#`: setting [`WILDCARD_BIT`] in every byte turns
/// exactly those two into `+` (no other byte becomes 0x2B), so one zero-byte test finds both.
const fn has_wildcard_byte(word: u64) -> bool {
    has_zero_byte((word | splat(WILDCARD_BIT)) ^ splat(b'+'))
}

/// What one pass over the bytes of a topic found. In UTF-8 the ASCII bytes (U+0000, `+`, `#`)
/// never occur inside a multi-byte sequence, so looking for them byte by byte is exact.
#[derive(Clone, Copy, Default)]
struct ByteClasses {
    /// A byte at or above 0x80: the text is not plain ASCII and its UTF-8 must be checked.
    non_ascii: bool,
    /// A zero byte: the character U+0000.
    null: bool,
    /// A `+` or `#`.
    wildcard: bool,
}

/// Classifies `bytes` a word at a time (a topic is usually a few dozen bytes: a byte loop,
/// or a `char` search per rule, costs several times more).
fn scan(bytes: &[u8]) -> ByteClasses {
    let mut words = bytes.chunks_exact(WORD);
    let mut any_high = 0u64;
    let mut null = false;
    let mut wildcard = false;
    for chunk in &mut words {
        let mut word = [0u8; WORD];
        // `chunks_exact` yields exactly `WORD` bytes, so the lengths always agree.
        word.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(word);
        any_high |= word;
        null |= has_zero_byte(word);
        wildcard |= has_wildcard_byte(word);
    }
    let mut classes = ByteClasses {
        non_ascii: any_high & HIGH_BITS != 0,
        null,
        wildcard,
    };
    for &byte in words.remainder() {
        classes.non_ascii |= byte >= 0x80;
        classes.null |= byte == 0;
        classes.wildcard |= (byte | WILDCARD_BIT) == b'+';
    }
    classes
}

/// Checks the rules shared by names and filters in one pass over the bytes, and says whether
/// they contain wildcard characters. The rules are checked in this order, which decides the
/// error of a topic that breaks several: empty, too long, not UTF-8, U+0000.
fn check_text(bytes: &[u8]) -> Result<ByteClasses, TopicError> {
    if bytes.is_empty() {
        return Err(TopicError::Empty);
    }
    if bytes.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    let classes = scan(bytes);
    // ASCII is valid UTF-8: only text with other bytes needs the full validation (which
    // also refuses overlong forms and encoded surrogates).
    if classes.non_ascii && std::str::from_utf8(bytes).is_err() {
        return Err(TopicError::InvalidUtf8);
    }
    if classes.null {
        return Err(TopicError::NullCharacter);
    }
    Ok(classes)
}

/// Position of the first `/` in `bytes`, a word at a time. Read little-endian, the lowest
/// flagged byte of a word is its first `/`: [`has_zero_byte`]'s borrows only run upwards from
/// a true match, so they never flag a byte below it.
fn find_separator(bytes: &[u8]) -> Option<usize> {
    let mut words = bytes.chunks_exact(WORD);
    let mut at = 0;
    for chunk in &mut words {
        let mut word = [0u8; WORD];
        // `chunks_exact` yields exactly `WORD` bytes, so the lengths always agree.
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word) ^ splat(b'/');
        let flagged = word.wrapping_sub(LOW_BITS) & !word & HIGH_BITS;
        if flagged != 0 {
            // At most 63 / 8: the cast cannot truncate.
            return Some(at + (flagged.trailing_zeros() / 8) as usize);
        }
        at += WORD;
    }
    let tail = words.remainder().iter().position(|&b| b == b'/')?;
    Some(at + tail)
}

/// Splits off the first level of a topic or filter: `("a", Some("b/c"))` for `a/b/c`,
/// `("c", None)` for `c`, `("", Some(""))` for `/`.
pub(super) fn split_first_level(rest: &str) -> (&str, Option<&str>) {
    match find_separator(rest.as_bytes()) {
        // `/` is ASCII, never part of a multi-byte character: both slices end and start on
        // character boundaries and within `rest`, so the slicing cannot panic.
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    }
}

/// The `/`-separated levels of a topic name or filter, in order; an empty level is a level
/// too (`a//b` has three). It exists so that walking a topic's levels costs a word-at-a-time
/// byte search rather than a `char` search.
#[derive(Clone, Debug)]
pub struct Levels<'a> {
    /// What follows the last level returned; `None` once the last level has been returned.
    rest: Option<&'a str>,
}

impl<'a> Levels<'a> {
    /// The levels of `text`.
    fn of(text: &'a str) -> Self {
        Self { rest: Some(text) }
    }
}

impl<'a> Iterator for Levels<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let (level, rest) = split_first_level(self.rest?);
        self.rest = rest;
        Some(level)
    }
}

impl std::iter::FusedIterator for Levels<'_> {}

/// The text of `bytes`, which a constructor of this module has already validated as UTF-8.
fn validated_str(bytes: &Bytes) -> &str {
    // SAFETY: every `TopicName`/`TopicFilter` is built by `new`, which ran `check_text` on
    // exactly these bytes (ASCII, or else a full UTF-8 validation), and `Bytes` is immutable.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// A topic name a message is published to: non-empty UTF-8 without wildcards.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TopicName(Bytes);

impl TopicName {
    /// Validates `bytes` as a topic name.
    pub fn new(bytes: Bytes) -> Result<Self, TopicError> {
        if check_text(&bytes)?.wildcard {
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
    pub fn levels(&self) -> Levels<'_> {
        Levels::of(self.as_str())
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
        if !check_text(&bytes)?.wildcard {
            return Ok(Self(bytes));
        }
        let mut levels = bytes.split(|&b| b == b'/').peekable();
        while let Some(level) = levels.next() {
            if level.contains(&b'#') && (level != b"#" || levels.peek().is_some()) {
                return Err(TopicError::MisplacedMultiLevelWildcard);
            }
            if level.contains(&b'+') && level != b"+" {
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
    pub fn levels(&self) -> Levels<'_> {
        Levels::of(self.as_str())
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

    /// The rules as [MQTT-4.7.3] and [MQTT-1.5.4] state them, checked the slow, obvious
    /// way: what the byte scan of `TopicName::new` must agree with.
    fn name_by_the_rules(bytes: &[u8]) -> Result<(), TopicError> {
        if bytes.is_empty() {
            return Err(TopicError::Empty);
        }
        if bytes.len() > MAX_TOPIC_LEN {
            return Err(TopicError::TooLong);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| TopicError::InvalidUtf8)?;
        if text.contains('\0') {
            return Err(TopicError::NullCharacter);
        }
        if text.contains(['+', '#']) {
            return Err(TopicError::WildcardInName);
        }
        Ok(())
    }

    /// Byte sequences that test every rule: ASCII, separators, U+0000, wildcards, UTF-8 that
    /// differs from `+`/`#`/U+0000 only in the high bit (`«` is C2 AB, `£` C2 A3, U+0080 is
    /// C2 80), a surrogate encoded in bytes (ED A0 80), an overlong `/` (C0 AF), a four-byte
    /// character, a lone continuation byte, a truncated sequence and a byte never in UTF-8.
    const PIECES: [&[u8]; 16] = [
        b"a",
        b"/",
        b"\0",
        b"+",
        b"#",
        "\u{ab}".as_bytes(),
        "\u{a3}".as_bytes(),
        "\u{80}".as_bytes(),
        "\u{e9}".as_bytes(),
        "\u{65e5}".as_bytes(),
        "\u{1f389}".as_bytes(),
        b"\xed\xa0\x80",
        b"\xc0\xaf",
        b"\x80",
        b"\xe6\x97",
        b"\xff",
    ];

    #[test]
    fn the_byte_scan_agrees_with_the_rules_for_every_short_combination() {
        let mut checked = 0;
        for a in PIECES {
            for b in PIECES {
                for c in PIECES {
                    let bytes = [a, b, c].concat();
                    assert_eq!(
                        TopicName::new(Bytes::from(bytes.clone())).map(|_| ()),
                        name_by_the_rules(&bytes),
                        "{bytes:x?}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, PIECES.len().pow(3));
    }

    #[test]
    fn the_byte_scan_finds_each_piece_at_every_offset_of_a_long_topic() {
        // Offsets 0 to 40 put a piece in every byte lane of a word and in the tail.
        for piece in PIECES {
            for at in 0..=40 {
                let mut bytes = vec![b'x'; 40];
                bytes.splice(at..at, piece.iter().copied());
                let name = TopicName::new(Bytes::from(bytes.clone()));
                assert_eq!(
                    name.map(|_| ()),
                    name_by_the_rules(&bytes),
                    "{piece:x?} at {at}"
                );
            }
        }
    }

    #[test]
    fn names_follow_the_specification_edge_cases() {
        let valid = [
            "température/€/日本/🎉",
            "\u{ab}\u{a3}\u{80}",
            " ",
            "/",
            "//",
            "$SYS/x",
            "a\u{7f}b",
        ];
        for ok in valid {
            let name = TopicName::try_from(ok).expect(ok);
            assert_eq!(name.as_str(), ok);
        }
        let invalid: [(&[u8], TopicError); 9] = [
            (b"", TopicError::Empty),
            (b"\0", TopicError::NullCharacter),
            (b"sensors/\0/temp", TopicError::NullCharacter),
            (b"sport/+/player", TopicError::WildcardInName),
            (b"sport/tennis#", TopicError::WildcardInName),
            (b"a+b", TopicError::WildcardInName),
            (b"high/\xed\xa0\x80/surrogate", TopicError::InvalidUtf8),
            (b"low/\xed\xbf\xbf", TopicError::InvalidUtf8),
            (b"overlong/\xc0\xaf", TopicError::InvalidUtf8),
        ];
        for (bytes, error) in invalid {
            assert_eq!(
                TopicName::new(Bytes::from_static(bytes)),
                Err(error),
                "{bytes:x?}"
            );
        }
        // Invalid UTF-8 is reported before U+0000 and wildcards, U+0000 before wildcards.
        assert_eq!(
            TopicName::new(Bytes::from_static(b"+\0\xff")),
            Err(TopicError::InvalidUtf8)
        );
        assert_eq!(
            TopicName::new(Bytes::from_static(b"#/\0")),
            Err(TopicError::NullCharacter)
        );
    }

    #[test]
    fn names_may_be_65535_bytes_and_no_longer() {
        let longest = vec![b'a'; MAX_TOPIC_LEN];
        assert!(TopicName::new(Bytes::from(longest)).is_ok());
        let mut multi_byte = "é".repeat(MAX_TOPIC_LEN / 2).into_bytes();
        multi_byte.push(b'/');
        assert_eq!(multi_byte.len(), MAX_TOPIC_LEN);
        assert!(TopicName::new(Bytes::from(multi_byte)).is_ok());
        let too_long = vec![b'a'; MAX_TOPIC_LEN + 1];
        assert_eq!(
            TopicName::new(Bytes::from(too_long.clone())),
            Err(TopicError::TooLong)
        );
        assert_eq!(
            TopicFilter::new(Bytes::from(too_long)),
            Err(TopicError::TooLong)
        );
        let mut last_is_wildcard = vec![b'a'; MAX_TOPIC_LEN - 1];
        last_is_wildcard.push(b'#');
        assert_eq!(
            TopicName::new(Bytes::from(last_is_wildcard.clone())),
            Err(TopicError::WildcardInName)
        );
        assert_eq!(
            TopicFilter::new(Bytes::from(last_is_wildcard)),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
    }

    #[test]
    fn filters_apply_the_same_string_rules_as_names() {
        assert_eq!(TopicFilter::try_from(""), Err(TopicError::Empty));
        assert_eq!(
            TopicFilter::try_from("a/\0/#"),
            Err(TopicError::NullCharacter)
        );
        assert_eq!(
            TopicFilter::new(Bytes::from_static(b"a/\xed\xa0\x80/+")),
            Err(TopicError::InvalidUtf8)
        );
        for ok in ["日本/+/#", "\u{ab}/\u{a3}", "température/+"] {
            assert_eq!(filter(ok).as_str(), ok);
            assert!(
                filter(ok).has_wildcards() == ok.contains(['+', '#']),
                "{ok}"
            );
        }
    }

    #[test]
    fn levels_are_split_at_every_slash_and_only_there() {
        // `ï` is C3 AF: its second byte is `/` with the high bit set.
        let pieces = ["", "a", "ï", "日本", "🎉", "xxxxxxx", "$SYS"];
        let mut texts = vec![String::new()];
        for _ in 0..3 {
            let mut longer = Vec::new();
            for text in &texts {
                for piece in pieces {
                    longer.push(format!("{text}{piece}/"));
                    longer.push(format!("{text}{piece}"));
                }
            }
            texts = longer;
        }
        for text in texts.iter().filter(|text| !text.is_empty()) {
            let expected: Vec<&str> = text.split('/').collect();
            assert_eq!(name(text).levels().collect::<Vec<_>>(), expected, "{text}");
            let levels: Vec<String> = filter(text).levels().map(str::to_owned).collect();
            assert_eq!(levels, expected, "{text}");
        }
        for at in 0..=40 {
            let mut text = "ï".repeat(20);
            text.insert(at / 2 * 2, '/');
            let expected: Vec<&str> = text.split('/').collect();
            assert_eq!(name(&text).levels().collect::<Vec<_>>(), expected, "{text}");
        }
        let single = name("a");
        let mut levels = single.levels();
        assert_eq!(
            (levels.next(), levels.next(), levels.next()),
            (Some("a"), None, None)
        );
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
