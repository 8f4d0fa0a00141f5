//! The files each listener's access rests on (password file, ACL file, TLS certificates),
//! loaded once at start-up and again on SIGHUP, and the hand-over of a reload to every core.
//!
//! Files are read and parsed on the signal thread, never on a core: a core only swaps in the
//! finished tables when its clock next ticks ([`ReloadSource::newer_than`]). A reload that
//! fails for one file keeps that file's previous tables and says why; the other files still
//! take effect.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::auth::{Acl, AclFileError, PasswordFile, PasswordFileError};
use crate::config::{Config, ListenerConfig};
use crate::transport::{self, TlsError, TlsFiles};

/// Why a listener's file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("listener {bind}: {problem}")]
pub struct ListenerFileError {
    /// The listener's address, to tell listeners apart.
    pub bind: std::net::SocketAddr,
    /// What is wrong, naming the file (boxed: errors are rare, results common).
    pub problem: Box<ListenerFileProblem>,
}

/// What is wrong with one of a listener's files.
#[derive(Debug, thiserror::Error)]
pub enum ListenerFileProblem {
    /// The password file.
    #[error(transparent)]
    Passwords(PasswordFileError),
    /// The ACL file.
    #[error(transparent)]
    Acl(AclFileError),
    /// The certificate, key or CA file.
    #[error(transparent)]
    Tls(TlsError),
}

impl ListenerFileError {
    fn new(bind: std::net::SocketAddr, problem: ListenerFileProblem) -> Self {
        Self {
            bind,
            problem: Box::new(problem),
        }
    }
}

/// What one listener's files say, shared read-only by every core.
#[derive(Clone)]
pub struct ListenerFiles {
    /// The users and their password hashes (`password_file`).
    pub passwords: Option<Arc<PasswordFile>>,
    /// The access rules (`acl_file`); `None` when the listener has none (everything allowed).
    pub acl: Option<Arc<Acl>>,
    /// The TLS server configuration (`mqtt+tls` and `wss` listeners).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl ListenerFiles {
    /// Loads every file `listener` names.
    pub fn load(listener: &ListenerConfig) -> Result<Self, ListenerFileError> {
        Self::reload(listener, None, &mut |error| Err(error))
    }

    /// Loads every file `listener` names; a file that fails keeps its tables from `previous`
    /// (when there is one) after `failed` is told why. At start-up there is no previous
    /// state, and `failed` decides whether to go on.
    fn reload(
        listener: &ListenerConfig,
        previous: Option<&ListenerFiles>,
        failed: &mut dyn FnMut(ListenerFileError) -> Result<(), ListenerFileError>,
    ) -> Result<Self, ListenerFileError> {
        let bind = listener.bind;
        let passwords = match &listener.password_file {
            None => None,
            Some(path) => match PasswordFile::load(path) {
                Ok(file) => Some(Arc::new(file)),
                Err(source) => {
                    failed(ListenerFileError::new(
                        bind,
                        ListenerFileProblem::Passwords(source),
                    ))?;
                    previous.and_then(|files| files.passwords.clone())
                }
            },
        };
        let acl = match &listener.acl_file {
            None => None,
            Some(path) => match Acl::load(path) {
                Ok(acl) => Some(Arc::new(acl)),
                Err(source) => {
                    failed(ListenerFileError::new(
                        bind,
                        ListenerFileProblem::Acl(source),
                    ))?;
                    previous.and_then(|files| files.acl.clone())
                }
            },
        };
        let tls = match tls_files(listener) {
            None => None,
            Some(files) => match transport::load_server_config(&files) {
                Ok(config) => Some(config),
                Err(source) => {
                    failed(ListenerFileError::new(
                        bind,
                        ListenerFileProblem::Tls(source),
                    ))?;
                    previous.and_then(|files| files.tls.clone())
                }
            },
        };
        Ok(Self {
            passwords,
            acl,
            tls,
        })
    }
}

/// The TLS files of a listener that speaks TLS.
fn tls_files(listener: &ListenerConfig) -> Option<TlsFiles> {
    if !listener.protocol.uses_tls() {
        return None;
    }
    Some(TlsFiles {
        certfile: listener.certfile.clone()?,
        keyfile: listener.keyfile.clone()?,
        cafile: listener.cafile.clone(),
        require_certificate: listener.require_certificate,
    })
}

/// Every listener's files, in the order of `config.listener`, as of one load.
#[derive(Clone)]
pub struct AccessFiles {
    /// Counts loads: 0 at start-up, one more per reload.
    pub generation: u64,
    /// One entry per listener.
    pub listeners: Vec<ListenerFiles>,
}

impl AccessFiles {
    /// Loads every listener's files at start-up; the first file that fails stops the broker.
    pub fn load(config: &Config) -> Result<Self, ListenerFileError> {
        let listeners = config
            .listener
            .iter()
            .map(ListenerFiles::load)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            generation: 0,
            listeners,
        })
    }

    /// Loads every listener's files again; each file that fails keeps its previous tables and
    /// is returned with why.
    pub fn reload(&self, config: &Config) -> (Self, Vec<ListenerFileError>) {
        let mut errors = Vec::new();
        let listeners = config
            .listener
            .iter()
            .zip(&self.listeners)
            .map(|(listener, previous)| {
                let mut keep_going = |error| {
                    errors.push(error);
                    Ok(())
                };
                match ListenerFiles::reload(listener, Some(previous), &mut keep_going) {
                    Ok(files) => files,
                    // Unreachable in practice: `keep_going` never stops the load.
                    Err(_) => previous.clone(),
                }
            })
            .collect();
        (
            Self {
                generation: self.generation + 1,
                listeners,
            },
            errors,
        )
    }
}

/// Where the signal thread publishes reloaded files and every core picks them up: a counter
/// each core compares on its clock tick (no lock on any path a client drives) and the files
/// behind a lock taken once per reload per core.
pub struct ReloadSource {
    generation: AtomicU64,
    current: Mutex<Arc<AccessFiles>>,
}

impl ReloadSource {
    /// A source holding the start-up files.
    pub fn new(files: AccessFiles) -> Self {
        Self {
            generation: AtomicU64::new(files.generation),
            current: Mutex::new(Arc::new(files)),
        }
    }

    /// The files now in force.
    pub fn current(&self) -> Arc<AccessFiles> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The files now in force if they are newer than generation `seen`.
    pub fn newer_than(&self, seen: u64) -> Option<Arc<AccessFiles>> {
        if self.generation.load(Ordering::Acquire) == seen {
            return None;
        }
        Some(self.current())
    }

    /// Re-reads every file under `config` and publishes the result; returns the files that
    /// failed (their previous tables stay in force).
    pub fn reload(&self, config: &Config) -> Vec<ListenerFileError> {
        let (files, errors) = self.current().reload(config);
        let generation = files.generation;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(files);
        self.generation.store(generation, Ordering::Release);
        errors
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A file under a fresh temporary directory, removed with it.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "hydrant-files-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            Self(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).expect("write");
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn config_with_acl(acl: PathBuf) -> Config {
        let mut config = Config::default();
        config.listener[0].acl_file = Some(acl);
        config
    }

    #[test]
    fn a_listener_without_files_loads_nothing() {
        let files = AccessFiles::load(&Config::default()).expect("no files to fail");
        assert_eq!(files.listeners.len(), 1);
        let listener = &files.listeners[0];
        assert!(listener.passwords.is_none() && listener.acl.is_none() && listener.tls.is_none());
    }

    #[test]
    fn a_broken_file_at_start_up_names_the_listener_and_the_file() {
        let scratch = Scratch::new("startup");
        let acl = scratch.write("acl", "topic sometimes a/b\n");
        let error = match AccessFiles::load(&config_with_acl(acl.clone())) {
            Ok(_) => panic!("a broken ACL file was accepted"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("0.0.0.0:1883"), "{error}");
        assert!(error.contains(&acl.display().to_string()), "{error}");
    }

    #[test]
    fn a_reload_that_fails_keeps_the_previous_rules_and_one_that_succeeds_replaces_them() {
        let scratch = Scratch::new("reload");
        let acl = scratch.write("acl", "topic read a/#\n");
        let config = config_with_acl(acl.clone());
        let source = ReloadSource::new(AccessFiles::load(&config).expect("valid"));
        let first = source.current();
        assert!(source.newer_than(0).is_none(), "nothing reloaded yet");

        std::fs::write(&acl, "topic sometimes a/b\n").expect("write");
        let errors = source.reload(&config);
        assert_eq!(errors.len(), 1);
        let kept = source.newer_than(0).expect("a reload was published");
        assert_eq!(kept.generation, 1);
        let (before, after) = (&first.listeners[0].acl, &kept.listeners[0].acl);
        assert!(
            matches!((before, after), (Some(a), Some(b)) if Arc::ptr_eq(a, b)),
            "the previous ACL stays in force"
        );

        std::fs::write(&acl, "topic read a/#\ntopic read b/#\n").expect("write");
        assert!(source.reload(&config).is_empty());
        let replaced = source.newer_than(1).expect("second reload");
        assert_eq!(
            replaced.listeners[0]
                .acl
                .as_ref()
                .map(|acl| acl.rule_count()),
            Some(2)
        );
    }
}
