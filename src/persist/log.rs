//! The append-only log of one core: records are encoded into a memory buffer at once, and a
//! writer task of that core hands them to the disk in batches, syncing as the policy says.
//!
//! # Durability and group commit
//! [`StateLog::append`] returns a [`Ticket`], a future that resolves when the record is as
//! durable as the policy promises: after an `fdatasync` that covers it ([`SyncPolicy::Always`]),
//! or once written to the kernel ([`SyncPolicy::Interval`], [`SyncPolicy::Never`]). The writer
//! task takes *everything* buffered when it wakes, writes it with one call and syncs once, so
//! the records appended while a sync was in flight share the next one: under load a single
//! `fdatasync` covers hundreds of records, and an idle broker syncs a lone record at once.
//!
//! # Back-pressure
//! At most `write_buffer_bytes` of records may be appended but not yet written. Past that,
//! [`StateLog::append`] waits for the writer to catch up (the record is not buffered until
//! then); the broker awaits it before it acknowledges a QoS 1/2 PUBLISH, so a disk that cannot
//! keep up slows the publishers down instead of growing memory. [`StateLog::append_now`] never
//! waits and may go over the bound by the records it adds: it is for the paths that cannot
//! await (acknowledgements, subscription changes), whose volume is bounded by the messages
//! already admitted.
//!
//! # Rotation
//! Compaction (see `snapshot.rs`) seals the log at the current position: records appended
//! before go to the current file, which is synced and closed; records after go to a new file
//! of the next generation, created, synced and made durable in the directory before any of
//! them is acknowledged. The old files are removed once the snapshot that covers them is in
//! place.
//!
//! # Failure
//! A failed write or sync stops the log: a failed `fdatasync` may have dropped the dirty pages,
//! so nothing after it can be trusted. Every waiting and later ticket gets [`LogError::Failed`];
//! the broker decides whether to go on without persistence.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::io::BufferedFile;
use glommio::Task;

use super::config::{CompactionTrigger, PersistenceConfig, SyncPolicy};
use super::error::{AppendError, DirectoryError, LogError};
use super::files::{write_all, CoreDir};
use super::frame::{encode_record, HEADER_LEN};
use super::record::{Record, RecordKind};
use super::recovery::{recover_dir, Recovered};

/// Where a core's files stand against `max_disk_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskState {
    /// Under the bound (or no bound): every record is persisted.
    WithinBound,
    /// The files reached the bound. Until compaction brings them under 90 % of it, records of
    /// [`RecordKind::QueuedMessage`] are refused with [`AppendError::OverDiskBound`] (the
    /// broker still delivers those messages from memory; they are lost if it crashes), while
    /// retained, session and delivery records are still written so that what is on disk stays
    /// consistent. Logged once when entered and once when left.
    OverBound,
}

/// Bytes a core's persistence uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// The snapshot.
    pub snapshot_bytes: u64,
    /// Logs of earlier generations, waiting for a snapshot to cover them.
    pub old_log_bytes: u64,
    /// The log being written.
    pub current_log_bytes: u64,
    /// Appended records not yet written.
    pub buffered_bytes: u64,
}

impl DiskUsage {
    /// Every log's bytes, buffered ones included: what compaction would fold away.
    pub fn log_bytes(&self) -> u64 {
        self.old_log_bytes + self.current_log_bytes + self.buffered_bytes
    }

    /// Everything, as counted against `max_disk_bytes`.
    pub fn total(&self) -> u64 {
        self.snapshot_bytes + self.log_bytes()
    }
}

/// Counters of one core's log, for metrics and for measuring group commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Records appended.
    pub records: u64,
    /// Bytes appended (frames included).
    pub bytes: u64,
    /// Write calls made.
    pub writes: u64,
    /// `fdatasync` calls made on logs.
    pub syncs: u64,
    /// Most records covered by one write.
    pub largest_batch: u64,
    /// Appends that had to wait for buffer space (back-pressure).
    pub waits_for_space: u64,
    /// Queued-message records refused over the disk bound.
    pub refused_over_bound: u64,
    /// Compactions completed.
    pub compactions: u64,
    /// Longest time compaction ran without yielding to other tasks.
    pub longest_compaction_slice: Duration,
}

/// A sealed position: records before `at` belong to the current file, later ones to a new
/// file of `generation`.
#[derive(Clone, Copy, Debug)]
struct Seal {
    at: u64,
    generation: u64,
}

/// What the writer task does next.
enum Job {
    /// Write these bytes, which start at log position `start`.
    Write {
        bytes: Vec<u8>,
        start: u64,
        records: u64,
        seal: Option<Seal>,
    },
    /// The interval passed: sync what was written.
    Sync,
    /// Write nothing more; sync and stop.
    Close,
    /// The log failed: stop.
    Stop,
}

/// The state shared by the handle, its tickets and its writer task (one core; never borrowed
/// across an `.await`). Positions are byte offsets in the stream of frames since the log was
/// opened, across files.
pub(super) struct LogState {
    core: u64,
    policy: SyncPolicy,
    trigger: CompactionTrigger,
    /// Most bytes appended but not yet written before `append` waits.
    buffer_limit: u64,
    /// Encoded frames not yet taken by the writer.
    buffer: Vec<u8>,
    /// Records in `buffer`.
    buffer_records: u64,
    /// Position after the last appended record.
    appended: u64,
    /// Position up to which the kernel has the bytes.
    written: u64,
    /// Position up to which an `fdatasync` covers the bytes.
    durable: u64,
    /// Generation of the file being written.
    pub(super) generation: u64,
    /// A rotation asked for by compaction, not yet taken by the writer.
    seal: Option<Seal>,
    /// Set once the log stops.
    pub(super) failure: Option<LogError>,
    /// Set by `close`: write what is buffered, sync, stop.
    closing: bool,
    /// With an interval policy, when the oldest write not yet synced was made.
    first_unsynced_write: Option<Instant>,
    flusher_waker: Option<Waker>,
    space_waiters: Vec<Waker>,
    /// Tickets waiting: the position they need covered, whether written (rather than what the
    /// policy promises) is enough, and their waker.
    ticket_waiters: Vec<(u64, Promise, Waker)>,
    pub(super) rotation_waiters: Vec<Waker>,
    pub(super) compacting: bool,
    pub(super) usage: DiskUsage,
    max_disk_bytes: u64,
    pub(super) disk_state: DiskState,
    /// Whether "compaction cannot bring usage under the bound" was logged since the files were
    /// last under it.
    pub(super) unreducible_reported: bool,
    pub(super) stats: LogStats,
    /// Told how long each `fdatasync` took (the metrics' persistence sync histogram).
    sync_observer: Option<Rc<dyn Fn(Duration)>>,
}

impl LogState {
    /// Whether a ticket for the position `end` with this promise is satisfied.
    fn covers(&self, end: u64, promise: Promise) -> bool {
        self.covered(promise) >= end
    }

    /// The position up to which tickets with this promise are satisfied.
    fn covered(&self, promise: Promise) -> u64 {
        match (promise, self.policy) {
            (Promise::Policy, SyncPolicy::Always) => self.durable,
            (Promise::Written, _)
            | (Promise::Policy, SyncPolicy::Interval(_) | SyncPolicy::Never) => self.written,
        }
    }

    fn wake_flusher(&mut self) {
        if let Some(waker) = self.flusher_waker.take() {
            waker.wake();
        }
    }

    fn wake_tickets(&mut self) {
        let by_policy = self.covered(Promise::Policy);
        let written = self.written;
        let failed = self.failure.is_some();
        self.ticket_waiters.retain(|(end, promise, waker)| {
            let limit = match promise {
                Promise::Policy => by_policy,
                Promise::Written => written,
            };
            let done = failed || *end <= limit;
            if done {
                waker.wake_by_ref();
            }
            !done
        });
    }

    fn wake_space_waiters(&mut self) {
        for waker in self.space_waiters.drain(..) {
            waker.wake();
        }
    }

    fn wake_rotation_waiters(&mut self) {
        for waker in self.rotation_waiters.drain(..) {
            waker.wake();
        }
    }

    /// Stops the log with `failure` and wakes everything waiting on it.
    fn fail(&mut self, failure: LogError) {
        if self.failure.is_none() {
            self.failure = Some(failure);
        }
        self.wake_tickets();
        self.wake_space_waiters();
        self.wake_rotation_waiters();
        self.wake_flusher();
    }

    fn has_space(&self) -> bool {
        self.appended - self.written < self.buffer_limit
    }

    fn sync_deadline(&self) -> Option<Instant> {
        match self.policy {
            SyncPolicy::Interval(every) => self.first_unsynced_write.map(|first| first + every),
            SyncPolicy::Always | SyncPolicy::Never => None,
        }
    }

    /// The writer's next job, taken from the state, or `None` to wait.
    fn next_job(&mut self, now: Instant) -> Option<Job> {
        if self.failure.is_some() {
            return Some(Job::Stop);
        }
        if !self.buffer.is_empty() || self.seal.is_some() {
            return Some(Job::Write {
                bytes: std::mem::take(&mut self.buffer),
                start: self.written,
                records: std::mem::take(&mut self.buffer_records),
                seal: self.seal.take(),
            });
        }
        if self.closing {
            return Some(Job::Close);
        }
        match self.sync_deadline() {
            Some(deadline) if deadline <= now => Some(Job::Sync),
            _ => None,
        }
    }

    /// Re-evaluates [`DiskState`] against the bound, logging transitions.
    pub(super) fn check_disk_bound(&mut self) {
        if self.max_disk_bytes == 0 {
            return;
        }
        self.usage.buffered_bytes = self.appended - self.written;
        let total = self.usage.total();
        match self.disk_state {
            DiskState::WithinBound if total >= self.max_disk_bytes => {
                self.disk_state = DiskState::OverBound;
                tracing::warn!(
                    core = self.core,
                    used = total,
                    max_disk_bytes = self.max_disk_bytes,
                    "persistence files reached max_disk_bytes: new queued messages are not \
                     persisted until compaction frees space"
                );
            }
            DiskState::OverBound if total < self.max_disk_bytes / 10 * 9 => {
                self.disk_state = DiskState::WithinBound;
                self.unreducible_reported = false;
                tracing::info!(
                    core = self.core,
                    used = total,
                    max_disk_bytes = self.max_disk_bytes,
                    "persistence files are back under max_disk_bytes: queued messages are \
                     persisted again"
                );
            }
            _ => {}
        }
    }

    /// Asks the writer to rotate to a new file at the current position; returns its generation.
    pub(super) fn seal_now(&mut self) -> u64 {
        let generation = self.generation + 1;
        self.seal = Some(Seal {
            at: self.appended,
            generation,
        });
        self.wake_flusher();
        generation
    }

    /// Whether compaction is due by the trigger.
    fn compaction_due(&self) -> bool {
        let mut usage = self.usage;
        usage.buffered_bytes = self.appended - self.written;
        !self.compacting
            && self.failure.is_none()
            && self.trigger.is_due(usage.log_bytes(), usage.snapshot_bytes)
    }
}

/// What a ticket waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Promise {
    /// What the policy promises: synced with [`SyncPolicy::Always`], else written.
    Policy,
    /// Written to the kernel, whatever the policy: the record survives the process (a crash,
    /// `kill -9`), though with [`SyncPolicy::Always`] its sync may still be in flight.
    Written,
}

/// A promise that an appended record becomes durable (as the policy defines it): await it
/// before acknowledging what the record describes. Dropping it changes nothing.
#[must_use = "a ticket says when the record is durable; drop it explicitly if that does not matter"]
pub struct Ticket {
    shared: Rc<RefCell<LogState>>,
    end: u64,
    promise: Promise,
}

impl Ticket {
    /// The log position just after the record (monotonic over the life of the log).
    pub fn position(&self) -> u64 {
        self.end
    }

    /// This ticket resolving as soon as the record is written to the kernel, even when the
    /// policy syncs: for what must survive the broker's process but needs no disk flush (a QoS
    /// 0 retained message, whose publisher gets no acknowledgement). Under load the writer
    /// syncs right after it writes, so the flush follows within one group commit.
    pub fn written(mut self) -> Ticket {
        self.promise = Promise::Written;
        self
    }
}

impl Future for Ticket {
    type Output = Result<(), LogError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.shared.borrow_mut();
        if state.covers(self.end, self.promise) {
            return Poll::Ready(Ok(()));
        }
        if let Some(failure) = &state.failure {
            return Poll::Ready(Err(failure.clone()));
        }
        let (end, promise) = (self.end, self.promise);
        let already =
            state
                .ticket_waiters
                .iter()
                .rev()
                .take(4)
                .any(|(waiting, waiting_for, waker)| {
                    *waiting == end && *waiting_for == promise && waker.will_wake(cx.waker())
                });
        if !already {
            state
                .ticket_waiters
                .push((end, promise, cx.waker().clone()));
        }
        Poll::Pending
    }
}

/// The persistence of one core: its log writer, its compaction, its disk bound. Created on the
/// core whose state it records, used only there.
pub struct StateLog {
    pub(super) shared: Rc<RefCell<LogState>>,
    pub(super) dir: CoreDir,
    flusher: Option<Task<()>>,
}

impl StateLog {
    /// Recovers core `core`'s files under `config.persistence_location`, then opens a new log
    /// generation to append to. Returns the log and what was recovered (records in order and a
    /// report). Damaged files never make this fail: only a directory that cannot be created,
    /// listed or written does, and the broker may then run without persistence.
    ///
    /// Must run inside the core's glommio executor (it spawns the core's writer task).
    pub async fn open(
        config: &PersistenceConfig,
        core: u64,
    ) -> Result<(StateLog, Recovered), DirectoryError> {
        let dir = CoreDir::new(&config.persistence_location, core);
        let (recovered, layout) = recover_dir(&dir).await?;
        let file = dir
            .create_log(layout.next_generation)
            .await
            .map_err(|source| DirectoryError {
                path: dir.path.clone(),
                source,
            })?;
        let state = LogState {
            core,
            policy: config.sync_policy(),
            trigger: config.compaction_trigger(),
            buffer_limit: config.write_buffer_bytes.max(1) as u64,
            buffer: Vec::new(),
            buffer_records: 0,
            appended: 0,
            written: 0,
            durable: 0,
            generation: layout.next_generation,
            seal: None,
            failure: None,
            closing: false,
            first_unsynced_write: None,
            flusher_waker: None,
            space_waiters: Vec::new(),
            ticket_waiters: Vec::new(),
            rotation_waiters: Vec::new(),
            compacting: false,
            usage: DiskUsage {
                snapshot_bytes: layout.snapshot_bytes,
                old_log_bytes: layout.log_bytes,
                current_log_bytes: HEADER_LEN as u64,
                buffered_bytes: 0,
            },
            max_disk_bytes: config.max_disk_bytes,
            disk_state: DiskState::WithinBound,
            unreducible_reported: false,
            stats: LogStats::default(),
            sync_observer: None,
        };
        let shared = Rc::new(RefCell::new(state));
        shared.borrow_mut().check_disk_bound();
        let flusher = glommio::spawn_local(run_writer(
            Rc::clone(&shared),
            dir.clone(),
            file,
            HEADER_LEN as u64,
        ));
        let log = StateLog {
            shared,
            dir,
            flusher: Some(flusher),
        };
        Ok((log, recovered))
    }

    /// Has `observer` told the duration of every `fdatasync` from now on (the core's metrics
    /// record them as the persistence sync histogram).
    pub fn observe_syncs(&self, observer: impl Fn(Duration) + 'static) {
        self.shared.borrow_mut().sync_observer = Some(Rc::new(observer));
    }

    /// Appends a record, waiting first while `write_buffer_bytes` are already waiting for the
    /// disk (back-pressure). Returns the ticket of the record: awaiting it says when the record
    /// is durable.
    pub async fn append(&self, record: &Record) -> Result<Ticket, AppendError> {
        let refused_anyway = record.kind() == RecordKind::QueuedMessage
            && self.shared.borrow().disk_state == DiskState::OverBound;
        if !refused_anyway {
            self.wait_for_room().await?;
        }
        self.append_now(record)
    }

    /// Waits while `write_buffer_bytes` are already waiting for the disk: for a caller that
    /// must change its state and append in one step (so that the two stay in the same order)
    /// and takes the back-pressure before it.
    pub async fn wait_for_room(&self) -> Result<(), LogError> {
        let mut counted = false;
        future::poll_fn(|cx| {
            let mut state = self.shared.borrow_mut();
            if let Some(failure) = &state.failure {
                return Poll::Ready(Err(failure.clone()));
            }
            if state.has_space() {
                return Poll::Ready(Ok(()));
            }
            if !counted {
                counted = true;
                state.stats.waits_for_space += 1;
            }
            state.space_waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Appends a record without waiting, even past the buffer bound: for callers that cannot
    /// await (see the module doc). Refuses only a queued message over the disk bound, a record
    /// too large to be one, and any record once the log has stopped.
    pub fn append_now(&self, record: &Record) -> Result<Ticket, AppendError> {
        let mut state = self.shared.borrow_mut();
        if let Some(failure) = &state.failure {
            return Err(AppendError::Log(failure.clone()));
        }
        if state.closing {
            return Err(AppendError::Log(LogError::Closed));
        }
        if record.kind() == RecordKind::QueuedMessage && state.disk_state == DiskState::OverBound {
            state.stats.refused_over_bound += 1;
            return Err(AppendError::OverDiskBound);
        }
        let before = state.buffer.len();
        encode_record(&mut state.buffer, record)?;
        let added = (state.buffer.len() - before) as u64;
        state.appended += added;
        state.buffer_records += 1;
        state.stats.records += 1;
        state.stats.bytes += added;
        state.check_disk_bound();
        state.wake_flusher();
        Ok(Ticket {
            shared: Rc::clone(&self.shared),
            end: state.appended,
            promise: Promise::Policy,
        })
    }

    /// A ticket for everything appended so far: it resolves when the last record appended is
    /// as durable as the policy promises (at once when that is already so).
    pub fn ticket_now(&self) -> Ticket {
        Ticket {
            shared: Rc::clone(&self.shared),
            end: self.shared.borrow().appended,
            promise: Promise::Policy,
        }
    }

    /// Whether compaction should run now (the log is large by the trigger, or the files near
    /// the disk bound). The broker checks this on its housekeeping tick and then calls
    /// [`StateLog::compact`] with its live state.
    pub fn compaction_due(&self) -> bool {
        self.shared.borrow().compaction_due()
    }

    /// Bytes the files use now.
    pub fn disk_usage(&self) -> DiskUsage {
        let state = self.shared.borrow();
        let mut usage = state.usage;
        usage.buffered_bytes = state.appended - state.written;
        usage
    }

    /// Where the files stand against `max_disk_bytes`.
    pub fn disk_state(&self) -> DiskState {
        self.shared.borrow().disk_state
    }

    /// The counters so far.
    pub fn stats(&self) -> LogStats {
        self.shared.borrow().stats
    }

    /// Counts a stretch of compaction work its caller did without yielding, outside
    /// [`StateLog::compact`] (preparing the live state it passes), in
    /// `longest_compaction_slice`.
    pub fn note_compaction_stall(&self, stall: Duration) {
        let mut state = self.shared.borrow_mut();
        state.stats.longest_compaction_slice = state.stats.longest_compaction_slice.max(stall);
    }

    /// The error that stopped the log, if it has stopped.
    pub fn failure(&self) -> Option<LogError> {
        self.shared.borrow().failure.clone()
    }

    /// Writes what is buffered, syncs it and stops the writer. Every ticket taken before
    /// resolves; later appends fail with [`LogError::Closed`].
    pub async fn close(mut self) -> Result<(), LogError> {
        {
            let mut state = self.shared.borrow_mut();
            state.closing = true;
            state.wake_flusher();
        }
        if let Some(flusher) = self.flusher.take() {
            flusher.await;
        }
        let state = self.shared.borrow();
        match &state.failure {
            None | Some(LogError::Closed) => Ok(()),
            Some(failure) => Err(failure.clone()),
        }
    }
}

impl Drop for StateLog {
    /// Dropped without `close`: the writer task is cancelled with the handle, and tickets not
    /// yet satisfied fail with [`LogError::Closed`].
    fn drop(&mut self) {
        if self.flusher.is_some() {
            self.shared.borrow_mut().fail(LogError::Closed);
        }
    }
}

/// The file being written and the offset of its end.
struct OpenLog {
    file: BufferedFile,
    offset: u64,
}

/// The writer task of one core's log.
async fn run_writer(shared: Rc<RefCell<LogState>>, dir: CoreDir, file: BufferedFile, offset: u64) {
    let mut log = OpenLog { file, offset };
    loop {
        let outcome = match next_job(&shared).await {
            Job::Stop => break,
            Job::Write {
                bytes,
                start,
                records,
                seal,
            } => write_batch(&shared, &dir, &mut log, bytes, start, records, seal).await,
            Job::Sync => sync(&shared, &log).await,
            Job::Close => {
                let outcome = sync(&shared, &log).await;
                if outcome.is_ok() {
                    shared.borrow_mut().fail(LogError::Closed);
                }
                outcome
            }
        };
        if let Err(error) = outcome {
            let mut state = shared.borrow_mut();
            tracing::error!(
                core = state.core,
                %error,
                "persistence log write failed: persistence stops on this core"
            );
            state.fail(LogError::Failed(Rc::from(error.to_string())));
            break;
        }
    }
    let _ = log.file.close().await;
}

/// Waits for the writer's next job (a sync deadline of the interval policy wakes it too).
async fn next_job(shared: &Rc<RefCell<LogState>>) -> Job {
    loop {
        let deadline = {
            let mut state = shared.borrow_mut();
            if let Some(job) = state.next_job(Instant::now()) {
                return job;
            }
            state.sync_deadline()
        };
        let take = future::poll_fn(|cx| {
            let mut state = shared.borrow_mut();
            match state.next_job(Instant::now()) {
                Some(job) => Poll::Ready(Some(job)),
                None => {
                    state.flusher_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        });
        let job = match deadline {
            None => take.await,
            Some(deadline) => {
                let timer = async {
                    glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
                    None
                };
                future::or(take, timer).await
            }
        };
        if let Some(job) = job {
            return job;
        }
    }
}

/// Writes one batch (rotating first when a seal falls in it) and syncs as the policy says.
async fn write_batch(
    shared: &Rc<RefCell<LogState>>,
    dir: &CoreDir,
    log: &mut OpenLog,
    mut bytes: Vec<u8>,
    mut start: u64,
    records: u64,
    seal: Option<Seal>,
) -> io::Result<()> {
    if let Some(seal) = seal {
        let before = usize::try_from(seal.at.saturating_sub(start))
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let after = bytes.split_off(before);
        let sealed_end = start + bytes.len() as u64;
        log.offset = write_all(&log.file, bytes, log.offset).await?;
        timed_fdatasync(shared, &log.file).await?;
        let next = dir.create_log(seal.generation).await?;
        let sealed = std::mem::replace(&mut log.file, next);
        let sealed_len = std::mem::replace(&mut log.offset, HEADER_LEN as u64);
        let _ = sealed.close().await;
        let mut state = shared.borrow_mut();
        state.written = sealed_end;
        state.durable = sealed_end;
        state.first_unsynced_write = None;
        state.stats.syncs += 1;
        state.usage.old_log_bytes += sealed_len;
        state.usage.current_log_bytes = HEADER_LEN as u64;
        state.generation = seal.generation;
        state.wake_tickets();
        state.wake_rotation_waiters();
        drop(state);
        bytes = after;
        start = sealed_end;
    }
    if bytes.is_empty() {
        shared.borrow_mut().wake_space_waiters();
        return Ok(());
    }
    let end = start + bytes.len() as u64;
    log.offset = write_all(&log.file, bytes, log.offset).await?;
    let policy = {
        let mut state = shared.borrow_mut();
        state.written = end;
        state.usage.current_log_bytes = log.offset;
        state.stats.writes += 1;
        state.stats.largest_batch = state.stats.largest_batch.max(records);
        if matches!(state.policy, SyncPolicy::Interval(_)) && state.first_unsynced_write.is_none() {
            state.first_unsynced_write = Some(Instant::now());
        }
        state.wake_space_waiters();
        state.wake_tickets();
        state.policy
    };
    if policy == SyncPolicy::Always {
        timed_fdatasync(shared, &log.file).await?;
        let mut state = shared.borrow_mut();
        state.durable = end;
        state.stats.syncs += 1;
        state.wake_tickets();
    }
    Ok(())
}

/// `fdatasync` on `file`, its duration told to the log's sync observer.
async fn timed_fdatasync(shared: &Rc<RefCell<LogState>>, file: &BufferedFile) -> io::Result<()> {
    let started = Instant::now();
    file.fdatasync().await?;
    let observer = shared.borrow().sync_observer.clone();
    if let Some(observer) = observer {
        observer(started.elapsed());
    }
    Ok(())
}

/// Syncs everything written so far.
async fn sync(shared: &Rc<RefCell<LogState>>, log: &OpenLog) -> io::Result<()> {
    let written = shared.borrow().written;
    timed_fdatasync(shared, &log.file).await?;
    let mut state = shared.borrow_mut();
    state.durable = state.durable.max(written);
    state.stats.syncs += 1;
    if state.written == written {
        state.first_unsynced_write = None;
    }
    state.wake_tickets();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::persist::config::SyncMode;
    use crate::persist::record::tests::every_kind;
    use crate::persist::record::{QueuedMessage, RetainedMessage};
    use crate::persist::recovery::recover;
    use crate::persist::testing::{config, run, TempDir};
    use crate::protocol::QoS;

    fn retained(topic: &str, payload_len: usize) -> Record {
        Record::RetainedSet(RetainedMessage {
            topic: Bytes::from(topic.to_owned()),
            payload: Bytes::from(vec![b'r'; payload_len]),
            qos: QoS::AtLeastOnce,
            properties: Bytes::new(),
            expires_at: None,
        })
    }

    fn queued(message_id: u64, payload_len: usize) -> Record {
        Record::MessageQueued(QueuedMessage {
            client_id: Arc::from("subscriber"),
            message_id,
            packet_id: None,
            qos: QoS::AtLeastOnce,
            dup: false,
            retain: false,
            topic: Bytes::from_static(b"t"),
            payload: Bytes::from(vec![b'q'; payload_len]),
            properties: Bytes::new(),
            expires_at: None,
        })
    }

    #[test]
    fn every_record_kind_survives_a_restart() {
        let dir = TempDir::new("round-trip");
        let config = config(dir.path(), SyncMode::Always);
        let recovered = run(move || async move {
            let (log, first) = StateLog::open(&config, 0).await.expect("open");
            assert!(first.records.is_empty());
            assert!(first.report.is_clean());
            for record in every_kind() {
                log.append(&record)
                    .await
                    .expect("append")
                    .await
                    .expect("durable");
            }
            log.close().await.expect("close");
            let (log, recovered) = StateLog::open(&config, 0).await.expect("reopen");
            log.close().await.expect("close");
            recovered
        });
        assert_eq!(recovered.records, every_kind());
        assert!(recovered.report.is_clean(), "{:?}", recovered.report);
    }

    #[test]
    fn group_commit_shares_one_sync_among_concurrent_appends() {
        const PUBLISHERS: u64 = 64;
        const PER_PUBLISHER: u64 = 50;
        let dir = TempDir::new("group-commit");
        let config = config(dir.path(), SyncMode::Always);
        let (stats, recovered) = run(move || async move {
            let (log, _) = StateLog::open(&config, 1).await.expect("open");
            let log = Rc::new(log);
            let mut publishers = Vec::new();
            for publisher in 0..PUBLISHERS {
                let log = Rc::clone(&log);
                publishers.push(glommio::spawn_local(async move {
                    for n in 0..PER_PUBLISHER {
                        let record = queued(publisher * 1000 + n, 100);
                        // What a broker does before PUBACK under sync = "always".
                        log.append(&record)
                            .await
                            .expect("append")
                            .await
                            .expect("durable");
                    }
                }));
            }
            for publisher in publishers {
                publisher.await;
            }
            let stats = log.stats();
            let log = Rc::try_unwrap(log).unwrap_or_else(|_| panic!("log still shared"));
            log.close().await.expect("close");
            (
                stats,
                recover(&config.persistence_location, 1)
                    .await
                    .expect("recover"),
            )
        });
        let appends = PUBLISHERS * PER_PUBLISHER;
        println!(
            "group commit: {appends} acknowledged appends from {PUBLISHERS} publishers, \
             {} fdatasyncs ({:.3} syncs per append), largest batch {}",
            stats.syncs,
            stats.syncs as f64 / appends as f64,
            stats.largest_batch
        );
        assert_eq!(stats.records, appends);
        assert_eq!(recovered.records.len() as u64, appends);
        assert!(
            stats.syncs * 4 <= appends,
            "{} syncs for {appends} appends: no group commit",
            stats.syncs
        );
    }

    #[test]
    fn interval_policy_syncs_once_within_the_window() {
        let dir = TempDir::new("interval");
        let config = PersistenceConfig {
            sync_interval_ms: 100,
            ..config(dir.path(), SyncMode::Interval)
        };
        run(move || async move {
            // Warm the timer up (the first timer of a process may fire late).
            glommio::timer::sleep(Duration::from_millis(5)).await;
            let (log, _) = StateLog::open(&config, 0).await.expect("open");
            let started = Instant::now();
            for n in 0..100 {
                log.append(&queued(n, 50))
                    .await
                    .expect("append")
                    .await
                    .expect("written");
            }
            let written_after = started.elapsed();
            assert_eq!(log.stats().syncs, 0, "interval policy synced at once");
            assert!(log.stats().writes >= 1);
            glommio::timer::sleep(Duration::from_millis(250)).await;
            let stats = log.stats();
            println!(
                "interval policy: 100 tickets resolved in {written_after:?} without a sync, \
                 {} write calls, {} sync within the window",
                stats.writes, stats.syncs
            );
            assert_eq!(stats.syncs, 1, "one sync covers the whole window");
            glommio::timer::sleep(Duration::from_millis(250)).await;
            assert_eq!(log.stats().syncs, 1, "nothing written, nothing to sync");
            log.close().await.expect("close");
        });
    }

    #[test]
    fn never_policy_does_not_sync_until_closed() {
        let dir = TempDir::new("never");
        let config = config(dir.path(), SyncMode::Never);
        let recovered = run(move || async move {
            let (log, _) = StateLog::open(&config, 0).await.expect("open");
            for n in 0..20 {
                log.append(&queued(n, 10))
                    .await
                    .expect("append")
                    .await
                    .expect("written");
            }
            assert_eq!(log.stats().syncs, 0);
            log.close().await.expect("close");
            recover(&config.persistence_location, 0)
                .await
                .expect("recover")
        });
        assert_eq!(recovered.records.len(), 20);
    }

    #[test]
    fn a_full_buffer_makes_append_wait() {
        let dir = TempDir::new("back-pressure");
        let config = PersistenceConfig {
            write_buffer_bytes: 64 * 1024,
            ..config(dir.path(), SyncMode::Never)
        };
        let stats = run(move || async move {
            let (log, _) = StateLog::open(&config, 0).await.expect("open");
            let peak = Cell::new(0u64);
            for n in 0..200 {
                // Tickets are dropped: only admission is measured.
                drop(log.append(&queued(n, 16 * 1024)).await.expect("append"));
                peak.set(peak.get().max(log.disk_usage().buffered_bytes));
            }
            println!(
                "back-pressure: peak buffered {} bytes for a bound of 65536",
                peak.get()
            );
            assert!(
                peak.get() < 64 * 1024 + 17 * 1024,
                "buffer exceeded its bound"
            );
            let stats = log.stats();
            log.close().await.expect("close");
            stats
        });
        assert!(stats.waits_for_space > 0, "{stats:?}");
        assert_eq!(stats.records, 200);
    }

    #[test]
    fn a_written_ticket_resolves_once_the_kernel_has_the_record() {
        let dir = TempDir::new("written");
        let config = config(dir.path(), SyncMode::Always);
        let log_file = dir.path().join("core-0").join("log-00000000000000000001");
        run(move || async move {
            let (log, _) = StateLog::open(&config, 0).await.expect("open");
            let before = std::fs::metadata(&log_file).expect("stat").len();
            let ticket = log.append_now(&retained("w", 100)).expect("append");
            let end = ticket.position();
            ticket.written().await.expect("written");
            let after = std::fs::metadata(&log_file).expect("stat").len();
            assert_eq!(after - before, end, "the record is in the file");
            let durable = log.append_now(&retained("d", 100)).expect("append");
            durable.await.expect("durable");
            assert!(log.stats().syncs >= 1);
            log.close().await.expect("close");
        });
    }

    #[test]
    fn append_now_does_not_wait_and_tickets_resolve_after_close() {
        let dir = TempDir::new("append-now");
        let config = config(dir.path(), SyncMode::Always);
        run(move || async move {
            let (log, _) = StateLog::open(&config, 0).await.expect("open");
            let tickets: Vec<Ticket> = (0..10)
                .map(|n| log.append_now(&queued(n, 10)).expect("append"))
                .collect();
            assert!(tickets
                .windows(2)
                .all(|w| w[0].position() < w[1].position()));
            log.close().await.expect("close");
            for ticket in tickets {
                ticket.await.expect("durable before close returned");
            }
        });
    }

    #[test]
    fn past_the_disk_bound_queued_messages_are_refused_and_the_rest_kept() {
        let dir = TempDir::new("disk-bound");
        let config = PersistenceConfig {
            max_disk_bytes: 1024 * 1024,
            ..config(dir.path(), SyncMode::Never)
        };
        run(move || async move {
            let (log, _) = StateLog::open(&config, 0).await.expect("open");
            let mut accepted = 0u64;
            let refused_at = loop {
                match log.append(&queued(accepted, 8 * 1024)).await {
                    Ok(ticket) => drop(ticket),
                    Err(AppendError::OverDiskBound) => break accepted,
                    Err(other) => panic!("{other}"),
                }
                accepted += 1;
                assert!(accepted < 1000, "the bound was never reached");
            };
            assert_eq!(log.disk_state(), DiskState::OverBound);
            assert!(log.disk_usage().total() >= 1024 * 1024);
            // Retained and session records are still written.
            log.append(&retained("still/kept", 100))
                .await
                .expect("retained is kept")
                .await
                .expect("written");
            assert_eq!(log.stats().refused_over_bound, 1);
            assert!(log.compaction_due(), "near the bound compaction is due");

            // A small live state: compaction brings the files back under the bound.
            let report = log
                .compact(vec![retained("still/kept", 100)])
                .await
                .expect("compact");
            assert!(!report.over_bound);
            assert_eq!(log.disk_state(), DiskState::WithinBound);
            drop(
                log.append(&queued(10_000, 100))
                    .await
                    .expect("accepted again"),
            );

            // A live state larger than the bound: compaction cannot help, and says so.
            let big: Vec<Record> = (0..150).map(|n| queued(n, 8 * 1024)).collect();
            let report = log.compact(big).await.expect("compact");
            println!(
                "disk bound: refused after {refused_at} queued messages of 8 KiB; a live \
                 state of {} bytes leaves the files over the bound: {}",
                report.snapshot_bytes, report.over_bound
            );
            assert!(report.over_bound);
            assert_eq!(log.disk_state(), DiskState::OverBound);
            assert!(matches!(
                log.append(&queued(20_000, 10)).await,
                Err(AppendError::OverDiskBound)
            ));
            log.close().await.expect("close");
        });
    }

    #[test]
    fn compaction_is_due_when_the_log_outgrows_the_trigger() {
        let dir = TempDir::new("trigger");
        let config = PersistenceConfig {
            autosave_log_bytes: 64 * 1024,
            ..config(dir.path(), SyncMode::Never)
        };
        run(move || async move {
            let (log, _) = StateLog::open(&config, 0).await.expect("open");
            assert!(!log.compaction_due());
            for n in 0..100 {
                drop(
                    log.append(&retained(&format!("t/{n}"), 1000))
                        .await
                        .expect("append"),
                );
            }
            assert!(log.compaction_due());
            log.compact(Vec::new()).await.expect("compact");
            assert!(!log.compaction_due());
            log.close().await.expect("close");
        });
    }
}
