//! Every key hydrant knows, where it goes and what type it takes, and the check of a document
//! against that list: unknown keys (with the nearest valid one) and values of the wrong type
//! are reported here, with their line, before serde gives the values meaning.

use std::net::SocketAddr;

use super::document::{Document, Entry, Table, Value};
use super::error::ConfigError;
use super::listener::ListenerProtocol;
use super::suggest;

/// Name of the table of global limits.
pub(crate) const LIMITS_SECTION: &str = "limits";
/// Name of the table of session settings.
pub(crate) const SESSION_SECTION: &str = "session";
/// Name of the table of authentication settings.
pub(crate) const AUTH_SECTION: &str = "auth";
/// Name of the array of listener tables (`[[listener]]`).
pub(crate) const LISTENER_SECTION: &str = "listener";
/// Name of the table of `$SYS` and metrics settings.
pub(crate) const METRICS_SECTION: &str = "metrics";
/// Name of the table of persistence settings.
pub(crate) const PERSISTENCE_SECTION: &str = "persistence";

/// What a key's value must be, and the words a message uses for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A non-negative integer of bytes.
    Bytes,
    /// A non-negative integer count.
    Count,
    /// A non-negative integer of seconds.
    Seconds,
    /// A non-negative integer of milliseconds.
    Milliseconds,
    /// An integer of seconds from 0 to 65535 (an MQTT keep-alive).
    KeepaliveSeconds,
    /// `true` or `false`.
    Flag,
    /// A string.
    Text,
    /// A string holding an IP address and port.
    Address,
    /// A string holding an IP address and port, unset by default (nothing listens there).
    OptionalAddress,
    /// A string unset by default (a credential).
    OptionalText,
    /// A string naming a [`ListenerProtocol`].
    Protocol,
    /// A file path (a string).
    Path,
    /// A directory path (a string), with a default.
    Directory,
    /// A string that must be one of these words.
    Choice(&'static [&'static str]),
    /// An array of strings.
    TextList,
}

/// A key that holds a single value, and its kind.
type Leaf = (&'static str, Kind);

/// Top-level keys that hold a value (sections are listed apart).
const TOP_LEVEL_KEYS: &[Leaf] = &[
    ("cores", Kind::Count),
    ("pin_cores", Kind::Flag),
    ("io_memory", Kind::Bytes),
    ("connection_messages", Kind::Flag),
    ("park_after_idle_ms", Kind::Milliseconds),
];

/// Names of the top-level tables, in the order the default file writes them.
const SECTIONS: &[&str] = &[
    LISTENER_SECTION,
    LIMITS_SECTION,
    SESSION_SECTION,
    AUTH_SECTION,
    METRICS_SECTION,
    PERSISTENCE_SECTION,
];

/// Keys of a `[[listener]]` table.
const LISTENER_KEYS: &[Leaf] = &[
    ("bind", Kind::Address),
    ("protocol", Kind::Protocol),
    ("max_connections", Kind::Count),
    ("certfile", Kind::Path),
    ("keyfile", Kind::Path),
    ("cafile", Kind::Path),
    ("require_certificate", Kind::Flag),
    ("use_identity_as_username", Kind::Flag),
    ("websocket_path", Kind::Text),
    ("websocket_origins", Kind::TextList),
    ("allow_anonymous", Kind::Flag),
    ("password_file", Kind::Path),
    ("acl_file", Kind::Path),
    ("max_connections_per_ip", Kind::Count),
    ("max_connect_rate_per_ip", Kind::Count),
];

/// Keys of `[limits]`.
const LIMITS_KEYS: &[Leaf] = &[
    ("max_packet_size", Kind::Bytes),
    ("max_inflight_messages", Kind::Count),
    ("max_queued_messages", Kind::Count),
    ("max_queued_bytes", Kind::Bytes),
    ("max_queued_bytes_total", Kind::Bytes),
    ("min_keepalive", Kind::KeepaliveSeconds),
    ("max_keepalive", Kind::KeepaliveSeconds),
    ("max_subscriptions", Kind::Count),
    ("max_retained_messages", Kind::Count),
    ("max_retained_bytes", Kind::Bytes),
    ("max_topic_alias", Kind::Count),
    ("max_topic_alias_out", Kind::Count),
];

/// Keys of `[session]`.
const SESSION_KEYS: &[Leaf] = &[
    ("allow_zero_length_clientid", Kind::Flag),
    ("auto_id_prefix", Kind::Text),
    ("persistent_client_expiration", Kind::Seconds),
    ("max_offline_sessions", Kind::Count),
];

/// Keys of `[auth]`.
const AUTH_KEYS: &[Leaf] = &[
    ("credential_cache_size", Kind::Count),
    ("credential_cache_ttl", Kind::Seconds),
];

/// Keys of `[metrics]`.
const METRICS_KEYS: &[Leaf] = &[
    ("sys_interval", Kind::Seconds),
    ("http_listener", Kind::OptionalAddress),
    ("http_username", Kind::OptionalText),
    ("http_password", Kind::OptionalText),
    ("http_bearer_token", Kind::OptionalText),
    ("http_max_connections", Kind::Count),
    ("slow_clients_top", Kind::Count),
    ("lag_probe_interval_ms", Kind::Milliseconds),
];

/// Keys of `[persistence]`.
const PERSISTENCE_KEYS: &[Leaf] = &[
    ("persistence", Kind::Flag),
    ("persistence_location", Kind::Directory),
    ("sync", Kind::Choice(&["always", "interval", "never"])),
    ("sync_interval_ms", Kind::Milliseconds),
    ("max_disk_bytes", Kind::Bytes),
    ("autosave_log_bytes", Kind::Bytes),
    ("autosave_log_ratio", Kind::Count),
    ("write_buffer_bytes", Kind::Bytes),
];

/// Names from other brokers (mostly Mosquitto) that mean one of our keys, as the path of
/// that key from the top of the file.
const OTHER_BROKER_NAMES: &[(&str, &str)] = &[
    ("port", "listener.bind"),
    ("bind_address", "listener.bind"),
    ("message_size_limit", "limits.max_packet_size"),
];

/// Whether `name` is a top-level table.
pub(crate) fn is_section(name: &str) -> bool {
    SECTIONS.contains(&name)
}

/// Whether `name` is a top-level key that holds a value.
pub(crate) fn is_top_level_key(name: &str) -> bool {
    TOP_LEVEL_KEYS.iter().any(|(key, _)| *key == name)
}

/// The keys of `section` ("" for the top level, where sections count as keys too).
pub(crate) fn known_names(section: &str) -> Vec<&'static str> {
    match section {
        "" => TOP_LEVEL_KEYS
            .iter()
            .map(|(key, _)| *key)
            .chain(SECTIONS.iter().copied())
            .collect(),
        _ => leaves_of(section).iter().map(|(key, _)| *key).collect(),
    }
}

/// The value keys of a section; none for an unknown one.
fn leaves_of(section: &str) -> &'static [Leaf] {
    match section {
        LISTENER_SECTION => LISTENER_KEYS,
        LIMITS_SECTION => LIMITS_KEYS,
        SESSION_SECTION => SESSION_KEYS,
        AUTH_SECTION => AUTH_KEYS,
        METRICS_SECTION => METRICS_KEYS,
        PERSISTENCE_SECTION => PERSISTENCE_KEYS,
        _ => &[],
    }
}

/// Whether the key at `path` (as [`all_key_paths`] writes it) is unset by default: a file
/// path, an optional address or an optional credential.
#[cfg(test)]
pub(crate) fn is_unset_by_default(path: &str) -> bool {
    let Some((section, key)) = path.split_once('.') else {
        return false;
    };
    leaves_of(section).iter().any(|&(name, kind)| {
        name == key
            && matches!(
                kind,
                Kind::Path | Kind::OptionalAddress | Kind::OptionalText
            )
    })
}

/// Every value key as its path from the top of the file (`cores`, `limits.max_packet_size`).
#[cfg(test)]
pub(crate) fn all_key_paths() -> Vec<String> {
    let mut paths: Vec<String> = TOP_LEVEL_KEYS
        .iter()
        .map(|(key, _)| (*key).to_owned())
        .collect();
    for section in SECTIONS {
        paths.extend(
            leaves_of(section)
                .iter()
                .map(|(key, _)| format!("{section}.{key}")),
        );
    }
    paths
}

/// Checks every key of `document` against the schema: each must be known and hold a value of
/// its kind. Stops at the first problem, in the order the file is written.
pub(crate) fn check(document: &Document<'_>) -> Result<(), ConfigError> {
    let checker = Checker { document };
    checker.top_level(&document.root)
}

/// Walks a document, turning the first problem into an error with its line.
struct Checker<'d, 'a> {
    document: &'d Document<'a>,
}

impl Checker<'_, '_> {
    fn top_level(&self, root: &Table) -> Result<(), ConfigError> {
        for entry in &root.entries {
            if let Some(&(key, kind)) = TOP_LEVEL_KEYS.iter().find(|(key, _)| *key == entry.key) {
                self.leaf(entry, key, kind)?;
            } else if entry.key == LISTENER_SECTION {
                self.listeners(entry)?;
            } else if is_section(&entry.key) {
                match &entry.value {
                    Value::Table(table) => self.section(&entry.key, table)?,
                    other => {
                        return Err(self.invalid(
                            entry,
                            entry.key.clone(),
                            format!(
                                "must be a table, written [{}], found {}",
                                entry.key,
                                other.describe()
                            ),
                        ))
                    }
                }
            } else {
                return Err(self.unknown(entry, ""));
            }
        }
        Ok(())
    }

    fn listeners(&self, entry: &Entry) -> Result<(), ConfigError> {
        let Value::Array(items) = &entry.value else {
            let hint = if matches!(entry.value, Value::Table(_)) {
                " (two brackets: a file may have several listeners)"
            } else {
                ""
            };
            return Err(self.invalid(
                entry,
                LISTENER_SECTION.to_owned(),
                format!(
                    "must be an array of tables, written [[{LISTENER_SECTION}]]{hint}, found {}",
                    entry.value.describe()
                ),
            ));
        };
        for item in items {
            match item {
                Value::Table(table) => self.section(LISTENER_SECTION, table)?,
                other => {
                    return Err(self.invalid(
                        entry,
                        LISTENER_SECTION.to_owned(),
                        format!(
                            "must hold tables, written [[{LISTENER_SECTION}]], found {}",
                            other.describe()
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    fn section(&self, section: &str, table: &Table) -> Result<(), ConfigError> {
        let leaves = leaves_of(section);
        for entry in &table.entries {
            match leaves.iter().find(|(key, _)| *key == entry.key) {
                Some(&(key, kind)) => self.leaf(entry, &format!("{section}.{key}"), kind)?,
                None => return Err(self.unknown(entry, section)),
            }
        }
        Ok(())
    }

    fn leaf(&self, entry: &Entry, path: &str, kind: Kind) -> Result<(), ConfigError> {
        match check_value(&entry.value, kind) {
            Ok(()) => Ok(()),
            Err(reason) => Err(self.invalid(entry, path.to_owned(), reason)),
        }
    }

    fn invalid(&self, entry: &Entry, key: String, reason: String) -> ConfigError {
        ConfigError::Invalid {
            key,
            reason,
            line: Some(self.document.line_of(entry.offset)),
        }
    }

    fn unknown(&self, entry: &Entry, section: &str) -> ConfigError {
        ConfigError::UnknownKey {
            key: entry.key.clone(),
            section: section.to_owned(),
            suggestion: suggestion(section, &entry.key),
            line: Some(self.document.line_of(entry.offset)),
        }
    }
}

/// The valid key the user most likely meant by `key` in `section` ("" = top level): a near
/// name in the same place, written bare; otherwise a name from another broker we know, or an
/// almost exact name in another place, written as its path from the top of the file.
pub(crate) fn suggestion(section: &str, key: &str) -> Option<String> {
    let here = known_names(section);
    if let Some(near) = suggest::nearest(key, here.iter().copied()) {
        return Some(near.to_owned());
    }
    if let Some((_, path)) = OTHER_BROKER_NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(key))
    {
        return Some(match path.split_once('.') {
            Some((target, target_key)) if target == section => target_key.to_owned(),
            _ => (*path).to_owned(),
        });
    }
    let elsewhere: Vec<(&'static str, String)> = TOP_LEVEL_KEYS
        .iter()
        .filter(|_| !section.is_empty())
        .map(|(name, _)| (*name, (*name).to_owned()))
        .chain(
            SECTIONS
                .iter()
                .filter(|other| **other != section)
                .flat_map(|other| {
                    leaves_of(other)
                        .iter()
                        .map(move |(name, _)| (*name, format!("{other}.{name}")))
                }),
        )
        .collect();
    let near = suggest::nearest_within(key, elsewhere.iter().map(|(name, _)| *name), 1)?;
    elsewhere
        .into_iter()
        .find(|(name, _)| *name == near)
        .map(|(_, path)| path)
}

/// Whether `value` is of `kind`; if not, the reason, phrased to follow the key's name.
fn check_value(value: &Value, kind: Kind) -> Result<(), String> {
    let found = value.describe();
    match (kind, value) {
        (
            Kind::Bytes | Kind::Count | Kind::Seconds | Kind::Milliseconds | Kind::KeepaliveSeconds,
            Value::Integer(n),
        ) => {
            let max = if kind == Kind::KeepaliveSeconds {
                i64::from(u16::MAX)
            } else {
                i64::MAX
            };
            if *n < 0 {
                Err(format!("must not be negative, found {n}"))
            } else if *n > max {
                Err(format!("must be at most {max}{}, found {n}", unit(kind)))
            } else if usize::try_from(*n).is_err() {
                Err(format!("is too large for this machine, found {n}"))
            } else {
                Ok(())
            }
        }
        (
            Kind::Bytes | Kind::Count | Kind::Seconds | Kind::Milliseconds | Kind::KeepaliveSeconds,
            _,
        ) => Err(format!(
            "must be a whole number{}, found {found}",
            match kind {
                Kind::Bytes => " of bytes",
                Kind::Seconds | Kind::KeepaliveSeconds => " of seconds",
                Kind::Milliseconds => " of milliseconds",
                _ => "",
            }
        )),
        (Kind::Flag, Value::Boolean(_)) | (Kind::Text | Kind::OptionalText, Value::String(_)) => {
            Ok(())
        }
        (Kind::Flag, _) => Err(format!("must be true or false, found {found}")),
        (Kind::Text | Kind::OptionalText, _) => Err(format!("must be a string, found {found}")),
        (Kind::Path, Value::String(path)) if path.is_empty() => {
            Err("must name a file, found an empty string".to_owned())
        }
        (Kind::Path, Value::String(_)) => Ok(()),
        (Kind::Path, _) => Err(format!(
            "must be a string holding a file path, found {found}"
        )),
        (Kind::Directory, Value::String(path)) if path.is_empty() => {
            Err("must name a directory, found an empty string".to_owned())
        }
        (Kind::Directory, Value::String(_)) => Ok(()),
        (Kind::Directory, _) => Err(format!(
            "must be a string holding a directory path, found {found}"
        )),
        (Kind::Choice(words), Value::String(text)) if words.contains(&text.as_str()) => Ok(()),
        (Kind::Choice(words), _) => Err(format!(
            "must be one of {}, found {found}",
            words
                .iter()
                .map(|word| format!("\"{word}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        (Kind::TextList, Value::Array(items))
            if items.iter().all(|item| matches!(item, Value::String(_))) =>
        {
            Ok(())
        }
        (Kind::TextList, _) => Err(format!("must be an array of strings, found {found}")),
        (Kind::Address | Kind::OptionalAddress, Value::String(text)) => {
            match text.parse::<SocketAddr>() {
                Ok(_) => Ok(()),
                Err(_) => Err(format!(
                    "must be an IP address and port such as \"0.0.0.0:1883\" or \"[::]:1883\" \
                 (not a host name), found {found}"
                )),
            }
        }
        (Kind::Address | Kind::OptionalAddress, _) => Err(format!(
            "must be a string holding an IP address and port such as \"0.0.0.0:1883\", \
             found {found}"
        )),
        (Kind::Protocol, Value::String(text)) if ListenerProtocol::from_name(text).is_some() => {
            Ok(())
        }
        (Kind::Protocol, _) => Err(format!(
            "must be one of {}, found {found}",
            ListenerProtocol::ALL
                .iter()
                .map(|protocol| format!("\"{}\"", protocol.name()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The unit of a numeric kind, as it follows a number in a message.
fn unit(kind: Kind) -> &'static str {
    match kind {
        Kind::Bytes => " bytes",
        Kind::Seconds | Kind::KeepaliveSeconds => " seconds",
        Kind::Milliseconds => " milliseconds",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_text(text: &str) -> Result<(), ConfigError> {
        check(&Document::parse(text)?)
    }

    #[test]
    fn suggestions_prefer_the_same_section() {
        assert_eq!(
            suggestion(LIMITS_SECTION, "max_inflight_message").as_deref(),
            Some("max_inflight_messages")
        );
        assert_eq!(suggestion("", "limit").as_deref(), Some("limits"));
        assert_eq!(suggestion("", "listeners").as_deref(), Some("listener"));
        assert_eq!(suggestion(LISTENER_SECTION, "bnd").as_deref(), Some("bind"));
    }

    #[test]
    fn suggestions_find_keys_put_in_the_wrong_place() {
        assert_eq!(
            suggestion("", "max_packet_size").as_deref(),
            Some("limits.max_packet_size")
        );
        assert_eq!(
            suggestion(LIMITS_SECTION, "max_connections").as_deref(),
            Some("listener.max_connections")
        );
        assert_eq!(
            suggestion(SESSION_SECTION, "cores").as_deref(),
            Some("cores")
        );
    }

    #[test]
    fn suggestions_know_other_brokers_names() {
        assert_eq!(suggestion("", "port").as_deref(), Some("listener.bind"));
        assert_eq!(
            suggestion(LISTENER_SECTION, "port").as_deref(),
            Some("bind")
        );
        assert_eq!(
            suggestion("", "message_size_limit").as_deref(),
            Some("limits.max_packet_size")
        );
    }

    #[test]
    fn nothing_is_suggested_for_a_word_far_from_every_key() {
        assert_eq!(suggestion(LIMITS_SECTION, "colour"), None);
    }

    #[test]
    fn values_of_the_wrong_type_name_the_key_and_the_type() {
        let error = check_text("[limits]\nmax_packet_size = \"1MB\"\n").expect_err("a string");
        let message = error.to_string();
        assert!(
            message.contains("`limits.max_packet_size` must be a whole number of bytes"),
            "{message}"
        );
        assert!(message.contains("string \"1MB\""), "{message}");
        assert_eq!(error.line(), Some(2));
    }

    #[test]
    fn each_kind_rejects_what_it_cannot_hold() {
        let cases = [
            ("cores = -1", "`cores` must not be negative"),
            (
                "io_memory = 1.5",
                "`io_memory` must be a whole number of bytes",
            ),
            (
                "connection_messages = 1",
                "`connection_messages` must be true or false",
            ),
            (
                "[limits]\nmax_keepalive = 65536",
                "`limits.max_keepalive` must be at most 65535 seconds",
            ),
            (
                "[session]\nauto_id_prefix = 5",
                "`session.auto_id_prefix` must be a string",
            ),
            (
                "[session]\npersistent_client_expiration = 'forever'",
                "of seconds",
            ),
            (
                "[[listener]]\nbind = 'localhost:1883'",
                "`listener.bind` must be an IP address and port",
            ),
            (
                "[[listener]]\nbind = 1883",
                "`listener.bind` must be a string",
            ),
            (
                "[[listener]]\nprotocol = 'mqtts'",
                "`listener.protocol` must be one of \"mqtt\"",
            ),
            ("limits = 3", "`limits` must be a table"),
            (
                "[listener]\nbind = '0.0.0.0:1883'",
                "`listener` must be an array of tables",
            ),
            ("listener = ['0.0.0.0:1883']", "`listener` must hold tables"),
            (
                "[session]\nauto_id_prefix = 1979-05-27",
                "found a date-time",
            ),
        ];
        for (text, expected) in cases {
            let message = check_text(text).expect_err(text).to_string();
            assert!(message.contains(expected), "{text:?} gave {message:?}");
        }
    }

    #[test]
    fn the_default_file_passes() {
        assert!(check_text(super::super::DEFAULT_CONFIG_TOML).is_ok());
    }
}
