//! Compaction: the live state of a core, written as a snapshot that replaces the snapshot and
//! the logs before it, so that the files and the start-up time stay proportional to the live
//! state rather than to the history.
//!
//! The steps, each safe to be interrupted by a crash:
//! 1. seal the log: records appended from now on go to a new log generation `G` (the old file
//!    is synced first, so no later record is durable while an earlier one is not);
//! 2. write the records the caller gives (its state *as of the call*) to `snapshot.tmp`, in
//!    slices of at most [`SLICE_BUDGET`] of work between yields to the executor, then the end
//!    frame, and `fdatasync` it;
//! 3. rename it over `snapshot` and sync the directory: the snapshot now says it covers every
//!    log before `G`;
//! 4. remove the logs before `G`.
//!
//! A crash before 3 leaves the old snapshot and every log (recovery replays them all and
//! removes the stray `snapshot.tmp`); a crash between 3 and 4 leaves logs that recovery knows
//! are covered and removes.

use std::io;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::io::OpenOptions;

use super::error::{CompactError, LogError};
use super::files::{file_len, write_all, CoreDir};
use super::frame::{encode_record, encode_snapshot_end, FileHeader, FileKind};
use super::log::{DiskState, StateLog};
use super::record::Record;

/// Longest compaction runs before yielding to the other tasks of its core.
pub const SLICE_BUDGET: Duration = Duration::from_micros(500);

/// How long compaction sleeps between slices. A glommio task that merely yields stays
/// runnable, and the executor reaps I/O completions and timers only once no task is runnable
/// (or its preempt timer fires, 100 ms by default): a short sleep takes compaction off the run
/// queue so the core's network I/O and timers are served between two slices.
const YIELD_PAUSE: Duration = Duration::from_micros(20);

/// Bytes gathered before one write of the snapshot.
const CHUNK_BYTES: usize = 256 * 1024;

/// Records encoded between two looks at the clock.
const RECORDS_PER_CLOCK_CHECK: u64 = 16;

/// What a compaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionReport {
    /// The first log generation the new snapshot does not cover.
    pub generation: u64,
    /// Records in the snapshot.
    pub records: u64,
    /// Size of the snapshot.
    pub snapshot_bytes: u64,
    /// Old log files removed.
    pub logs_removed: u64,
    /// Time from the call to the end.
    pub elapsed: Duration,
    /// Longest stretch without yielding to the executor: the longest compaction made the
    /// core's other tasks wait.
    pub longest_slice: Duration,
    /// Times it yielded.
    pub slices: u64,
    /// Whether the files are still over `max_disk_bytes` afterwards (the live state alone is
    /// too large for the bound).
    pub over_bound: bool,
}

/// What writing a snapshot produced.
struct SnapshotWritten {
    bytes: u64,
    records: u64,
    longest_slice: Duration,
    slices: u64,
}

/// Resets the compaction flag however `compact` ends.
struct CompactionGuard<'a>(&'a StateLog);

impl Drop for CompactionGuard<'_> {
    fn drop(&mut self) {
        self.0.shared.borrow_mut().compacting = false;
    }
}

impl StateLog {
    /// Compacts the log into a snapshot of `live`: records describing the core's durable state
    /// *as of this call* (e.g. per retained topic a `RetainedSet`, per session a
    /// `SessionCreated` and then its subscriptions, queued messages, inflight ids and will).
    ///
    /// Records appended after this call go to a new log generation and are replayed after the
    /// snapshot, so `live` must not include any change made after the call: build it from a
    /// point-in-time copy (records share their payload `Bytes`, so a copy costs index entries,
    /// not payloads). It is consumed in slices, with yields to the executor between them, so
    /// message flow on the core pauses at most about [`SLICE_BUDGET`] at a time (plus whatever
    /// one `next()` of `live` costs).
    ///
    /// On error the log goes on and nothing is lost: the old snapshot and the logs stay.
    pub async fn compact<I>(&self, live: I) -> Result<CompactionReport, CompactError>
    where
        I: IntoIterator<Item = Record>,
    {
        let started = Instant::now();
        let generation = {
            let mut state = self.shared.borrow_mut();
            if let Some(failure) = &state.failure {
                return Err(CompactError::Log(failure.clone()));
            }
            if state.compacting {
                return Err(CompactError::InProgress);
            }
            state.compacting = true;
            state.seal_now()
        };
        let _guard = CompactionGuard(self);
        self.rotated_to(generation).await?;
        let written = write_snapshot(&self.dir, generation, live)
            .await
            .map_err(CompactError::Snapshot)?;
        let (logs_removed, kept_bytes) = remove_logs_before(&self.dir, generation).await;
        let mut state = self.shared.borrow_mut();
        state.usage.snapshot_bytes = written.bytes;
        state.usage.old_log_bytes = kept_bytes;
        state.stats.compactions += 1;
        state.stats.longest_compaction_slice = state
            .stats
            .longest_compaction_slice
            .max(written.longest_slice);
        state.check_disk_bound();
        let over_bound = state.disk_state == DiskState::OverBound;
        if over_bound && !state.unreducible_reported {
            state.unreducible_reported = true;
            tracing::warn!(
                core = self.dir.core,
                snapshot_bytes = written.bytes,
                "compaction cannot bring persistence under max_disk_bytes: the live state is \
                 too large; queued messages stay unpersisted"
            );
        }
        Ok(CompactionReport {
            generation,
            records: written.records,
            snapshot_bytes: written.bytes,
            logs_removed,
            elapsed: started.elapsed(),
            longest_slice: written.longest_slice,
            slices: written.slices,
            over_bound,
        })
    }

    /// Waits until the writer has moved to log `generation`.
    async fn rotated_to(&self, generation: u64) -> Result<(), LogError> {
        future::poll_fn(|cx| {
            let mut state = self.shared.borrow_mut();
            if state.generation >= generation {
                return std::task::Poll::Ready(Ok(()));
            }
            if let Some(failure) = &state.failure {
                return std::task::Poll::Ready(Err(failure.clone()));
            }
            state.rotation_waiters.push(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await
    }
}

/// Writes `live` as the snapshot covering the logs before `generation`, and installs it.
async fn write_snapshot<I>(dir: &CoreDir, generation: u64, live: I) -> io::Result<SnapshotWritten>
where
    I: IntoIterator<Item = Record>,
{
    let temporary = dir.snapshot_tmp_path();
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .buffered_open(&temporary)
        .await?;
    let header = FileHeader {
        kind: FileKind::Snapshot,
        core: dir.core,
        generation,
    };
    let mut chunk = Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4);
    chunk.extend_from_slice(&header.encode());
    let mut offset = 0;
    let mut records = 0u64;
    let mut longest_slice = Duration::ZERO;
    let mut slices = 0u64;
    let mut slice_start = Instant::now();
    let mut live = live.into_iter();
    let written = async {
        loop {
            let Some(record) = live.next() else { break };
            if let Err(too_large) = encode_record(&mut chunk, &record) {
                // Appending refuses such a record, so it cannot be live state: skip it.
                tracing::warn!(core = dir.core, %too_large, "record left out of the snapshot");
                continue;
            }
            records += 1;
            if chunk.len() >= CHUNK_BYTES {
                longest_slice = longest_slice.max(slice_start.elapsed());
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES));
                offset = write_all(&file, full, offset).await?;
                slices += 1;
                slice_start = Instant::now();
            } else if records % RECORDS_PER_CLOCK_CHECK == 0
                && slice_start.elapsed() >= SLICE_BUDGET
            {
                longest_slice = longest_slice.max(slice_start.elapsed());
                glommio::timer::sleep(YIELD_PAUSE).await;
                slices += 1;
                slice_start = Instant::now();
            }
        }
        encode_snapshot_end(&mut chunk, records);
        longest_slice = longest_slice.max(slice_start.elapsed());
        offset = write_all(&file, std::mem::take(&mut chunk), offset).await?;
        file.fdatasync().await.map_err(io::Error::from)
    }
    .await;
    let closed = file.close().await;
    if let Err(error) = written.and(closed.map_err(io::Error::from)) {
        let _ = glommio::io::remove(&temporary).await;
        return Err(error);
    }
    glommio::io::rename(&temporary, dir.snapshot_path()).await?;
    dir.sync().await?;
    Ok(SnapshotWritten {
        bytes: offset,
        records,
        longest_slice,
        slices,
    })
}

/// Removes the logs before `generation` (covered by the snapshot just installed); returns how
/// many were removed and the bytes of those that could not be (recovery removes them later).
async fn remove_logs_before(dir: &CoreDir, generation: u64) -> (u64, u64) {
    let logs = match dir.list() {
        Ok(listing) => listing.logs,
        Err(error) => {
            tracing::warn!(core = dir.core, %error, "cannot list the persistence directory");
            return (0, 0);
        }
    };
    let mut removed = 0;
    let mut kept_bytes = 0;
    for (log_generation, path) in logs {
        if log_generation >= generation {
            continue;
        }
        let len = file_len(&path).unwrap_or(0);
        match glommio::io::remove(&path).await {
            Ok(()) => removed += 1,
            Err(error) => {
                kept_bytes += len;
                tracing::warn!(
                    core = dir.core,
                    path = %path.display(),
                    %error,
                    "cannot remove a log covered by the snapshot"
                );
            }
        }
    }
    if let Err(error) = dir.sync().await {
        tracing::warn!(core = dir.core, %error, "cannot sync the persistence directory");
    }
    (removed, kept_bytes)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use bytes::Bytes;

    use super::*;
    use crate::persist::config::SyncMode;
    use crate::persist::record::RetainedMessage;
    use crate::persist::recovery::{recover, RemovalReason};
    use crate::persist::testing::{config, next_change, run, Model, Rng, TempDir};
    use crate::protocol::QoS;

    /// Applies `count` random changes to `model` and appends them to `log`.
    async fn apply_changes(
        log: &StateLog,
        model: &mut Model,
        rng: &mut Rng,
        from: u64,
        count: u64,
    ) {
        for sequence in from..from + count {
            let record = next_change(rng, model, sequence);
            model.apply(&record);
            drop(log.append(&record).await.expect("append"));
        }
    }

    #[test]
    fn compaction_then_recovery_equals_the_live_state() {
        let dir = TempDir::new("compaction");
        let config = config(dir.path(), SyncMode::Interval);
        let (live, recovered, report, logs_after) = run(move || async move {
            let mut rng = Rng(0x1234_5678_9ABC_DEF1);
            let mut model = Model::default();
            let (log, _) = StateLog::open(&config, 2).await.expect("open");
            apply_changes(&log, &mut model, &mut rng, 0, 3000).await;
            let report = log
                .compact(model.snapshot_records())
                .await
                .expect("compact");
            // Changes made after the call land in the new log, replayed after the snapshot.
            apply_changes(&log, &mut model, &mut rng, 3000, 1000).await;
            let second = log
                .compact(model.snapshot_records())
                .await
                .expect("compact");
            assert_eq!(second.logs_removed, 1);
            apply_changes(&log, &mut model, &mut rng, 4000, 500).await;
            log.close().await.expect("close");
            let logs_after = CoreDir::new(&config.persistence_location, 2)
                .list()
                .expect("list")
                .logs
                .len();
            let recovered = recover(&config.persistence_location, 2)
                .await
                .expect("recover");
            (model, recovered, report, logs_after)
        });
        assert_eq!(report.logs_removed, 1);
        assert_eq!(
            logs_after, 1,
            "only the log after the last compaction remains"
        );
        assert!(recovered.report.is_clean(), "{}", recovered.report);
        assert_eq!(recovered.report.files.len(), 2, "snapshot and one log");
        let rebuilt = Model::from_records(&recovered.records);
        assert!(!live.retained.is_empty() && !live.sessions.is_empty());
        assert_eq!(rebuilt, live);
    }

    #[test]
    fn compaction_yields_often_and_reports_its_longest_stall() {
        const RETAINED: u64 = 200_000;
        let dir = TempDir::new("stall");
        let config = config(dir.path(), SyncMode::Always);
        run(move || async move {
            // Warm the timer up, then measure how late a 1 ms timer wakes on an idle core.
            glommio::timer::sleep(Duration::from_millis(5)).await;
            let mut idle_late = Duration::ZERO;
            for _ in 0..100 {
                let before = Instant::now();
                glommio::timer::sleep(Duration::from_millis(1)).await;
                idle_late =
                    idle_late.max(before.elapsed().saturating_sub(Duration::from_millis(1)));
            }
            let (log, _) = StateLog::open(&config, 0).await.expect("open");
            let live: Vec<Record> = (0..RETAINED)
                .map(|n| {
                    Record::RetainedSet(RetainedMessage {
                        topic: Bytes::from(format!(
                            "building/{}/floor/{}/sensor/{n}",
                            n % 97,
                            n % 13
                        )),
                        payload: Bytes::from(vec![b'v'; 64]),
                        qos: QoS::AtLeastOnce,
                        properties: Bytes::new(),
                        expires_at: None,
                    })
                })
                .collect();
            // A task standing for message flow: a 1 ms ticker; how late does it wake?
            let done = Rc::new(Cell::new(false));
            let longest_gap = Rc::new(Cell::new(Duration::ZERO));
            let heartbeat = glommio::spawn_local({
                let done = Rc::clone(&done);
                let longest_gap = Rc::clone(&longest_gap);
                async move {
                    while !done.get() {
                        let before = Instant::now();
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                        let late = before.elapsed().saturating_sub(Duration::from_millis(1));
                        longest_gap.set(longest_gap.get().max(late));
                    }
                }
            });
            let report = log.compact(live).await.expect("compact");
            done.set(true);
            heartbeat.await;
            println!(
                "compaction of {RETAINED} retained messages: {} bytes in {:?}, {} slices, \
                 longest slice {:?}; a 1 ms timer of another task woke at most {:?} late \
                 ({idle_late:?} when idle; slice budget {SLICE_BUDGET:?}; debug build)",
                report.snapshot_bytes,
                report.elapsed,
                report.slices,
                report.longest_slice,
                longest_gap.get()
            );
            assert_eq!(report.records, RETAINED);
            assert!(report.slices > 10, "compaction never yielded");
            log.close().await.expect("close");
        });
    }

    #[test]
    fn an_interrupted_compaction_leaves_nothing_behind() {
        let dir = TempDir::new("interrupted");
        let config = config(dir.path(), SyncMode::Always);
        let recovered = run(move || async move {
            let mut rng = Rng(42);
            let mut model = Model::default();
            let (log, _) = StateLog::open(&config, 0).await.expect("open");
            apply_changes(&log, &mut model, &mut rng, 0, 200).await;
            log.compact(model.snapshot_records())
                .await
                .expect("compact");
            apply_changes(&log, &mut model, &mut rng, 200, 100).await;
            log.close().await.expect("close");
            let dir = CoreDir::new(&config.persistence_location, 0);
            // A crash during the next compaction's snapshot write...
            std::fs::write(dir.snapshot_tmp_path(), b"half a snapshot").expect("write");
            // ...and a crash between installing a snapshot and removing the logs it covers:
            // a log of generation 1, covered by the snapshot (which covers generations < 2).
            let stale = dir.create_log(1).await.expect("create");
            let mut bytes = Vec::new();
            crate::persist::frame::encode_record(
                &mut bytes,
                &Record::RetainedCleared {
                    topic: Bytes::from_static(b"must not be replayed"),
                },
            )
            .expect("encode");
            write_all(&stale, bytes, crate::persist::frame::HEADER_LEN as u64)
                .await
                .expect("write");
            stale.close().await.expect("close");
            let recovered = recover(&config.persistence_location, 0)
                .await
                .expect("recover");
            assert_eq!(Model::from_records(&recovered.records), model);
            assert!(!dir.snapshot_tmp_path().exists());
            assert!(!dir.log_path(1).exists());
            recovered
        });
        let reasons: Vec<RemovalReason> =
            recovered.report.removed.iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            vec![
                RemovalReason::InterruptedSnapshot,
                RemovalReason::CoveredLog
            ]
        );
        assert!(recovered.report.is_clean(), "{}", recovered.report);
    }
}
