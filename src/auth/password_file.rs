//! The password file: `user:hash` lines as `mosquitto_passwd` writes them, read once (at
//! start and on reload) into a table that answers "is this the password of this user?".
//!
//! Format, as Mosquitto reads it: one `username:hash` per line; blank lines and lines whose
//! first non-blank character is `#` are ignored; blanks around the user name and the hash are
//! trimmed. hydrant is stricter than Mosquitto, which drops a bad line with a warning: any
//! line that is not valid (no `:`, empty user name, unreadable hash, a user named twice) makes
//! the whole file invalid, with its line number, so a reload with a typo keeps the previous
//! table instead of silently locking a user out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::password::{PasswordHash, PasswordHashError, PBKDF2_DEFAULT_ITERATIONS};

/// What is wrong with one line of a password file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PasswordLineError {
    /// A line that is neither blank, a comment, nor `user:hash`.
    #[error("expected 'username:hash'")]
    MissingColon,
    /// `:hash` with nothing before the colon.
    #[error("the user name is empty")]
    EmptyUsername,
    /// `user:` with nothing after the colon.
    #[error("user {0:?} has no password hash")]
    EmptyHash(String),
    /// A second `:` after the hash (Mosquitto would silently ignore what follows).
    #[error("unexpected ':' after the hash of user {0:?}")]
    TrailingField(String),
    /// The same user on two lines.
    #[error("user {user:?} is already defined on line {first_line}")]
    DuplicateUser {
        /// The user named twice.
        user: String,
        /// Where it was first defined.
        first_line: usize,
    },
    /// The hash field could not be read.
    #[error("user {user:?}: {reason}")]
    Hash {
        /// Whose hash it is.
        user: String,
        /// What is wrong with it.
        reason: PasswordHashError,
    },
}

/// A password file's text that does not parse: where and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {reason}")]
pub struct PasswordParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with that line.
    pub reason: PasswordLineError,
}

/// Why a password file could not be loaded.
#[derive(Debug, Error)]
pub enum PasswordFileError {
    /// The file could not be read.
    #[error("cannot read password file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file was read but a line is invalid.
    #[error("password file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line and what is wrong with it.
        source: PasswordParseError,
    },
    /// No decoy hash could be made for unknown users (no randomness from the system).
    #[error("password file {path}: {source}")]
    Decoy {
        /// The file.
        path: PathBuf,
        /// Why the decoy could not be made.
        source: PasswordHashError,
    },
}

/// Why parsing a password file's text failed (the path-less form of [`PasswordFileError`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PasswordTextError {
    /// A line is invalid.
    #[error(transparent)]
    Parse(#[from] PasswordParseError),
    /// No decoy hash could be made for unknown users.
    #[error(transparent)]
    Decoy(#[from] PasswordHashError),
}

/// The users of a password file and their hashes: what CONNECT checks a user name and
/// password against. Immutable once loaded; share it between cores behind an `Arc` and
/// replace it whole on reload.
pub struct PasswordFile {
    /// Each user's hash, by exact user name.
    users: HashMap<String, PasswordHash>,
    /// A hash of a random password with the scheme and cost of the file's first entry:
    /// unknown users are verified against it, so a refusal costs the same whether or not
    /// the user exists (no user enumeration by timing).
    decoy: PasswordHash,
}

impl PasswordFile {
    /// Reads and parses the password file at `path`.
    pub fn load(path: &Path) -> Result<Self, PasswordFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PasswordFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|error| match error {
            PasswordTextError::Parse(source) => PasswordFileError::Parse {
                path: path.to_owned(),
                source,
            },
            PasswordTextError::Decoy(source) => PasswordFileError::Decoy {
                path: path.to_owned(),
                source,
            },
        })
    }

    /// Parses a password file's text.
    pub fn parse(text: &str) -> Result<Self, PasswordTextError> {
        let mut users = HashMap::new();
        let mut first_lines: HashMap<String, usize> = HashMap::new();
        let mut first_hash: Option<PasswordHash> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let Some((user, hash)) =
                parse_line(raw).map_err(|reason| PasswordParseError { line, reason })?
            else {
                continue;
            };
            if let Some(&first_line) = first_lines.get(user) {
                return Err(PasswordParseError {
                    line,
                    reason: PasswordLineError::DuplicateUser {
                        user: user.to_owned(),
                        first_line,
                    },
                }
                .into());
            }
            first_lines.insert(user.to_owned(), line);
            if first_hash.is_none() {
                first_hash = Some(hash.clone());
            }
            users.insert(user.to_owned(), hash);
        }
        let decoy = match first_hash {
            Some(hash) => hash.decoy_like()?,
            None => PasswordHash::new_pbkdf2_sha512(b"", PBKDF2_DEFAULT_ITERATIONS)?,
        };
        Ok(Self { users, decoy })
    }

    /// Whether `password` is the password of `username`. An unknown user takes the same
    /// path (a full hash computation against a decoy) and gets `false`.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        match self.users.get(username) {
            Some(hash) => hash.verify(password),
            None => {
                // The decoy's password is random and never stored, so it cannot match; the
                // result goes through `black_box` so the computation is not optimised away.
                std::hint::black_box(self.decoy.verify(password));
                false
            }
        }
    }

    /// Whether the file defines `username`.
    pub fn contains_user(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// Number of users in the file.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file defines no user at all (then every user name is refused).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

impl std::fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

/// The user name a password file line defines, or `None` for blank and comment lines (and,
/// for editing, for lines that do not look like `user:...`). Shared with the editor of
/// `hydrant passwd` so both agree on what a line is.
pub(crate) fn line_username(raw: &str) -> Option<&str> {
    if is_ignored(raw) {
        return None;
    }
    let (user, _) = raw.split_once(':')?;
    Some(trim_blanks(user))
}

fn is_ignored(raw: &str) -> bool {
    let trimmed = trim_blanks(raw);
    trimmed.is_empty() || trimmed.starts_with('#')
}

/// Trims what Mosquitto trims: spaces, tabs and line ends.
fn trim_blanks(text: &str) -> &str {
    text.trim_matches(|c| c == ' ' || c == '\t' || c == '\r' || c == '\n')
}

fn parse_line(raw: &str) -> Result<Option<(&str, PasswordHash)>, PasswordLineError> {
    if is_ignored(raw) {
        return Ok(None);
    }
    let (user, rest) = raw.split_once(':').ok_or(PasswordLineError::MissingColon)?;
    let user = trim_blanks(user);
    if user.is_empty() {
        return Err(PasswordLineError::EmptyUsername);
    }
    let field = trim_blanks(rest);
    if field.is_empty() {
        return Err(PasswordLineError::EmptyHash(user.to_owned()));
    }
    if field.contains(':') {
        return Err(PasswordLineError::TrailingField(user.to_owned()));
    }
    let hash = PasswordHash::parse(field).map_err(|reason| PasswordLineError::Hash {
        user: user.to_owned(),
        reason,
    })?;
    Ok(Some((user, hash)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFRA: &str = "infra:$7$101$QDRygXXZ+r0DWMEL$koiC6Y7lnrguuItha5R5QH0B4+YfqRMg8cTlqd+gVVjwEiMHO0xOHuJ/ETUrjljVfqM4QgAyLBlpGLLI2L84ag==";
    const OLD: &str = "old:$6$8riF40sWZ9uGGSor$jCGSO5vMfPMXILqT15l8jZtWqqDEtnSBL4cesuPKe04jbUIdZV1hhYOOAFnk4WoWsQ4x5ZX9yTDTkxSXfWM43A==";

    #[test]
    fn users_verify_and_strangers_do_not() {
        let text = format!("# publishers\n{INFRA}\n\n  \n{OLD}\r\n");
        let file = PasswordFile::parse(&text).expect("valid file");
        assert_eq!(file.len(), 2);
        assert!(file.verify("infra", b"secret"));
        assert!(file.verify("old", b"secret"));
        assert!(!file.verify("infra", b"wrong"));
        assert!(!file.verify("Infra", b"secret"));
        assert!(!file.verify("nobody", b"secret"));
        assert!(file.contains_user("old"));
        assert!(!file.contains_user("nobody"));
    }

    #[test]
    fn blanks_around_fields_are_trimmed() {
        let (user, hash) = INFRA.split_once(':').expect("colon");
        let text = format!("  {user}\t: {hash}  \n");
        let file = PasswordFile::parse(&text).expect("valid file");
        assert!(file.verify("infra", b"secret"));
    }

    #[test]
    fn an_empty_file_refuses_everyone() {
        let file = PasswordFile::parse("# nothing yet\n").expect("valid file");
        assert!(file.is_empty());
        assert!(!file.verify("infra", b"secret"));
        assert!(!file.verify("", b""));
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let cases: [(String, usize, PasswordLineError); 6] = [
            (
                format!("{INFRA}\njust text\n"),
                2,
                PasswordLineError::MissingColon,
            ),
            (
                format!("# c\n\n:{}\n", &INFRA[6..]),
                3,
                PasswordLineError::EmptyUsername,
            ),
            (
                "bob:\n".into(),
                1,
                PasswordLineError::EmptyHash("bob".into()),
            ),
            (
                format!("{INFRA}:x\n"),
                1,
                PasswordLineError::TrailingField("infra".into()),
            ),
            (
                format!("{INFRA}\n{OLD}\n{INFRA}\n"),
                3,
                PasswordLineError::DuplicateUser {
                    user: "infra".into(),
                    first_line: 1,
                },
            ),
            (
                "bob:plaintext\n".into(),
                1,
                PasswordLineError::Hash {
                    user: "bob".into(),
                    reason: PasswordHashError::UnknownScheme,
                },
            ),
        ];
        for (text, line, reason) in cases {
            match PasswordFile::parse(&text) {
                Err(PasswordTextError::Parse(error)) => {
                    assert_eq!(error, PasswordParseError { line, reason }, "{text}");
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn errors_read_well() {
        let error = match PasswordFile::parse("a:b\n") {
            Err(error) => error,
            Ok(_) => panic!("must not parse"),
        };
        assert_eq!(
            error.to_string(),
            "line 1: user \"a\": unknown hash scheme (expected $7$, $6$ or $argon2id$; \
             plain-text passwords are not accepted)"
        );
        let missing = PasswordFile::load(Path::new("/nonexistent/hydrant.passwd"));
        assert!(matches!(missing, Err(PasswordFileError::Read { .. })));
    }

    #[test]
    fn line_username_agrees_with_the_parser() {
        assert_eq!(line_username(INFRA), Some("infra"));
        assert_eq!(line_username(" bob : x"), Some("bob"));
        assert_eq!(line_username("# infra:x"), None);
        assert_eq!(line_username("   "), None);
        assert_eq!(line_username("no colon"), None);
    }
}
