//! Start-up: reading a core's snapshot and logs back into records, whatever state the files
//! are in.
//!
//! The rule is that hydrant never refuses to start because of its own files. What is damaged
//! is dealt with and reported, and everything still valid is returned:
//! - a torn tail (bytes after the last valid record, left by a crash mid-write) is truncated
//!   away;
//! - a record whose checksum fails is skipped, with its offset, and the records after it are
//!   kept;
//! - a file whose header cannot be read (empty, not ours, an unknown format version, another
//!   core's) is moved aside as `<name>.corrupt-<unix seconds>` for a person to look at;
//! - a leftover `snapshot.tmp`, and logs that the snapshot already covers, are removed.
//!
//! Only a directory that cannot be created or listed is an error.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::DirectoryError;
use super::files::{file_len, read_file, truncate, CoreDir};
use super::frame::{scan_frames, Entry, FileHeader, FileKind, HeaderError, Skipped, TornTail};
use super::record::Record;

/// What recovery found: the records to rebuild the state from, and what happened.
#[derive(Debug)]
pub struct Recovered {
    /// The snapshot's records, then each log's, oldest first: apply them in this order.
    pub records: Vec<Record>,
    /// What was read, skipped, truncated, moved aside and removed.
    pub report: RecoveryReport,
}

/// Everything recovery did to one core's files.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    /// The core.
    pub core: u64,
    /// The files read, in the order their records were returned.
    pub files: Vec<FileReport>,
    /// Files that could not be read at all and were moved aside.
    pub moved_aside: Vec<MovedAside>,
    /// Files removed because they held nothing to recover.
    pub removed: Vec<RemovedFile>,
    /// Files moved aside by earlier starts, still in the directory (never read).
    pub earlier_moved_aside: usize,
    /// Whether some history is known to be missing: a snapshot or log was moved aside, or the
    /// log generations have a gap.
    pub history_incomplete: bool,
    /// How long recovery took.
    pub elapsed: Duration,
}

/// What was read from one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Log or snapshot.
    pub kind: FileKind,
    /// Its generation (as in its file header).
    pub generation: u64,
    /// Its size when read.
    pub bytes: u64,
    /// Records recovered from it.
    pub records: u64,
    /// Damaged stretches skipped, with their offsets.
    pub skipped: Vec<Skipped>,
    /// The torn tail, if any.
    pub torn_tail: Option<TornTail>,
    /// Whether the torn tail was truncated away (a log's is; a snapshot is left as it is).
    pub truncated: bool,
    /// For a snapshot: the record count its end frame gives, or `None` if the end frame is
    /// missing (the snapshot is incomplete).
    pub snapshot_end: Option<u64>,
}

impl FileReport {
    /// Whether anything in the file was damaged.
    pub fn is_clean(&self) -> bool {
        let complete = match self.kind {
            FileKind::Log => true,
            FileKind::Snapshot => self.snapshot_end == Some(self.records),
        };
        self.skipped.is_empty() && self.torn_tail.is_none() && complete
    }
}

/// Why a file was moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveAsideReason {
    /// Its header cannot be read.
    Header(HeaderError),
    /// It cannot be read at all.
    Unreadable(String),
    /// Its header names another core.
    OtherCore(u64),
    /// Its header says log where the name says snapshot, or the reverse.
    WrongKind(FileKind),
    /// A log whose header gives another generation than its name.
    WrongGeneration(u64),
}

impl fmt::Display for MoveAsideReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoveAsideReason::Header(error) => write!(f, "{error}"),
            MoveAsideReason::Unreadable(error) => write!(f, "unreadable: {error}"),
            MoveAsideReason::OtherCore(core) => write!(f, "the file belongs to core {core}"),
            MoveAsideReason::WrongKind(kind) => write!(f, "the file is a {kind}"),
            MoveAsideReason::WrongGeneration(generation) => {
                write!(f, "the header says generation {generation}")
            }
        }
    }
}

/// A file moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedAside {
    /// Where it was.
    pub from: PathBuf,
    /// Where it is now; `None` if the rename failed too (it is then ignored where it is, and
    /// met again at the next start).
    pub to: Option<PathBuf>,
    /// Why.
    pub reason: MoveAsideReason,
}

/// Why a file was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    /// A snapshot being written when the broker stopped.
    InterruptedSnapshot,
    /// A log the snapshot already covers (the broker stopped before removing it).
    CoveredLog,
}

/// A file removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedFile {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: RemovalReason,
}

impl RecoveryReport {
    /// Whether every file was read whole, nothing was moved aside and no history is missing.
    pub fn is_clean(&self) -> bool {
        self.moved_aside.is_empty()
            && !self.history_incomplete
            && self.files.iter().all(FileReport::is_clean)
    }

    /// Records recovered.
    pub fn records(&self) -> u64 {
        self.files.iter().map(|file| file.records).sum()
    }

    /// Damaged stretches skipped, across files.
    pub fn skipped(&self) -> usize {
        self.files.iter().map(|file| file.skipped.len()).sum()
    }

    /// Whether compacting right away is worth it: damaged records still sit in a file (and
    /// would be reported again at every start), or several logs are waiting to be folded.
    pub fn compaction_advised(&self) -> bool {
        !self.is_clean()
            || self
                .files
                .iter()
                .filter(|file| file.kind == FileKind::Log)
                .count()
                > 1
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "core {}: {} records from {} files in {:?}",
            self.core,
            self.records(),
            self.files.len(),
            self.elapsed
        )?;
        let torn = self
            .files
            .iter()
            .filter(|file| file.torn_tail.is_some())
            .count();
        if self.skipped() > 0 {
            write!(f, ", {} damaged stretches skipped", self.skipped())?;
        }
        if torn > 0 {
            write!(f, ", {torn} torn tails")?;
        }
        if !self.moved_aside.is_empty() {
            write!(f, ", {} files moved aside", self.moved_aside.len())?;
        }
        if !self.removed.is_empty() {
            write!(f, ", {} stale files removed", self.removed.len())?;
        }
        if self.history_incomplete {
            write!(f, ", history incomplete")?;
        }
        Ok(())
    }
}

/// What [`StateLog::open`](super::StateLog::open) needs to continue where the files end.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    /// Generation of the next log to create.
    pub next_generation: u64,
    /// Size of the snapshot that was read.
    pub snapshot_bytes: u64,
    /// Size of the logs that were read (after truncation).
    pub log_bytes: u64,
}

/// Recovers core `core`'s files under `location` without opening a log: for tools, and for
/// reading the files of a core that no longer runs after the number of cores changed (its
/// records then belong to whichever cores own their topics and client ids now).
pub async fn recover(location: &Path, core: u64) -> Result<Recovered, DirectoryError> {
    recover_dir(&CoreDir::new(location, core))
        .await
        .map(|(recovered, _)| recovered)
}

/// Removes the snapshot and logs of core `core` under `location`, once everything they held
/// lives in running cores' files (after the number of cores went down). Files moved aside
/// stay for a person to look at; the directory goes when nothing is left in it. Returns the
/// number of files removed.
pub async fn retire(location: &Path, core: u64) -> Result<usize, DirectoryError> {
    let dir = CoreDir::new(location, core);
    let unusable = |source| DirectoryError {
        path: dir.path.clone(),
        source,
    };
    let listing = dir.list().map_err(unusable)?;
    // The snapshot first, then the logs oldest first: a crash part way leaves a suffix of
    // the history, whose records still end with the last value of each topic they name, so
    // recovering it again hands out nothing older than what the running cores hold.
    let mut doomed = Vec::new();
    if listing.snapshot_tmp {
        doomed.push(dir.snapshot_tmp_path());
    }
    if listing.snapshot {
        doomed.push(dir.snapshot_path());
    }
    doomed.extend(listing.logs.into_iter().map(|(_, path)| path));
    for path in &doomed {
        glommio::io::remove(path)
            .await
            .map_err(|error| unusable(error.into()))?;
    }
    if listing.moved_aside.is_empty() {
        std::fs::remove_dir(&dir.path).map_err(unusable)?;
    } else {
        dir.sync().await.map_err(unusable)?;
    }
    Ok(doomed.len())
}

/// A file whose header was read, with its contents.
struct Loaded {
    header: FileHeader,
    contents: Vec<u8>,
}

/// Recovers the files in `dir`, creating it if needed.
pub(super) async fn recover_dir(dir: &CoreDir) -> Result<(Recovered, Layout), DirectoryError> {
    let started = Instant::now();
    let unusable = |source| DirectoryError {
        path: dir.path.clone(),
        source,
    };
    dir.create().map_err(unusable)?;
    let listing = dir.list().map_err(unusable)?;
    let mut report = RecoveryReport {
        core: dir.core,
        earlier_moved_aside: listing.moved_aside.len(),
        ..RecoveryReport::default()
    };
    let mut records = Vec::new();

    if listing.snapshot_tmp {
        let path = dir.snapshot_tmp_path();
        remove(&path, RemovalReason::InterruptedSnapshot, &mut report).await;
    }

    let mut snapshot_bytes = 0;
    let mut covered_below = None;
    if listing.snapshot {
        let path = dir.snapshot_path();
        if let Some(loaded) = load(dir, &path, FileKind::Snapshot, None, &mut report).await {
            snapshot_bytes = loaded.contents.len() as u64;
            covered_below = Some(loaded.header.generation);
            read_records(&path, loaded, &mut records, &mut report).await;
        } else {
            report.history_incomplete = true;
        }
    }

    let mut next_generation = covered_below.unwrap_or(1).max(1);
    let mut expected = covered_below;
    let mut log_bytes = 0;
    for (generation, path) in listing.logs {
        next_generation = next_generation.max(generation.saturating_add(1));
        if covered_below.is_some_and(|covered| generation < covered) {
            remove(&path, RemovalReason::CoveredLog, &mut report).await;
            continue;
        }
        if expected.is_some_and(|expected| generation != expected) {
            report.history_incomplete = true;
        }
        expected = Some(generation.saturating_add(1));
        let Some(loaded) = load(dir, &path, FileKind::Log, Some(generation), &mut report).await
        else {
            report.history_incomplete = true;
            continue;
        };
        let kept = read_records(&path, loaded, &mut records, &mut report).await;
        log_bytes += kept;
    }
    if covered_below.is_none() && !listing.snapshot {
        // Without a snapshot the logs must start at generation 1; later ones mean a snapshot
        // that covered the start is gone.
        if report
            .files
            .iter()
            .find(|file| file.kind == FileKind::Log)
            .is_some_and(|first| first.generation > 1)
        {
            report.history_incomplete = true;
        }
    }

    report.elapsed = started.elapsed();
    if report.is_clean() {
        tracing::info!(core = dir.core, "persistence recovered: {report}");
    } else {
        tracing::warn!(
            core = dir.core,
            "persistence recovered with damage: {report}"
        );
    }
    let layout = Layout {
        next_generation,
        snapshot_bytes,
        log_bytes,
    };
    Ok((Recovered { records, report }, layout))
}

/// Reads `path` and checks its header; a file that fails is moved aside and `None` returned.
async fn load(
    dir: &CoreDir,
    path: &Path,
    kind: FileKind,
    generation: Option<u64>,
    report: &mut RecoveryReport,
) -> Option<Loaded> {
    let failure = match read_file(path).await {
        Err(error) => MoveAsideReason::Unreadable(error.to_string()),
        Ok(contents) => match FileHeader::decode(&contents) {
            Err(error) => MoveAsideReason::Header(error),
            Ok(header) if header.core != dir.core => MoveAsideReason::OtherCore(header.core),
            Ok(header) if header.kind != kind => MoveAsideReason::WrongKind(header.kind),
            Ok(header) if generation.is_some_and(|expected| expected != header.generation) => {
                MoveAsideReason::WrongGeneration(header.generation)
            }
            Ok(header) => return Some(Loaded { header, contents }),
        },
    };
    let to = match dir.move_aside(path).await {
        Ok(to) => Some(to),
        Err(error) => {
            tracing::error!(
                core = dir.core,
                path = %path.display(),
                %error,
                "cannot move a damaged persistence file aside"
            );
            None
        }
    };
    tracing::warn!(
        core = dir.core,
        path = %path.display(),
        moved_to = ?to,
        reason = %failure,
        "persistence file cannot be read: moved aside"
    );
    report.moved_aside.push(MovedAside {
        from: path.to_owned(),
        to,
        reason: failure,
    });
    None
}

/// Scans a loaded file, adds its records to `records` and its report; truncates a log's torn
/// tail. Returns the file's size after truncation.
async fn read_records(
    path: &Path,
    loaded: Loaded,
    records: &mut Vec<Record>,
    report: &mut RecoveryReport,
) -> u64 {
    let scan = scan_frames(&loaded.contents);
    let size = loaded.contents.len() as u64;
    drop(loaded.contents);
    let mut file = FileReport {
        path: path.to_owned(),
        kind: loaded.header.kind,
        generation: loaded.header.generation,
        bytes: size,
        records: 0,
        skipped: scan.skipped,
        torn_tail: scan.torn_tail,
        truncated: false,
        snapshot_end: None,
    };
    for (_, entry) in scan.entries {
        match entry {
            Entry::Record(record) => {
                records.push(record);
                file.records += 1;
            }
            Entry::SnapshotEnd { records: count } => file.snapshot_end = Some(count),
        }
    }
    for skipped in &file.skipped {
        tracing::warn!(
            core = report.core,
            path = %path.display(),
            offset = skipped.offset,
            len = skipped.len,
            damage = %skipped.damage,
            "damaged persistence record skipped"
        );
    }
    let mut kept = size;
    if let Some(tail) = file.torn_tail {
        if file.kind == FileKind::Log {
            match truncate(path, tail.offset).await {
                Ok(()) => {
                    file.truncated = true;
                    kept = tail.offset;
                }
                Err(error) => tracing::warn!(
                    core = report.core,
                    path = %path.display(),
                    %error,
                    "cannot truncate a torn log tail (it is read past again at every start)"
                ),
            }
        }
        tracing::warn!(
            core = report.core,
            path = %path.display(),
            offset = tail.offset,
            len = tail.len,
            truncated = file.truncated,
            "torn tail after the last valid persistence record"
        );
    }
    if file.kind == FileKind::Snapshot && file.snapshot_end != Some(file.records) {
        tracing::warn!(
            core = report.core,
            path = %path.display(),
            found = file.records,
            expected = ?file.snapshot_end,
            "persistence snapshot is incomplete"
        );
    }
    report.files.push(file);
    kept
}

/// Removes a file that holds nothing to recover, reporting it.
async fn remove(path: &Path, reason: RemovalReason, report: &mut RecoveryReport) {
    let len = file_len(path).unwrap_or(0);
    match glommio::io::remove(path).await {
        Ok(()) => {
            tracing::info!(core = report.core, path = %path.display(), bytes = len, ?reason,
                "stale persistence file removed");
            report.removed.push(RemovedFile {
                path: path.to_owned(),
                reason,
            });
        }
        Err(error) => tracing::warn!(
            core = report.core,
            path = %path.display(),
            %error,
            "cannot remove a stale persistence file"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::persist::config::SyncMode;
    use crate::persist::frame::{FrameDamage, FORMAT_VERSION, HEADER_LEN};
    use crate::persist::log::StateLog;
    use crate::persist::record::QueuedMessage;
    use crate::persist::testing::{config, run, Rng, TempDir};
    use crate::protocol::QoS;

    fn queued(message_id: u64) -> Record {
        Record::MessageQueued(QueuedMessage {
            client_id: Arc::from("c"),
            message_id,
            packet_id: None,
            qos: QoS::AtLeastOnce,
            dup: false,
            retain: false,
            topic: Bytes::from(format!("topic/{message_id}")),
            payload: Bytes::from(format!("payload {message_id}")),
            properties: Bytes::new(),
            expires_at: None,
        })
    }

    fn queued_range(range: std::ops::Range<u64>) -> Vec<Record> {
        range.map(queued).collect()
    }

    /// Writes `records` through a real log of core 0 in `location` and closes it; returns the
    /// path of the log file (generation `generation`).
    async fn write_log(location: &Path, records: &[Record]) {
        let (log, _) = StateLog::open(&config(location, SyncMode::Always), 0)
            .await
            .expect("open");
        for record in records {
            drop(log.append(record).await.expect("append"));
        }
        log.close().await.expect("close");
    }

    /// Offsets of the frames of a log holding `records`, computed from the encoding.
    fn frame_offsets(records: &[Record]) -> Vec<u64> {
        let mut bytes = Vec::new();
        let mut offsets = Vec::new();
        for record in records {
            offsets.push((HEADER_LEN + bytes.len()) as u64);
            crate::persist::frame::encode_record(&mut bytes, record).expect("encode");
        }
        offsets.push((HEADER_LEN + bytes.len()) as u64);
        offsets
    }

    #[test]
    fn a_log_cut_at_every_offset_of_its_last_record_keeps_the_others() {
        let dir = TempDir::new("torn");
        let location = dir.path().to_owned();
        run(move || async move {
            let records = queued_range(0..10);
            write_log(&location, &records).await;
            let core = CoreDir::new(&location, 0);
            let path = core.log_path(1);
            let whole = std::fs::read(&path).expect("read");
            let offsets = frame_offsets(&records);
            let last = offsets[9] as usize;
            assert_eq!(whole.len(), offsets[10] as usize);
            for cut in last..whole.len() {
                std::fs::write(&path, &whole[..cut]).expect("write");
                let recovered = recover(&location, 0).await.expect("recover");
                assert_eq!(recovered.records, records[..9], "cut at {cut}");
                let file = &recovered.report.files[0];
                if cut == last {
                    assert!(file.torn_tail.is_none());
                } else {
                    let tail = file.torn_tail.expect("torn tail reported");
                    assert_eq!((tail.offset, tail.len), (last as u64, (cut - last) as u64));
                    assert_eq!(tail.damage, FrameDamage::Incomplete);
                    assert!(file.truncated);
                    assert!(!recovered.report.is_clean());
                }
                assert_eq!(std::fs::metadata(&path).expect("stat").len(), last as u64);
            }
        });
    }

    #[test]
    fn a_flipped_byte_skips_that_record_and_keeps_the_later_ones() {
        let dir = TempDir::new("flipped");
        let location = dir.path().to_owned();
        let recovered = run(move || async move {
            let records = queued_range(0..10);
            write_log(&location, &records).await;
            let path = CoreDir::new(&location, 0).log_path(1);
            let mut bytes = std::fs::read(&path).expect("read");
            let offsets = frame_offsets(&records);
            let middle = (offsets[4] + offsets[5]) / 2;
            bytes[middle as usize] ^= 0x40;
            std::fs::write(&path, &bytes).expect("write");
            let recovered = recover(&location, 0).await.expect("recover");
            let mut expected = records.clone();
            expected.remove(4);
            assert_eq!(recovered.records, expected);
            let skipped = &recovered.report.files[0].skipped;
            assert_eq!(skipped.len(), 1);
            assert_eq!(skipped[0].offset, offsets[4]);
            assert_eq!(skipped[0].len, offsets[5] - offsets[4]);
            assert_eq!(skipped[0].damage, FrameDamage::BadChecksum);
            recovered
        });
        println!("flipped byte: {}", recovered.report);
        assert_eq!(recovered.report.skipped(), 1);
        assert!(recovered.report.compaction_advised());
    }

    #[test]
    fn empty_random_and_future_files_are_moved_aside_and_the_rest_recovered() {
        let dir = TempDir::new("moved-aside");
        let location = dir.path().to_owned();
        let recovered = run(move || async move {
            // Logs 1 and 2 hold valid records; then three damaged logs.
            write_log(&location, &queued_range(0..5)).await;
            write_log(&location, &queued_range(5..8)).await;
            let core = CoreDir::new(&location, 0);
            std::fs::write(core.log_path(3), b"").expect("empty");
            let mut rng = Rng(7);
            let noise: Vec<u8> = (0..5000).map(|_| rng.next() as u8).collect();
            std::fs::write(core.log_path(4), &noise).expect("random");
            let mut future = std::fs::read(core.log_path(2)).expect("read");
            future[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
            std::fs::write(core.log_path(5), &future).expect("future");
            // A snapshot of random bytes, too.
            std::fs::write(core.snapshot_path(), &noise[..100]).expect("snapshot");
            let recovered = recover(&location, 0).await.expect("recover");
            for moved in &recovered.report.moved_aside {
                let to = moved.to.as_ref().expect("renamed");
                assert!(to.exists() && !moved.from.exists());
                assert!(to.to_string_lossy().contains(".corrupt-"));
            }
            // The next start does not meet them again.
            let again = recover(&location, 0).await.expect("recover again");
            assert!(again.report.moved_aside.is_empty());
            assert_eq!(again.report.earlier_moved_aside, 4);
            assert_eq!(again.records, recovered.records);
            recovered
        });
        println!("damaged files: {}", recovered.report);
        assert_eq!(recovered.records, queued_range(0..8));
        let reasons: Vec<&MoveAsideReason> = recovered
            .report
            .moved_aside
            .iter()
            .map(|m| &m.reason)
            .collect();
        assert_eq!(
            reasons,
            vec![
                &MoveAsideReason::Header(HeaderError::BadMagic),
                &MoveAsideReason::Header(HeaderError::Empty),
                &MoveAsideReason::Header(HeaderError::BadMagic),
                &MoveAsideReason::Header(HeaderError::UnknownVersion(FORMAT_VERSION + 1)),
            ]
        );
        assert!(recovered.report.history_incomplete);
    }

    #[test]
    fn a_damaged_snapshot_keeps_its_valid_records_and_says_it_is_incomplete() {
        let dir = TempDir::new("snapshot-damage");
        let location = dir.path().to_owned();
        let (recovered, expected) = run(move || async move {
            let (log, _) = StateLog::open(&config(&location, SyncMode::Always), 0)
                .await
                .expect("open");
            let live = queued_range(0..20);
            log.compact(live.clone()).await.expect("compact");
            log.close().await.expect("close");
            let path = CoreDir::new(&location, 0).snapshot_path();
            let mut bytes = std::fs::read(&path).expect("read");
            let offsets = frame_offsets(&live);
            bytes[offsets[10] as usize + 6] ^= 0xFF;
            std::fs::write(&path, &bytes).expect("write");
            let mut expected = live;
            expected.remove(10);
            (recover(&location, 0).await.expect("recover"), expected)
        });
        assert_eq!(recovered.records, expected);
        let snapshot = &recovered.report.files[0];
        assert_eq!(snapshot.kind, FileKind::Snapshot);
        assert_eq!(snapshot.snapshot_end, Some(20));
        assert_eq!(snapshot.records, 19);
        assert!(!snapshot.is_clean());
    }

    #[test]
    fn another_cores_file_is_moved_aside() {
        let dir = TempDir::new("other-core");
        let location = dir.path().to_owned();
        let recovered = run(move || async move {
            write_log(&location, &queued_range(0..3)).await;
            let core0 = CoreDir::new(&location, 0);
            let core1 = CoreDir::new(&location, 1);
            core1.create().expect("mkdir");
            std::fs::copy(core0.log_path(1), core1.log_path(1)).expect("copy");
            recover(&location, 1).await.expect("recover")
        });
        assert!(recovered.records.is_empty());
        assert_eq!(
            recovered.report.moved_aside[0].reason,
            MoveAsideReason::OtherCore(0)
        );
    }

    #[test]
    fn only_an_unusable_directory_is_an_error() {
        let dir = TempDir::new("unusable");
        let blocker = dir.path().join("not-a-directory");
        std::fs::write(&blocker, b"x").expect("write");
        let result = run(move || async move { recover(&blocker, 0).await.map(|_| ()) });
        let error = result.expect_err("a file where the directory should be");
        println!("unusable directory: {error}");
    }

    #[test]
    fn stored_cores_lists_every_cores_directory() {
        let dir = TempDir::new("cores");
        for core in [3, 0, 12] {
            CoreDir::new(dir.path(), core).create().expect("mkdir");
        }
        std::fs::write(dir.path().join("core-7"), b"a file, not a core").expect("write");
        assert_eq!(
            crate::persist::files::stored_cores(dir.path()).expect("list"),
            vec![0, 3, 12]
        );
    }

    #[test]
    fn retiring_a_core_removes_its_files_but_keeps_those_moved_aside() {
        let dir = TempDir::new("retire");
        let location = dir.path().to_owned();
        run(move || async move {
            write_log(&location, &queued_range(0..5)).await;
            let core = CoreDir::new(&location, 0);
            assert_eq!(retire(&location, 0).await.expect("retire"), 1);
            assert!(!core.path.exists(), "an emptied directory is removed");

            write_log(&location, &queued_range(0..5)).await;
            std::fs::write(core.path.join("log-00000000000000000007"), b"").expect("write");
            let recovered = recover(&location, 0).await.expect("recover");
            assert_eq!(recovered.report.moved_aside.len(), 1);
            assert_eq!(retire(&location, 0).await.expect("retire"), 1);
            let left: Vec<String> = std::fs::read_dir(&core.path)
                .expect("list")
                .map(|entry| {
                    entry
                        .expect("entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            assert_eq!(left.len(), 1, "{left:?}");
            assert!(left[0].contains(".corrupt-"), "{left:?}");
            assert!(recover(&location, 0)
                .await
                .expect("recover")
                .records
                .is_empty());
        });
    }
}
