//! The UTF-8 Encoded String of MQTT [MQTT-1.5.4] as a value that borrows the packet it came
//! from: MQTT 5 properties (content type, user properties, reason strings, ...) are decoded
//! without an allocation and forwarded to subscribers by sharing their bytes.

use std::fmt;

use bytes::Bytes;
use thiserror::Error;

use super::fields::MAX_FIELD_LEN;

/// Why some text cannot be an MQTT string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum StringError {
    /// The 16-bit length prefix cannot announce more than 65535 bytes [MQTT-1.5.4].
    #[error("string is longer than 65535 bytes")]
    TooLong,
    /// The bytes are not well-formed UTF-8 [MQTT-1.5.4-1].
    #[error("string is not well-formed UTF-8")]
    InvalidUtf8,
    /// U+0000 must not appear in a string [MQTT-1.5.4-2].
    #[error("string contains the null character U+0000")]
    NullCharacter,
}

/// A validated MQTT string: well-formed UTF-8, free of U+0000, at most 65535 bytes. Cloning
/// it shares the bytes.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MqttString(Bytes);

impl MqttString {
    /// Validates `bytes` as an MQTT string, keeping them (no copy).
    pub fn new(bytes: Bytes) -> Result<Self, StringError> {
        if bytes.len() > MAX_FIELD_LEN {
            return Err(StringError::TooLong);
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| StringError::InvalidUtf8)?;
        if text.as_bytes().contains(&0) {
            return Err(StringError::NullCharacter);
        }
        Ok(Self(bytes))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: every `MqttString` is built by `new`, which validated exactly these bytes
        // as UTF-8, and `Bytes` is immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The encoded bytes, shared with the packet the string came from.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Length in bytes (not characters).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty (allowed: MQTT strings may be zero-length).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<&str> for MqttString {
    type Error = StringError;
    fn try_from(text: &str) -> Result<Self, StringError> {
        Self::new(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl TryFrom<String> for MqttString {
    type Error = StringError;
    fn try_from(text: String) -> Result<Self, StringError> {
        Self::new(Bytes::from(text))
    }
}

impl PartialEq<str> for MqttString {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MqttString {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_strings_keep_their_bytes() {
        let bytes = Bytes::from_static("h\u{e9}".as_bytes());
        let string = MqttString::new(bytes.clone()).unwrap();
        assert_eq!(string.as_str(), "h\u{e9}");
        assert_eq!(string.as_bytes().as_ptr(), bytes.as_ptr());
        assert_eq!(string.len(), 3);
        assert!(MqttString::try_from("").unwrap().is_empty());
        assert_eq!(MqttString::try_from(String::from("x")).unwrap(), "x");
    }

    #[test]
    fn invalid_strings_are_refused() {
        assert_eq!(
            MqttString::new(Bytes::from_static(b"\xed\xa0\x80")),
            Err(StringError::InvalidUtf8)
        );
        assert_eq!(MqttString::try_from("a\0"), Err(StringError::NullCharacter));
        assert_eq!(
            MqttString::new(Bytes::from(vec![b'a'; MAX_FIELD_LEN + 1])),
            Err(StringError::TooLong)
        );
        assert!(MqttString::new(Bytes::from(vec![b'a'; MAX_FIELD_LEN])).is_ok());
    }
}
