//! The TOML document as the user wrote it: every key with where it appears, before any
//! meaning is given to it, so that every error can name the line to fix.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use super::error::ConfigError;

/// A parsed TOML document: its keys in the order written, and the text to turn byte offsets
/// into line numbers.
#[derive(Debug)]
pub(crate) struct Document<'a> {
    /// The top-level table.
    pub root: Table,
    text: &'a str,
}

/// A TOML table: its entries in the order they were written.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub entries: Vec<Entry>,
}

/// One `key = value` of a table (a `[section]` is a key whose value is a table).
#[derive(Debug)]
pub(crate) struct Entry {
    pub key: String,
    /// Byte offset of the key in the document.
    pub offset: usize,
    pub value: Value,
}

/// A TOML value, reduced to what checking it against the schema needs.
#[derive(Debug)]
pub(crate) enum Value {
    Integer(i64),
    Float(f64),
    Boolean(bool),
    String(String),
    Datetime,
    Array(Vec<Value>),
    Table(Table),
}

impl<'a> Document<'a> {
    /// Parses `text` as TOML; a syntax error becomes [`ConfigError::Parse`] with its line.
    pub fn parse(text: &'a str) -> Result<Self, ConfigError> {
        let root = toml::from_str::<Table>(text).map_err(|error| parse_error(text, &error))?;
        Ok(Document { root, text })
    }

    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }
}

impl Table {
    /// The entry for `key`, if the table has one.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.key == key)
    }
}

impl Value {
    /// The value as a message shows what was found: its type, and the value when short.
    pub fn describe(&self) -> String {
        match self {
            Value::Integer(n) => format!("integer {n}"),
            Value::Float(x) => format!("float {x}"),
            Value::Boolean(b) => format!("boolean {b}"),
            Value::String(s) => format!("string {s:?}"),
            Value::Datetime => "a date-time".to_owned(),
            Value::Array(_) => "an array".to_owned(),
            Value::Table(_) => "a table".to_owned(),
        }
    }
}

/// The 1-based line of a byte offset in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A TOML or serde error as [`ConfigError::Parse`]: its message on one line, and its line.
pub(crate) fn parse_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let message = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    ConfigError::Parse {
        message,
        line: error.span().map(|span| line_of(text, span.start)),
    }
}

impl<'de> Deserialize<'de> for Table {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Table(table) => Ok(table),
            other => Err(serde::de::Error::custom(format!(
                "expected a table, found {}",
                other.describe()
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// Builds a [`Value`] from whatever the TOML deserializer finds.
struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a TOML value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Boolean(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Integer(value))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Value, E> {
        i64::try_from(value)
            .map(Value::Integer)
            .map_err(|_| E::custom(format!("integer {value} is too large")))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Value::Float(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        loop {
            // Every key of a parsed TOML table carries its position. The toml crate hands a
            // date-time over as a one-entry map whose key has no position, so a first key
            // without one means this value is a date-time, not a table.
            let key = match map.next_key::<Spanned<String>>() {
                Ok(Some(key)) => key,
                Ok(None) => break,
                Err(_) if entries.is_empty() => return Ok(Value::Datetime),
                Err(error) => return Err(error),
            };
            let offset = key.span().start;
            entries.push(Entry {
                key: key.into_inner(),
                offset,
                value: map.next_value()?,
            });
        }
        Ok(Value::Table(Table { entries }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_lines_in_every_table_form() {
        let text = "a = 1\n[limits]\nx = 2\n\n[[listener]]\nbind = 'y'\nz.w = 3\n";
        let document = Document::parse(text).expect("valid TOML");
        let root = &document.root;
        let a = root.get("a").expect("a");
        assert_eq!(document.line_of(a.offset), 1);
        let Some(Value::Table(limits)) = root.get("limits").map(|entry| &entry.value) else {
            panic!("limits is a table");
        };
        assert_eq!(document.line_of(limits.get("x").expect("x").offset), 3);
        let Some(Value::Array(listeners)) = root.get("listener").map(|entry| &entry.value) else {
            panic!("listener is an array");
        };
        let Some(Value::Table(listener)) = listeners.first() else {
            panic!("a listener table");
        };
        assert_eq!(
            document.line_of(listener.get("bind").expect("bind").offset),
            6
        );
        let Some(Value::Table(z)) = listener.get("z").map(|entry| &entry.value) else {
            panic!("z is a dotted table");
        };
        assert_eq!(document.line_of(z.get("w").expect("w").offset), 7);
    }

    #[test]
    fn date_times_are_values_not_tables() {
        let document = Document::parse("when = 1979-05-27T07:32:00Z\n").expect("valid TOML");
        let when = document.root.get("when").expect("when");
        assert!(matches!(when.value, Value::Datetime));
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let error = Document::parse("a = 1\nb = = 2\n").expect_err("not TOML");
        assert_eq!(error.line(), Some(2));
        assert!(matches!(error, ConfigError::Parse { .. }));
    }
}
