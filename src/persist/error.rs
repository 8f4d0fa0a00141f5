//! The errors of persistence, one per thing the broker may do about them.

use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use super::frame::FrameTooLarge;

/// A core's persistence directory cannot be created, listed or written: the only failure that
/// prevents persistence from starting. The broker may then run that core without persistence.
#[derive(Debug, thiserror::Error)]
#[error("persistence directory {} is unusable: {source}", path.display())]
pub struct DirectoryError {
    /// The directory.
    pub path: PathBuf,
    /// What the system said.
    #[source]
    pub source: io::Error,
}

/// The log no longer writes: every waiting and later ticket and append gets this. Cheap to
/// clone, since many waiters share one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// A write or sync failed; nothing after it is durable. After a failed `fdatasync` the
    /// kernel may have dropped the data it could not write, so retrying is not safe: the log
    /// stops rather than pretend.
    #[error("persistence log failed: {0}")]
    Failed(Rc<str>),
    /// The log was closed or dropped.
    #[error("persistence log is closed")]
    Closed,
}

/// Why a record was not appended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The core's files reached `max_disk_bytes` and the record is a queued message, which
    /// the disk bound's policy does not persist (see [`super::DiskState`]).
    #[error("max_disk_bytes reached: queued messages are not persisted")]
    OverDiskBound,
    /// The record is larger than any record may be.
    #[error(transparent)]
    TooLarge(#[from] FrameTooLarge),
    /// The log no longer writes.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Why a compaction did not complete. The log goes on either way, and the state it holds is
/// still complete: the old snapshot and every log stay until a new snapshot replaces them.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Another compaction of this core is running.
    #[error("a compaction is already running")]
    InProgress,
    /// Writing or installing the snapshot failed.
    #[error("writing the snapshot failed: {0}")]
    Snapshot(#[source] io::Error),
    /// The log no longer writes.
    #[error(transparent)]
    Log(#[from] LogError),
}
