//! Persistence: each core writes the state it owns to its own append-only log, compacts it
//! into a snapshot from time to time, and reads both back at start-up, whatever state the
//! files are in.
//!
//! # Who writes what
//! Every core opens one [`StateLog`] (in its own directory, `<persistence_location>/core-<id>`)
//! and appends a [`Record`] for each change to the state it owns:
//! - retained messages: the topic's *owner* core (the one that orders its updates) appends
//!   `RetainedSet`/`RetainedCleared`; the replicas on other cores write nothing;
//! - sessions: the core holding the session appends its records (created, expiry, ended,
//!   subscriptions, queued messages and their progress, QoS 2 ids from the client, will).
//!   Sessions do not move between cores while the broker runs; those of a core that no longer
//!   runs are written, whole, to the log of the core that adopts them at start-up.
//!
//! # When a PUBACK may go out
//! With `sync = "always"`, the broker acknowledges a QoS 1/2 PUBLISH (PUBACK, or PUBREC for
//! QoS 2) only after awaiting the [`Ticket`] of every record it wrote for it: the
//! `RetainedSet` on the owner core for a retained message, and the `MessageQueued` of each
//! persistent session it was given to (on each core involved). Many publishes share one disk
//! flush (group commit). With `sync = "interval"` or `"never"` the ticket resolves once the
//! record reaches the kernel, and the loss window is `sync_interval_ms` (or the kernel's
//! write-back). [`Ticket::written`] resolves at that point whatever the policy: for what must
//! outlive the process but has no acknowledgement to hold back (a QoS 0 retained message).
//! `shard/persistence.rs` is where the broker does all this.
//!
//! # Start-up
//! [`StateLog::open`] returns the records of the snapshot and then of each log, in order, and a
//! [`RecoveryReport`]; the broker rebuilds its state by applying them in order (a record for an
//! unknown session or message is ignored; deadlines already past are applied as expired). It
//! fails only when the directory is unusable; damaged files are truncated, skipped or moved
//! aside and reported (see `recovery.rs`).
//!
//! # Compaction and the disk bound
//! On its housekeeping tick the broker asks [`StateLog::compaction_due`] and, when due, runs
//! [`StateLog::compact`] with a point-in-time copy of its durable state as records. The files
//! stay within `max_disk_bytes` for everything but the live state itself: past the bound,
//! queued messages are no longer persisted ([`DiskState::OverBound`]).
//!
//! # Files
//! `frame.rs` documents the format (header with magic, version and core; records framed with
//! length, type and CRC32C), `files.rs` the directory layout. `persistence = false` means no
//! `StateLog` is opened at all.

mod config;
mod error;
mod files;
mod frame;
mod log;
mod record;
mod recovery;
mod sessions;
mod snapshot;

pub use config::{
    CompactionTrigger, PersistenceConfig, PersistenceConfigError, SyncMode, SyncPolicy,
    DEFAULT_AUTOSAVE_LOG_BYTES, DEFAULT_AUTOSAVE_LOG_RATIO, DEFAULT_MAX_DISK_BYTES,
    DEFAULT_PERSISTENCE, DEFAULT_PERSISTENCE_LOCATION, DEFAULT_SYNC, DEFAULT_SYNC_INTERVAL_MS,
    DEFAULT_WRITE_BUFFER_BYTES, MAX_SYNC_INTERVAL_MS, MIN_MAX_DISK_BYTES, MIN_WRITE_BUFFER_BYTES,
};
pub use error::{AppendError, CompactError, DirectoryError, LogError};
pub use files::stored_cores;
pub use frame::{
    FileKind, FrameDamage, FrameTooLarge, HeaderError, Skipped, TornTail, FORMAT_VERSION,
    MAX_FRAME_LEN,
};
pub use log::{DiskState, DiskUsage, LogStats, StateLog, Ticket};
pub use record::{
    Acknowledgement, DecodeError, QueuedMessage, Record, RecordKind, RetainedMessage, StoredWill,
};
pub use recovery::{
    recover, retire, FileReport, MoveAsideReason, MovedAside, Recovered, RecoveryReport,
    RemovalReason, RemovedFile,
};
pub use sessions::{RecordedSubscription, SessionImage, SessionImages};
pub use snapshot::{CompactionReport, SLICE_BUDGET};

#[cfg(test)]
mod testing;
