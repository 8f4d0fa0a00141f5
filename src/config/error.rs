//! Why a configuration was refused, worded for the person editing the file.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::schema;

/// A configuration that cannot be used: unreadable, not TOML, an unknown key, or a bad value.
/// Every variant found in a document carries the line it was found on, when known, so the
/// message points the user at the line to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Io {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// The text is not valid TOML.
    #[error("{}invalid TOML: {message}", at_line(*line))]
    Parse {
        /// What the TOML parser objected to.
        message: String,
        /// The 1-based line of the problem, when the parser knows it.
        line: Option<usize>,
    },

    /// A key or section name that hydrant does not know, usually a typo.
    #[error("{}", unknown_key_message(key, section, suggestion.as_deref(), *line))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The section it was found in (`limits`, `session`, `listener`), or "" at the top level.
        section: String,
        /// The valid key the user most likely meant: a bare name when it belongs in the same
        /// section, otherwise its path from the top of the file (`limits.max_packet_size`).
        suggestion: Option<String>,
        /// The 1-based line of the key.
        line: Option<usize>,
    },

    /// A known key with a value of the wrong type or out of its allowed range.
    #[error("{}`{key}` {reason}", at_line(*line))]
    Invalid {
        /// The key's path from the top of the file, e.g. `limits.max_packet_size` or
        /// `listener.bind`.
        key: String,
        /// What is wrong, phrased to follow the key: "must be at least 1, found 0".
        reason: String,
        /// The 1-based line of the key, when the value came from a document.
        line: Option<usize>,
    },

    /// An error found in a named file (from [`Config::load`](super::Config::load)).
    #[error("{}: {error}", path.display())]
    File {
        /// The file the error is in.
        path: PathBuf,
        /// The error itself.
        error: Box<ConfigError>,
    },
}

impl ConfigError {
    /// The error without the file it was found in, to match on its kind after
    /// [`Config::load`](super::Config::load).
    #[must_use]
    pub fn without_path(&self) -> &ConfigError {
        match self {
            ConfigError::File { error, .. } => error.without_path(),
            other => other,
        }
    }

    /// The 1-based line the error points at, if any.
    #[must_use]
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Parse { line, .. }
            | ConfigError::UnknownKey { line, .. }
            | ConfigError::Invalid { line, .. } => *line,
            ConfigError::File { error, .. } => error.line(),
        }
    }
}

/// "line N: " when the line is known, so messages read the same with or without one.
fn at_line(line: Option<usize>) -> String {
    line.map(|line| format!("line {line}: "))
        .unwrap_or_default()
}

/// How a section is written in a TOML file, for messages.
fn section_header(section: &str) -> String {
    if section == schema::LISTENER_SECTION {
        format!("[[{section}]]")
    } else {
        format!("[{section}]")
    }
}

/// The message of [`ConfigError::UnknownKey`]: where the key is, then the nearest valid key,
/// or, when nothing is near, the keys that are valid there.
fn unknown_key_message(
    key: &str,
    section: &str,
    suggestion: Option<&str>,
    line: Option<usize>,
) -> String {
    let mut message = at_line(line);
    let place = if section.is_empty() {
        "at the top level".to_owned()
    } else {
        format!("in {}", section_header(section))
    };
    // Writing to a String cannot fail.
    let _ = write!(message, "unknown key `{key}` {place}; ");
    match suggestion {
        Some(path) => {
            let _ = match path.split_once('.') {
                Some((other_section, other_key)) => write!(
                    message,
                    "did you mean `{other_key}` in {}?",
                    section_header(other_section)
                ),
                None if section.is_empty() && schema::is_section(path) => {
                    write!(
                        message,
                        "did you mean the section {}?",
                        section_header(path)
                    )
                }
                None if !section.is_empty() && schema::is_top_level_key(path) => write!(
                    message,
                    "did you mean the top-level key `{path}` (it goes before the first section)?"
                ),
                None => write!(message, "did you mean `{path}`?"),
            };
        }
        None => {
            let known = schema::known_names(section).join("`, `");
            let _ = write!(message, "the valid keys here are `{known}`");
        }
    }
    message
}
