//! What the user configures about persistence, and the policies derived from it.
//!
//! Key names follow Mosquitto where the concept is the same (`persistence`,
//! `persistence_location`); the rest are hydrant's own. [`PersistenceConfig`] is a plain serde
//! struct, meant to be embedded by the broker's configuration.

use std::path::PathBuf;
use std::time::Duration;

/// Default `persistence`: off, as with Mosquitto.
pub const DEFAULT_PERSISTENCE: bool = false;
/// Default `persistence_location`: a directory beside where the broker runs.
pub const DEFAULT_PERSISTENCE_LOCATION: &str = "hydrant-data";
/// Default `sync`: a bounded loss window, without a disk flush per message.
pub const DEFAULT_SYNC: SyncMode = SyncMode::Interval;
/// Default `sync_interval_ms`: 1 s of changes at most are lost by a power cut.
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 1000;
/// Default `max_disk_bytes`: 0, no bound.
pub const DEFAULT_MAX_DISK_BYTES: u64 = 0;
/// Default `autosave_log_bytes`: compact once a core's log passes 64 MiB.
pub const DEFAULT_AUTOSAVE_LOG_BYTES: u64 = 64 * 1024 * 1024;
/// Default `autosave_log_ratio`: and once it is twice the size of the snapshot.
pub const DEFAULT_AUTOSAVE_LOG_RATIO: u32 = 2;
/// Default `write_buffer_bytes`: 4 MiB of records may wait for the disk per core.
pub const DEFAULT_WRITE_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Smallest `max_disk_bytes` other than 0: room for a snapshot and a log of some use.
pub const MIN_MAX_DISK_BYTES: u64 = 1024 * 1024;
/// Smallest `write_buffer_bytes`.
pub const MIN_WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// Largest `sync_interval_ms`: one hour.
pub const MAX_SYNC_INTERVAL_MS: u64 = 3_600_000;

/// When a record written to the log is forced to the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Before the record's ticket resolves: nothing acknowledged is lost (group commit).
    Always,
    /// At most `sync_interval_ms` after the record was written: a bounded loss window.
    Interval,
    /// Never by the broker (the kernel writes back on its own, typically within 30 s).
    Never,
}

/// The persistence settings of the broker (each core applies them to its own files).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersistenceConfig {
    /// Whether state is written to disk at all.
    pub persistence: bool,
    /// The directory holding every core's files (one subdirectory per core).
    pub persistence_location: PathBuf,
    /// When records are forced to the disk.
    pub sync: SyncMode,
    /// With `sync = "interval"`, the longest a written record waits for its flush (ms).
    pub sync_interval_ms: u64,
    /// Bytes one core's files may use; 0 = unbounded. Past it, new queued messages are not
    /// persisted (see [`super::DiskState`]). Files moved aside as corrupt are not counted.
    pub max_disk_bytes: u64,
    /// Compact once the log of a core exceeds this many bytes...
    pub autosave_log_bytes: u64,
    /// ...and this many times the size of its snapshot (so that a large state is not
    /// rewritten for every small change).
    pub autosave_log_ratio: u32,
    /// Bytes of records a core buffers while the disk catches up; past it appends wait.
    pub write_buffer_bytes: usize,
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        PersistenceConfig {
            persistence: DEFAULT_PERSISTENCE,
            persistence_location: PathBuf::from(DEFAULT_PERSISTENCE_LOCATION),
            sync: DEFAULT_SYNC,
            sync_interval_ms: DEFAULT_SYNC_INTERVAL_MS,
            max_disk_bytes: DEFAULT_MAX_DISK_BYTES,
            autosave_log_bytes: DEFAULT_AUTOSAVE_LOG_BYTES,
            autosave_log_ratio: DEFAULT_AUTOSAVE_LOG_RATIO,
            write_buffer_bytes: DEFAULT_WRITE_BUFFER_BYTES,
        }
    }
}

/// A persistence setting out of its range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PersistenceConfigError {
    /// `persistence = true` without a directory.
    #[error("persistence_location must not be empty when persistence is on")]
    EmptyLocation,
    /// `sync_interval_ms` outside 1..=3,600,000.
    #[error("sync_interval_ms must be from 1 to {MAX_SYNC_INTERVAL_MS}, not {0}")]
    SyncInterval(u64),
    /// `max_disk_bytes` below the minimum.
    #[error("max_disk_bytes must be 0 (unbounded) or at least {MIN_MAX_DISK_BYTES}, not {0}")]
    MaxDiskBytes(u64),
    /// `autosave_log_ratio` of 0.
    #[error("autosave_log_ratio must be at least 1")]
    AutosaveLogRatio,
    /// `write_buffer_bytes` below the minimum.
    #[error("write_buffer_bytes must be at least {MIN_WRITE_BUFFER_BYTES}, not {0}")]
    WriteBufferBytes(usize),
}

impl PersistenceConfig {
    /// Checks every value is in its range (the broker's config validation calls this).
    pub fn validate(&self) -> Result<(), PersistenceConfigError> {
        if self.persistence && self.persistence_location.as_os_str().is_empty() {
            return Err(PersistenceConfigError::EmptyLocation);
        }
        if !(1..=MAX_SYNC_INTERVAL_MS).contains(&self.sync_interval_ms) {
            return Err(PersistenceConfigError::SyncInterval(self.sync_interval_ms));
        }
        if self.max_disk_bytes != 0 && self.max_disk_bytes < MIN_MAX_DISK_BYTES {
            return Err(PersistenceConfigError::MaxDiskBytes(self.max_disk_bytes));
        }
        if self.autosave_log_ratio == 0 {
            return Err(PersistenceConfigError::AutosaveLogRatio);
        }
        if self.write_buffer_bytes < MIN_WRITE_BUFFER_BYTES {
            return Err(PersistenceConfigError::WriteBufferBytes(
                self.write_buffer_bytes,
            ));
        }
        Ok(())
    }

    /// The durability policy these settings ask for.
    pub fn sync_policy(&self) -> SyncPolicy {
        match self.sync {
            SyncMode::Always => SyncPolicy::Always,
            SyncMode::Interval => {
                SyncPolicy::Interval(Duration::from_millis(self.sync_interval_ms.max(1)))
            }
            SyncMode::Never => SyncPolicy::Never,
        }
    }

    /// When compaction is due.
    pub fn compaction_trigger(&self) -> CompactionTrigger {
        CompactionTrigger {
            log_bytes: self.autosave_log_bytes,
            log_ratio: self.autosave_log_ratio.max(1),
            max_disk_bytes: self.max_disk_bytes,
        }
    }
}

/// When the log writer forces records to the disk, and so when an append's ticket resolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// A ticket resolves once an `fdatasync` covers its record. Records appended while a sync
    /// is in flight share the next one (group commit).
    Always,
    /// A ticket resolves once its record is written to the kernel; an `fdatasync` follows at
    /// most this long after the first unsynced write.
    Interval(Duration),
    /// A ticket resolves once its record is written to the kernel; the broker never syncs
    /// (except when rotating the log and when closing it).
    Never,
}

/// When the log should be folded into a new snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionTrigger {
    /// Log bytes below which compaction is never due for size alone.
    pub log_bytes: u64,
    /// The log must also be this many times the snapshot's size.
    pub log_ratio: u32,
    /// The disk bound (0 = none): compaction is due early when the files approach it.
    pub max_disk_bytes: u64,
}

impl CompactionTrigger {
    /// Whether a log of `log_bytes` beside a snapshot of `snapshot_bytes` should be compacted.
    ///
    /// Normally when the log exceeds both `log_bytes` and `log_ratio` x the snapshot, so
    /// start-up replays at most about `(1 + log_ratio)` x the live state and a large state is
    /// not rewritten for every small change. With a disk bound, also as soon as the log would
    /// leave too little room to write a new snapshot beside the old one (the log must have
    /// grown by at least 1/16 of the bound since the last compaction, so that a state larger
    /// than the bound does not compact in a loop).
    pub fn is_due(&self, log_bytes: u64, snapshot_bytes: u64) -> bool {
        let by_size = log_bytes >= self.log_bytes
            && log_bytes >= snapshot_bytes.saturating_mul(u64::from(self.log_ratio));
        if by_size {
            return true;
        }
        if self.max_disk_bytes == 0 {
            return false;
        }
        let room = self
            .max_disk_bytes
            .saturating_sub(snapshot_bytes.saturating_mul(2));
        log_bytes >= room.max(self.max_disk_bytes / 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_read_from_toml() {
        assert_eq!(PersistenceConfig::default().validate(), Ok(()));
        let parsed: PersistenceConfig = toml::from_str(
            "persistence = true\npersistence_location = \"/var/lib/hydrant\"\nsync = \"always\"\n\
             max_disk_bytes = 1073741824\n",
        )
        .unwrap_or_default();
        assert!(parsed.persistence);
        assert_eq!(parsed.sync_policy(), SyncPolicy::Always);
        assert_eq!(parsed.max_disk_bytes, 1 << 30);
        assert_eq!(parsed.autosave_log_ratio, DEFAULT_AUTOSAVE_LOG_RATIO);
        assert!(toml::from_str::<PersistenceConfig>("sync = \"sometimes\"").is_err());
        assert!(toml::from_str::<PersistenceConfig>("autosave_interval = 10").is_err());
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let base = PersistenceConfig::default();
        let cases = [
            PersistenceConfig {
                persistence: true,
                persistence_location: PathBuf::new(),
                ..base.clone()
            },
            PersistenceConfig {
                sync_interval_ms: 0,
                ..base.clone()
            },
            PersistenceConfig {
                max_disk_bytes: 1000,
                ..base.clone()
            },
            PersistenceConfig {
                autosave_log_ratio: 0,
                ..base.clone()
            },
            PersistenceConfig {
                write_buffer_bytes: 10,
                ..base.clone()
            },
        ];
        for case in cases {
            assert!(case.validate().is_err(), "{case:?}");
        }
    }

    #[test]
    fn interval_policy_carries_its_duration() {
        let config = PersistenceConfig {
            sync_interval_ms: 250,
            ..PersistenceConfig::default()
        };
        assert_eq!(
            config.sync_policy(),
            SyncPolicy::Interval(Duration::from_millis(250))
        );
    }

    #[test]
    fn compaction_is_due_by_size_and_ratio_or_near_the_disk_bound() {
        let trigger = CompactionTrigger {
            log_bytes: 1000,
            log_ratio: 2,
            max_disk_bytes: 0,
        };
        assert!(!trigger.is_due(999, 0));
        assert!(trigger.is_due(1000, 0));
        assert!(!trigger.is_due(1500, 800));
        assert!(trigger.is_due(1600, 800));
        let bounded = CompactionTrigger {
            log_bytes: u64::MAX,
            max_disk_bytes: 16_000,
            ..trigger
        };
        assert!(!bounded.is_due(5_000, 4_000));
        assert!(bounded.is_due(8_000, 4_000));
        // A snapshot larger than the bound: due only after 1/16 of the bound of new log.
        assert!(!bounded.is_due(999, 20_000));
        assert!(bounded.is_due(1_000, 20_000));
    }
}
