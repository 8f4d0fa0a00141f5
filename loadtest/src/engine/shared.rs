//! What the coordinating thread and the executors share: the run's phase and measurement
//! window, per-executor progress counters (each written by its own executor only), the latency
//! histogram of the current progress interval, the first fatal error, and the wakers through
//! which the coordinator nudges each executor.
//!
//! Why the nudges: a glommio 0.9 executor can park with runnable tasks when its preempt timer
//! expires between arming and the first look at its task queues; it then sleeps until the next
//! timer or I/O completion. Near the end of a run there may be neither (every client idle, the
//! control task itself the runnable one), and the executor would sleep through the stop. A
//! waker woken from another thread writes the executor's eventfd, which ends any such sleep.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::task::{Poll, Waker};

use futures_lite::future;

use hdrhistogram::Histogram;

use crate::latency::new_latency_histogram;
use crate::payload::Clock;

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Connecting subscribers and persistent publishers.
    Setup = 0,
    /// Publishing (and opening idle connections).
    Running = 1,
    /// Publishing stopped; waiting for the last deliveries.
    Draining = 2,
    /// Every client closes; executors return their results.
    Stopped = 3,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            0 => Phase::Setup,
            1 => Phase::Running,
            2 => Phase::Draining,
            _ => Phase::Stopped,
        }
    }

    /// Lower-case name for the progress line.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Running => "run",
            Phase::Draining => "drain",
            Phase::Stopped => "stop",
        }
    }
}

/// Counters one executor publishes for the coordinator; only that executor writes them.
#[derive(Default, Debug)]
pub struct ExecutorProgress {
    /// Subscribers connected and subscribed.
    pub subscribers_ready: AtomicU64,
    /// Persistent publishers connected.
    pub publishers_ready: AtomicU64,
    /// Messages written by publishers (all of the run).
    pub sent: AtomicU64,
    /// Of those, sent inside the measurement window.
    pub sent_in_window: AtomicU64,
    /// Deliveries the in-window messages sent so far should cause (sent × fanout).
    pub expected_in_window: AtomicU64,
    /// Deliveries received by subscribers (all of the run).
    pub delivered: AtomicU64,
    /// Deliveries of messages sent inside the measurement window.
    pub delivered_in_window: AtomicU64,
    /// Publishers that have finished.
    pub publishers_done: AtomicU64,
    /// Idle connections open.
    pub idle_open: AtomicU64,
    /// Connections opened (all kinds, churn included).
    pub connects: AtomicU64,
    /// Client errors (failed connects, dropped connections).
    pub errors: AtomicU64,
    /// Turns of the executor's control task: while it grows, the executor is alive.
    pub heartbeat: AtomicU64,
}

/// Adds `n` to a progress counter.
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Reads a progress counter.
pub fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Sums one counter over all executors.
pub fn total(executors: &[ExecutorProgress], field: fn(&ExecutorProgress) -> &AtomicU64) -> u64 {
    executors.iter().map(|e| read(field(e))).sum()
}

/// State shared by the coordinator and every executor of a run.
pub struct RunShared {
    /// The run's time base.
    pub clock: Clock,
    /// Current [`Phase`].
    phase: AtomicU8,
    /// Messages sent before this clock reading are warm-up.
    warmup_end_ns: AtomicU64,
    /// Messages sent at or after this clock reading are outside the window.
    measure_end_ns: AtomicU64,
    /// One slot per executor.
    pub executors: Vec<ExecutorProgress>,
    /// Latencies recorded since the coordinator last read them.
    interval: Mutex<Histogram<u64>>,
    /// The first error that ends the run.
    failure: Mutex<Option<String>>,
    /// Per executor, the waker of its control task (see the module doc).
    nudges: Vec<Mutex<Option<Waker>>>,
}

impl RunShared {
    /// Shared state for `cores` executors.
    pub fn new(cores: usize, clock: Clock) -> Self {
        Self {
            clock,
            phase: AtomicU8::new(Phase::Setup as u8),
            warmup_end_ns: AtomicU64::new(0),
            measure_end_ns: AtomicU64::new(u64::MAX),
            executors: (0..cores).map(|_| ExecutorProgress::default()).collect(),
            interval: Mutex::new(new_latency_histogram()),
            failure: Mutex::new(None),
            nudges: (0..cores).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Moves to `phase` (never backwards) and nudges the executors so they see it at once.
    pub fn advance(&self, phase: Phase) {
        self.phase.fetch_max(phase as u8, Ordering::AcqRel);
        self.nudge_executors();
    }

    /// Wakes every executor's control task, from any thread.
    pub fn nudge_executors(&self) {
        for slot in &self.nudges {
            if let Ok(waker) = slot.lock() {
                if let Some(waker) = waker.as_ref() {
                    waker.wake_by_ref();
                }
            }
        }
    }

    /// Resolves once executor `index`'s current task is woken by [`Self::nudge_executors`] (or
    /// polled again for any other reason); the task's waker stays registered until replaced or
    /// withdrawn.
    pub fn nudged(&self, index: usize) -> impl Future<Output = ()> + '_ {
        let mut registered = false;
        future::poll_fn(move |cx| {
            if registered {
                return Poll::Ready(());
            }
            if let Some(Ok(mut slot)) = self.nudges.get(index).map(Mutex::lock) {
                if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *slot = Some(cx.waker().clone());
                }
            }
            registered = true;
            Poll::Pending
        })
    }

    /// Withdraws executor `index`'s waker, before its control task ends.
    pub fn withdraw_nudge(&self, index: usize) {
        if let Some(Ok(mut slot)) = self.nudges.get(index).map(Mutex::lock) {
            *slot = None;
        }
    }

    /// Sets the measurement window, in clock nanoseconds: `[warmup_end, measure_end)`.
    pub fn set_window(&self, warmup_end_ns: u64, measure_end_ns: u64) {
        self.warmup_end_ns.store(warmup_end_ns, Ordering::Release);
        self.measure_end_ns.store(measure_end_ns, Ordering::Release);
    }

    /// The measurement window `[start, end)` in clock nanoseconds.
    pub fn window(&self) -> (u64, u64) {
        (
            self.warmup_end_ns.load(Ordering::Acquire),
            self.measure_end_ns.load(Ordering::Acquire),
        )
    }

    /// Records an error that ends the run (the first one wins) and stops everything.
    pub fn fail(&self, message: String) {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert(message);
        }
        self.advance(Phase::Stopped);
    }

    /// The error that ended the run, if one did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// Adds an executor's recent latencies to the current interval.
    pub fn add_interval(&self, latencies: &Histogram<u64>) {
        if let Ok(mut interval) = self.interval.lock() {
            let _ = interval.add(latencies);
        }
    }

    /// Takes the latencies of the interval that just ended, leaving an empty one.
    pub fn take_interval(&self) -> Option<Histogram<u64>> {
        let mut interval = self.interval.lock().ok()?;
        let taken = interval.clone();
        interval.reset();
        Some(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// A glommio executor with nothing to do but wait for a nudge sleeps in io_uring; a nudge
    /// from another thread must wake it.
    #[test]
    fn a_nudge_from_another_thread_wakes_a_sleeping_executor() {
        let shared = Arc::new(RunShared::new(1, Clock::start()));
        let (woken, was_woken) = std::sync::mpsc::channel();
        let executor_shared = shared.clone();
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(crate::engine::IO_MEMORY)
            .spawn(move || async move {
                executor_shared.nudged(0).await;
                executor_shared.withdraw_nudge(0);
                let _ = woken.send(());
            })
            .expect("executor starts");
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            shared.nudge_executors();
            if was_woken.recv_timeout(Duration::from_millis(20)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < give_up,
                "the nudge never woke the executor"
            );
        }
        executor.join().expect("executor ends");
        assert!(shared.nudges[0].lock().unwrap().is_none());
    }
}
