//! Executes a [`Plan`]: starts one glommio executor per generator core, walks the run through
//! its phases (set-up, run, drain, stop) from the calling thread, prints the progress line, and
//! collects what every executor measured. Every phase has a deadline, so a run always ends:
//! set-up within its budget, the run after warm-up + duration, the drain within its timeout,
//! and the stop within [`JOIN_GRACE`], after which a run whose executors have not handed back
//! their results is abandoned with an error. An executor whose heartbeat stops for
//! [`STALL_LIMIT`] ends the run early with an error naming it.
//!
//! - `executor`: one executor's share of the clients and its local accounting;
//! - `subscriber`, `publisher`, `idle`: the client tasks;
//! - `shared`: what the coordinator and the executors share;
//! - `signal`: the executor-local broadcast tasks wait on.

mod executor;
mod idle;
mod publisher;
mod shared;
mod signal;
mod subscriber;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use thiserror::Error;

use self::executor::ExecutorResult;
pub use self::executor::{
    ErrorKind, ErrorLog, ExecutorReport, PublisherRecord, StreamSent, SubscriberRecord,
};
pub use self::shared::Phase;
use self::shared::{total, ExecutorProgress, RunShared};
use crate::latency::Percentiles;
use crate::payload::Clock;
use crate::plan::{Plan, PublishMode, Timing};
use crate::report::progress::{ProgressLine, ProgressSnapshot};
use crate::sampler::{ProcessSampler, Sample, SamplerError};

/// Locked memory each executor gives io_uring (the generator does no file I/O).
pub const IO_MEMORY: usize = 1024 * 1024;

/// Locked memory an executor needs besides `IO_MEMORY` (its rings).
const RING_MEMORY: usize = 256 * 1024;

/// How often the coordinator looks at the executors' counters.
const TICK: Duration = Duration::from_millis(20);

/// Set-up time allowed on top of the connect timeout and the paced connect time.
const SETUP_MARGIN: Duration = Duration::from_secs(10);

/// A drain ends early once no delivery arrived for this long.
const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// Time the executors get to hand back their results after the stop before the run is
/// abandoned: their own grace for closing clients (3 s) and a margin.
pub const JOIN_GRACE: Duration = Duration::from_secs(5);

/// An executor whose heartbeat did not move for this long is stuck: the run is abandoned.
pub const STALL_LIMIT: Duration = Duration::from_secs(5);

/// Why a run could not be carried out.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The environment cannot run the generator (io_uring, locked memory, file descriptors).
    #[error("{0}")]
    Environment(String),
    /// An executor could not be started.
    #[error("cannot start generator executor {index}: {reason}")]
    Executor {
        /// Which.
        index: usize,
        /// glommio's reason.
        reason: String,
    },
    /// The broker process cannot be sampled.
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    /// The run failed (unreachable broker, refused CONNECT, set-up timeout, ...).
    #[error("{0}")]
    Run(String),
    /// Executors did not hand back their results within [`JOIN_GRACE`] of the stop.
    #[error(
        "generator executor(s) {executors} did not hand back their results within {grace:?} \
         of the stop; the run was abandoned"
    )]
    Abandoned {
        /// Which executors, e.g. "0, 2".
        executors: String,
        /// How long they were given.
        grace: Duration,
    },
}

/// How the run went, in clock nanoseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timeline {
    /// Publishing (or idle connecting) started.
    pub start_ns: u64,
    /// Start of the measurement window.
    pub window_start_ns: u64,
    /// End of the measurement window (publishing stopped).
    pub window_end_ns: u64,
    /// The drain ended and clients were told to close.
    pub stop_ns: u64,
    /// Set-up took this long.
    pub setup: Duration,
    /// Publishers hit their time limit before sending everything (pymqttbench).
    pub publishers_timed_out: bool,
    /// The drain ended at its timeout rather than with every expected delivery.
    pub drain_timed_out: bool,
    /// Idle connections open when the hold began (conns).
    pub idle_open: u64,
    /// When the last idle connection was open and the hold began (conns).
    pub hold_start_ns: u64,
}

/// Options of a run that are not part of the plan.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Process id of the broker to sample.
    pub broker_pid: Option<u32>,
    /// No progress line.
    pub quiet: bool,
}

/// Everything a run produced, for the report.
#[derive(Debug)]
pub struct RunOutcome {
    /// What was run.
    pub plan: Arc<Plan>,
    /// One per executor.
    pub executors: Vec<ExecutorReport>,
    /// Phase boundaries.
    pub timeline: Timeline,
    /// Broker samples, if a broker pid was given.
    pub broker: Option<Vec<Sample>>,
    /// Generator samples.
    pub generator: Vec<Sample>,
}

/// Runs `plan` to the end.
pub fn run(plan: Plan, options: RunOptions) -> Result<RunOutcome, EngineError> {
    preflight(&plan)?;
    let plan = Arc::new(plan);
    let clock = Clock::start();
    let broker = options
        .broker_pid
        .map(|pid| ProcessSampler::start(pid, clock))
        .transpose()?;
    let generator = ProcessSampler::start(0, clock)?;
    let shared = Arc::new(RunShared::new(plan.cores, clock));
    let results = start_executors(&plan, &shared)?;
    let mut coordinator = Coordinator {
        plan: &plan,
        shared: &shared,
        progress: ProgressLine::new(options.quiet),
        broker: broker.as_ref(),
        generator: &generator,
        timeline: Timeline::default(),
        clock,
        heartbeats: vec![Heartbeat::new(); plan.cores],
    };
    coordinator.drive();
    shared.advance(Phase::Stopped);
    let timeline = coordinator.timeline;
    coordinator.progress.finish();
    let collected = collect(&results, &shared, plan.cores);
    // A failure recorded during the run (set-up, a stalled executor) explains a missing report
    // better than the missing report does.
    if let Some(failure) = shared.failure() {
        return Err(EngineError::Run(failure));
    }
    let executors = collected?;
    Ok(RunOutcome {
        plan,
        executors,
        timeline,
        broker: broker.map(ProcessSampler::finish),
        generator: generator.finish(),
    })
}

fn start_executors(
    plan: &Arc<Plan>,
    shared: &Arc<RunShared>,
) -> Result<mpsc::Receiver<ExecutorResult>, EngineError> {
    let (sender, receiver) = mpsc::channel();
    for index in 0..plan.cores {
        let plan = plan.clone();
        let run_shared = shared.clone();
        let reports = sender.clone();
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(IO_MEMORY)
            .name(&format!("loadtest-{index}"))
            .spawn(move || executor::run(index, plan, run_shared, reports));
        let handle = match handle {
            Ok(handle) => handle,
            Err(error) => {
                shared.fail(format!("cannot start generator executor {index}: {error}"));
                return Err(EngineError::Executor {
                    index,
                    reason: error.to_string(),
                });
            }
        };
        let sender = sender.clone();
        let failed = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("join-{index}"))
            .spawn(move || {
                // A finished executor has sent its report already; only a failure is news, and
                // it ends the run at once rather than at the next phase deadline.
                if let Err(error) = handle.join() {
                    failed.fail(format!("generator executor {index} failed: {error}"));
                    let _ = sender.send((index, Err(error.to_string())));
                }
            });
        if let Err(error) = spawned {
            shared.fail(error.to_string());
            return Err(EngineError::Executor {
                index,
                reason: error.to_string(),
            });
        }
    }
    Ok(receiver)
}

/// Waits (at most [`JOIN_GRACE`]) for every executor's results, nudging the executors while it
/// waits so that none sleeps through its shutdown.
fn collect(
    results: &mpsc::Receiver<ExecutorResult>,
    shared: &RunShared,
    cores: usize,
) -> Result<Vec<ExecutorReport>, EngineError> {
    let mut reports: Vec<Option<ExecutorReport>> = (0..cores).map(|_| None).collect();
    let give_up = Instant::now() + JOIN_GRACE;
    while reports.iter().any(Option::is_none) {
        shared.nudge_executors();
        let left = give_up.saturating_duration_since(Instant::now());
        match results.recv_timeout(left.min(TICK)) {
            Ok((index, Ok(report))) => reports[index] = Some(report),
            Ok((index, Err(reason))) => return Err(EngineError::Executor { index, reason }),
            Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
            Err(_) => {
                let missing: Vec<String> = (0..cores)
                    .filter(|&i| reports[i].is_none())
                    .map(|i| i.to_string())
                    .collect();
                return Err(EngineError::Abandoned {
                    executors: missing.join(", "),
                    grace: JOIN_GRACE,
                });
            }
        }
    }
    Ok(reports.into_iter().flatten().collect())
}

/// Walks the run through its phases.
struct Coordinator<'a> {
    plan: &'a Plan,
    shared: &'a RunShared,
    progress: ProgressLine,
    broker: Option<&'a ProcessSampler>,
    generator: &'a ProcessSampler,
    timeline: Timeline,
    clock: Clock,
    /// Per executor, what the coordinator last saw of its heartbeat.
    heartbeats: Vec<Heartbeat>,
}

/// The coordinator's view of one executor's heartbeat.
#[derive(Clone, Copy, Debug)]
struct Heartbeat {
    /// The last value seen.
    seen: u64,
    /// When it last moved.
    since: Instant,
    /// Ticks that saw it unchanged: a generator that was itself stopped (SIGSTOP, a debugger)
    /// and resumed finds a long `since` but few ticks, and is not taken for a stall.
    still_ticks: u32,
}

impl Heartbeat {
    fn new() -> Heartbeat {
        Heartbeat {
            seen: 0,
            since: Instant::now(),
            still_ticks: 0,
        }
    }

    /// Records the current value; true when it stood still for [`STALL_LIMIT`].
    fn stalled(&mut self, beat: u64, now: Instant) -> bool {
        if beat != self.seen {
            *self = Heartbeat {
                seen: beat,
                since: now,
                still_ticks: 0,
            };
            return false;
        }
        self.still_ticks = self.still_ticks.saturating_add(1);
        let ticks_needed = (STALL_LIMIT.as_millis() / TICK.as_millis()) as u32;
        now.duration_since(self.since) >= STALL_LIMIT && self.still_ticks >= ticks_needed
    }
}

impl Coordinator<'_> {
    fn executors(&self) -> &[ExecutorProgress] {
        &self.shared.executors
    }

    fn sum(&self, field: fn(&ExecutorProgress) -> &std::sync::atomic::AtomicU64) -> u64 {
        total(self.executors(), field)
    }

    fn persistent_publishers(&self) -> u64 {
        self.plan
            .publishers
            .iter()
            .filter(|p| matches!(p.mode, PublishMode::Persistent { .. }))
            .count() as u64
    }

    fn setup_budget(&self) -> Duration {
        let clients = self.plan.subscribers.len() as f64 + self.persistent_publishers() as f64;
        let paced = self
            .plan
            .setup_connect_rate
            .map_or(0.0, |rate| clients / rate);
        self.plan.target.connect.timeout + Duration::from_secs_f64(paced) + SETUP_MARGIN
    }

    fn run_budget(&self) -> Duration {
        match self.plan.timing {
            Timing::Timed { warmup, duration } => warmup + duration,
            Timing::UntilPublished { timeout } => timeout,
            Timing::Hold { duration } => {
                let connections = self.plan.idle.map_or(0, |i| i.connections) as f64;
                let paced = self
                    .plan
                    .idle
                    .and_then(|i| i.connect_rate)
                    .map_or(0.0, |rate| connections / rate);
                duration + Duration::from_secs_f64(paced) + self.setup_budget()
            }
        }
    }

    fn stopped(&self) -> bool {
        self.shared.phase() == Phase::Stopped
    }

    /// Waits one tick, nudges the executors, checks that each is alive, and prints the
    /// progress line when due.
    fn tick(&mut self) {
        std::thread::sleep(TICK);
        self.shared.nudge_executors();
        self.watch_heartbeats();
        let snapshot = ProgressSnapshot {
            phase: self.shared.phase(),
            elapsed: Duration::from_nanos(self.clock.now_ns()),
            sent: self.sum(|e| &e.sent),
            delivered: self.sum(|e| &e.delivered),
            connects: self.sum(|e| &e.connects),
            errors: self.sum(|e| &e.errors),
        };
        if self.progress.due() {
            let p99 = self
                .shared
                .take_interval()
                .filter(|h| !h.is_empty())
                .map(|h| Percentiles::of(&h).p99_ms);
            self.progress.print(&snapshot, p99);
        }
    }

    /// Ends the run with an error if an executor's heartbeat stood still for [`STALL_LIMIT`]:
    /// a client task that never yields, or an executor that sleeps with work to do.
    fn watch_heartbeats(&mut self) {
        let now = Instant::now();
        for (index, heartbeat) in self.heartbeats.iter_mut().enumerate() {
            let beat = shared::read(&self.shared.executors[index].heartbeat);
            if heartbeat.stalled(beat, now) {
                self.shared.fail(format!(
                    "generator executor {index} made no progress for {STALL_LIMIT:?} during \
                     {} (a client task that never yields, or an executor asleep with work to \
                     do); the run was abandoned",
                    self.shared.phase().name()
                ));
                return;
            }
        }
    }

    fn drive(&mut self) {
        let setup_started = Instant::now();
        if !self.setup(setup_started + self.setup_budget()) {
            return;
        }
        self.timeline.setup = setup_started.elapsed();
        self.sample();
        let start_ns = self.clock.now_ns();
        self.timeline.start_ns = start_ns;
        let (window_start, window_end) = match self.plan.timing {
            Timing::Timed { warmup, duration } => {
                let warmup_end = start_ns + nanos(warmup);
                (warmup_end, warmup_end + nanos(duration))
            }
            Timing::UntilPublished { .. } | Timing::Hold { .. } => (start_ns, u64::MAX),
        };
        self.shared.set_window(window_start, window_end);
        self.timeline.window_start_ns = window_start;
        self.shared.advance(Phase::Running);
        let publishing_ended = match self.plan.timing {
            Timing::Timed { .. } => self.run_timed(window_start, window_end),
            Timing::UntilPublished { timeout } => self.run_until_published(timeout),
            Timing::Hold { duration } => self.run_hold(duration),
        };
        let Some(ended_ns) = publishing_ended else {
            return;
        };
        self.timeline.window_end_ns = ended_ns;
        self.sample();
        self.shared.advance(Phase::Draining);
        if !matches!(self.plan.timing, Timing::Hold { .. }) {
            self.drain();
        }
        self.timeline.stop_ns = self.clock.now_ns();
        self.shared.advance(Phase::Stopped);
    }

    fn sample(&self) {
        if let Some(broker) = self.broker {
            broker.sample_now();
        }
        self.generator.sample_now();
    }

    /// Waits until every subscriber and persistent publisher is connected.
    fn setup(&mut self, deadline: Instant) -> bool {
        let subscribers = self.plan.subscribers.len() as u64;
        let publishers = self.persistent_publishers();
        loop {
            if self.stopped() {
                return false;
            }
            let subscribed = self.sum(|e| &e.subscribers_ready);
            let connected = self.sum(|e| &e.publishers_ready);
            if subscribed >= subscribers && connected >= publishers {
                return true;
            }
            if Instant::now() >= deadline {
                self.shared.fail(format!(
                    "set-up did not finish within {:?}: {subscribed} of {subscribers} \
                     subscribers and {connected} of {publishers} publishers connected",
                    self.setup_budget()
                ));
                return false;
            }
            self.tick();
        }
    }

    fn run_timed(&mut self, window_start: u64, window_end: u64) -> Option<u64> {
        let mut sampled_start = false;
        loop {
            if self.stopped() {
                return None;
            }
            let now = self.clock.now_ns();
            if !sampled_start && now >= window_start {
                self.sample();
                sampled_start = true;
            }
            if now >= window_end {
                return Some(window_end);
            }
            self.tick();
        }
    }

    fn run_until_published(&mut self, timeout: Duration) -> Option<u64> {
        let publishers = self.plan.publishers.len() as u64;
        let deadline = Instant::now() + timeout;
        loop {
            if self.stopped() {
                return None;
            }
            if self.sum(|e| &e.publishers_done) >= publishers {
                return Some(self.clock.now_ns());
            }
            if Instant::now() >= deadline {
                self.timeline.publishers_timed_out = true;
                return Some(self.clock.now_ns());
            }
            self.tick();
        }
    }

    fn run_hold(&mut self, duration: Duration) -> Option<u64> {
        let connections = self.plan.idle.map_or(0, |i| i.connections) as u64;
        let connect_deadline = Instant::now() + self.run_budget() - duration;
        loop {
            if self.stopped() {
                return None;
            }
            let open = self.sum(|e| &e.idle_open);
            let failed = self.sum(|e| &e.errors);
            if open + failed >= connections || Instant::now() >= connect_deadline {
                break;
            }
            self.tick();
        }
        self.timeline.idle_open = self.sum(|e| &e.idle_open);
        self.timeline.hold_start_ns = self.clock.now_ns();
        self.sample();
        let hold_end = Instant::now() + duration;
        while Instant::now() < hold_end {
            if self.stopped() {
                return None;
            }
            self.tick();
        }
        Some(self.clock.now_ns())
    }

    /// Waits for the publishers to finish and the last expected deliveries to arrive.
    fn drain(&mut self) {
        let deadline = Instant::now() + self.plan.drain_timeout;
        let publishers = self.plan.publishers.len() as u64;
        let mut last_delivered = self.sum(|e| &e.delivered);
        let mut quiet_since = Instant::now();
        loop {
            if self.stopped() {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                self.timeline.drain_timed_out = true;
                return;
            }
            let delivered = self.sum(|e| &e.delivered);
            if delivered != last_delivered {
                last_delivered = delivered;
                quiet_since = now;
            }
            let publishers_done = self.sum(|e| &e.publishers_done) >= publishers;
            if publishers_done {
                let expected = self.sum(|e| &e.expected_in_window);
                let received = self.sum(|e| &e.delivered_in_window);
                if received >= expected || now.duration_since(quiet_since) >= DRAIN_QUIET {
                    return;
                }
            }
            self.tick();
        }
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Checks io_uring, the locked-memory limit and the file-descriptor limit before starting.
fn preflight(plan: &Plan) -> Result<(), EngineError> {
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if text.trim() == "2" {
            return Err(EngineError::Environment(
                "io_uring is disabled (kernel.io_uring_disabled = 2); the generator needs it: \
                 run `sysctl kernel.io_uring_disabled=0` as root"
                    .into(),
            ));
        }
    }
    let need_locked = (plan.cores * (IO_MEMORY + RING_MEMORY)) as u64;
    raise_limit(libc::RLIMIT_MEMLOCK, need_locked).map_err(|have| {
        EngineError::Environment(format!(
            "the locked-memory limit (ulimit -l) is {} KiB but {} generator core(s) need {} KiB: \
             raise it or use fewer --cores",
            have / 1024,
            plan.cores,
            need_locked / 1024
        ))
    })?;
    let need_files = plan.connection_count() as u64 + 256;
    raise_limit(libc::RLIMIT_NOFILE, need_files).map_err(|have| {
        EngineError::Environment(format!(
            "the run opens up to {} connections but the open-file limit (ulimit -n) is {have}: \
             raise it (ulimit -n {need_files}) or use fewer clients",
            plan.connection_count()
        ))
    })?;
    Ok(())
}

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// Raises a soft limit to at least `need` (up to the hard limit); `Err(current)` if it cannot.
fn raise_limit(resource: Resource, need: u64) -> Result<(), u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we pass.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return Ok(());
    }
    if limit.rlim_cur == libc::RLIM_INFINITY || limit.rlim_cur >= need {
        return Ok(());
    }
    if limit.rlim_max == libc::RLIM_INFINITY || limit.rlim_max >= need {
        let raised = libc::rlimit {
            rlim_cur: if limit.rlim_max == libc::RLIM_INFINITY {
                need
            } else {
                limit.rlim_max
            },
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from the struct we pass.
        if unsafe { libc::setrlimit(resource, &raised) } == 0 {
            return Ok(());
        }
    }
    Err(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_stalls_only_after_the_limit_and_enough_ticks() {
        let start = Instant::now();
        let mut heartbeat = Heartbeat::new();
        assert!(!heartbeat.stalled(1, start));
        // A generator stopped and resumed: long wall time, one tick.
        assert!(!heartbeat.stalled(1, start + STALL_LIMIT * 3));
        let ticks = (STALL_LIMIT.as_millis() / TICK.as_millis()) as u32;
        let mut stalled = false;
        for n in 0..ticks {
            stalled = heartbeat.stalled(1, start + STALL_LIMIT * 3 + TICK * n);
        }
        assert!(stalled);
        assert!(!heartbeat.stalled(2, start + STALL_LIMIT * 4));
    }
}
