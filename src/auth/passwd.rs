//! `hydrant passwd FILE USER`: creates, updates or deletes one entry of a password file, the
//! way `mosquitto_passwd` does, so operators can keep one file for both brokers.
//!
//! New entries are argon2id by default, or `$7$` (PBKDF2-SHA512, readable by Mosquitto 2.x)
//! on request. Every other line (other users, comments, lines hydrant itself would refuse) is
//! kept byte for byte. The password comes from a prompt without echo when standard input is
//! a terminal (asked twice), otherwise from the first line of standard input. The file is
//! replaced atomically (a temporary file in the same directory, synced, renamed over the old
//! one, the directory synced) and keeps its permissions and owner; a new file gets 0600.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::password::{PasswordHash, PasswordHashError};
use super::password_file::line_username;

/// Permissions of a password file `hydrant passwd` creates: readable by its owner only.
pub const NEW_FILE_MODE: u32 = 0o600;

/// Longest user name MQTT can carry (a UTF-8 string with a 16-bit length).
const MAX_USERNAME_LEN: usize = u16::MAX as usize;

/// The hash scheme for a new or updated entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashScheme {
    /// argon2id with the default parameters (hydrant only).
    Argon2id,
    /// `$7$` PBKDF2-SHA512, readable by Mosquitto 2.x too.
    Pbkdf2Sha512 {
        /// Iteration count (Mosquitto's default is 101).
        iterations: u32,
    },
}

/// What to do with the user's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswdAction {
    /// Add the user, or replace its hash, with a password read from standard input.
    Set(HashScheme),
    /// Remove the user.
    Delete,
}

/// One `hydrant passwd` invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdRequest {
    /// The password file.
    pub file: PathBuf,
    /// The user whose entry changes.
    pub username: String,
    /// What to do.
    pub action: PasswdAction,
    /// Start from an empty file (`-c`), replacing any existing content.
    pub create: bool,
}

/// Why `hydrant passwd` failed; the file is left unchanged in every case.
#[derive(Debug, Error)]
pub enum PasswdError {
    /// The user name cannot be stored in a password file or sent over MQTT.
    #[error("invalid user name: {0}")]
    InvalidUsername(&'static str),
    /// `-c` and `-D` together.
    #[error("-c (create) and -D (delete) cannot be used together")]
    CreateAndDelete,
    /// The file does not exist and `-c` was not given.
    #[error("password file {0} does not exist (use -c to create it)")]
    MissingFile(PathBuf),
    /// The file exists but could not be read.
    #[error("cannot read password file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// `-D` for a user the file does not define.
    #[error("user {user:?} is not in {path}")]
    UserNotFound {
        /// The user asked for.
        user: String,
        /// The file.
        path: PathBuf,
    },
    /// No usable password was given.
    #[error("{0}")]
    Password(&'static str),
    /// Reading the password failed.
    #[error("cannot read the password: {0}")]
    PasswordInput(io::Error),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] PasswordHashError),
    /// The new file could not be written; the old one is untouched.
    #[error("cannot write password file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
}

/// Carries out `request`, reading the password from standard input when one is needed.
pub fn run(request: &PasswdRequest) -> Result<(), PasswdError> {
    check_username(&request.username)?;
    if request.create && request.action == PasswdAction::Delete {
        return Err(PasswdError::CreateAndDelete);
    }
    let path = std::fs::canonicalize(&request.file).unwrap_or_else(|_| request.file.clone());
    let existing = match std::fs::metadata(&path) {
        Ok(metadata) => Some(metadata),
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(source) => return Err(PasswdError::Read { path, source }),
    };
    let text = match (&existing, request.create) {
        (_, true) => String::new(),
        (None, false) => return Err(PasswdError::MissingFile(path)),
        (Some(_), false) => std::fs::read_to_string(&path).map_err(|source| PasswdError::Read {
            path: path.clone(),
            source,
        })?,
    };
    let updated = match request.action {
        PasswdAction::Delete => {
            remove_entry(&text, &request.username).ok_or_else(|| PasswdError::UserNotFound {
                user: request.username.clone(),
                path: path.clone(),
            })?
        }
        PasswdAction::Set(scheme) => {
            let password = read_password()?;
            let hash = match scheme {
                HashScheme::Argon2id => PasswordHash::new_argon2id(&password)?,
                HashScheme::Pbkdf2Sha512 { iterations } => {
                    PasswordHash::new_pbkdf2_sha512(&password, iterations)?
                }
            };
            set_entry(&text, &request.username, &hash)
        }
    };
    let (mode, owner) = match &existing {
        Some(metadata) => (
            metadata.mode() & 0o7777,
            Some((metadata.uid(), metadata.gid())),
        ),
        None => (NEW_FILE_MODE, None),
    };
    write_atomically(&path, updated.as_bytes(), mode, owner)
        .map_err(|source| PasswdError::Write { path, source })
}

/// The file's text with `username`'s entry set to `hash`: the first line defining the user is
/// replaced (any later duplicate is dropped), or a line is appended. Other lines are kept.
pub fn set_entry(text: &str, username: &str, hash: &PasswordHash) -> String {
    let entry = format!("{username}:{hash}");
    let mut out = String::with_capacity(text.len() + entry.len() + 1);
    let mut written = false;
    for line in text.lines() {
        if line_username(line) == Some(username) {
            if !written {
                out.push_str(&entry);
                out.push('\n');
                written = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !written {
        out.push_str(&entry);
        out.push('\n');
    }
    out
}

/// The file's text without `username`'s entries, or `None` when it has none.
pub fn remove_entry(text: &str, username: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut found = false;
    for line in text.lines() {
        if line_username(line) == Some(username) {
            found = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    found.then_some(out)
}

fn check_username(username: &str) -> Result<(), PasswdError> {
    let reason = if username.is_empty() {
        "it is empty"
    } else if username.len() > MAX_USERNAME_LEN {
        "it is longer than 65535 bytes"
    } else if username.contains(':') {
        "it contains ':', the field separator"
    } else if username.contains(['\n', '\r', '\0']) {
        "it contains a line break or NUL"
    } else if username.trim_matches([' ', '\t']) != username {
        "it starts or ends with a blank, which the file format trims"
    } else if username.starts_with('#') {
        "it starts with '#', which marks a comment line"
    } else {
        return Ok(());
    };
    Err(PasswdError::InvalidUsername(reason))
}

/// The new password: prompted twice without echo on a terminal, else one line of stdin.
fn read_password() -> Result<Vec<u8>, PasswdError> {
    let stdin = io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt_hidden("Password: ").map_err(PasswdError::PasswordInput)?;
        let second = prompt_hidden("Reenter password: ").map_err(PasswdError::PasswordInput)?;
        if first != second {
            return Err(PasswdError::Password("passwords do not match"));
        }
        first
    } else {
        let mut line = String::new();
        let read = stdin
            .lock()
            .read_line(&mut line)
            .map_err(PasswdError::PasswordInput)?;
        if read == 0 {
            return Err(PasswdError::Password("no password on standard input"));
        }
        strip_line_end(line)
    };
    if password.is_empty() {
        return Err(PasswdError::Password("the password is empty"));
    }
    Ok(password.into_bytes())
}

fn strip_line_end(mut line: String) -> String {
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    line
}

/// Prints `prompt` on stderr and reads one line from the terminal on stdin with echo off.
/// Echo goes off before the prompt appears, so nothing typed after it is ever echoed.
fn prompt_hidden(prompt: &str) -> io::Result<String> {
    let mut stderr = io::stderr();
    let line = {
        let _echo_off = EchoOff::new(libc::STDIN_FILENO)?;
        stderr.write_all(prompt.as_bytes())?;
        stderr.flush()?;
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line)?;
        line
    };
    stderr.write_all(b"\n")?;
    Ok(strip_line_end(line))
}

/// Turns terminal echo off until dropped.
struct EchoOff {
    fd: libc::c_int,
    saved: libc::termios,
}

impl EchoOff {
    fn new(fd: libc::c_int) -> io::Result<Self> {
        // SAFETY: `termios` is plain data; tcgetattr fills it completely when it returns 0,
        // and we return before using it otherwise.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid, exclusively borrowed termios.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut silent = saved;
        silent.c_lflag &= !libc::ECHO;
        // SAFETY: `silent` is a valid termios derived from the terminal's own settings.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &silent) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings tcgetattr returned for the same descriptor. A failure
        // leaves echo off, which the user notices and the shell's `reset` repairs.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

/// Replaces `path` with `contents` atomically: readers see the old file or the new one,
/// never a mix, even after a crash.
fn write_atomically(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".hydrant-{}.tmp", std::process::id()));
    let temporary = directory.join(temporary_name);
    let result = write_and_rename(&temporary, path, contents, mode, owner);
    if result.is_err() {
        // Best effort: the temporary file may not exist if creating it failed.
        let _ = std::fs::remove_file(&temporary);
        return result;
    }
    File::open(&directory)?.sync_all()
}

fn write_and_rename(
    temporary: &Path,
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(NEW_FILE_MODE)
        .open(temporary)?;
    if let Some((uid, gid)) = owner {
        let current = file.metadata()?;
        if (current.uid(), current.gid()) != (uid, gid) {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
    }
    // Set after the owner: the umask must not narrow it, and chown may clear set-id bits.
    file.set_permissions(Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash() -> PasswordHash {
        PasswordHash::new_pbkdf2_sha512(b"pw", 1).expect("hashing works")
    }

    #[test]
    fn set_entry_replaces_in_place_and_keeps_everything_else() {
        let text = "# header\nalice:$7$old\n\nbob:$6$x$y\n";
        let hash = hash();
        let updated = set_entry(text, "alice", &hash);
        assert_eq!(updated, format!("# header\nalice:{hash}\n\nbob:$6$x$y\n"));
        let appended = set_entry(text, "carol", &hash);
        assert_eq!(appended, format!("{text}carol:{hash}\n"));
        assert_eq!(set_entry("", "a", &hash), format!("a:{hash}\n"));
        assert_eq!(
            set_entry("no newline at end", "a", &hash),
            format!("no newline at end\na:{hash}\n")
        );
    }

    #[test]
    fn set_entry_drops_later_duplicates() {
        let hash = hash();
        let updated = set_entry("a:1\nb:2\na:3\n", "a", &hash);
        assert_eq!(updated, format!("a:{hash}\nb:2\n"));
    }

    #[test]
    fn remove_entry_removes_only_that_user() {
        assert_eq!(
            remove_entry("# c\nalice:x\nbob:y\n", "alice").as_deref(),
            Some("# c\nbob:y\n")
        );
        assert_eq!(remove_entry("alice:x\n", "bob"), None);
        assert_eq!(
            remove_entry("# alice:x\n", "alice"),
            None,
            "comments are not users"
        );
    }

    #[test]
    fn user_names_that_break_the_format_are_refused() {
        for bad in ["", "a:b", "a\nb", " a", "a\t", "#a", "a\0"] {
            assert!(
                matches!(check_username(bad), Err(PasswdError::InvalidUsername(_))),
                "{bad:?}"
            );
        }
        for good in ["infra", "john doe", "a#b", "ü"] {
            assert!(check_username(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn line_ends_are_stripped_once() {
        assert_eq!(strip_line_end("pw\r\n".into()), "pw");
        assert_eq!(strip_line_end("pw\n".into()), "pw");
        assert_eq!(strip_line_end("pw".into()), "pw");
        assert_eq!(strip_line_end(" pw \n".into()), " pw ");
    }
}
