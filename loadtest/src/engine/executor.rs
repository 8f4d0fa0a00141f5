//! One generator executor (a glommio thread): it owns a share of the run's clients, runs each
//! as a task, keeps their accounting in executor-local state, and hands it back at the end.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::sync::Semaphore;
use glommio::task::JoinHandle;
use glommio::{Latency, Shares, TaskQueueHandle};
use hdrhistogram::Histogram;

use super::shared::{bump, ExecutorProgress, Phase, RunShared};
use super::signal::Signal;
use super::{idle, publisher, subscriber};
use crate::accounting::SubscriberLedger;
use crate::client::ClientError;
use crate::latency::{new_connect_histogram, new_latency_histogram};
use crate::plan::{Plan, PublishMode};

/// Scheduler shares of the task queue of subscribers and the control task.
const RECEIVING_SHARES: usize = 1000;

/// Latency the receiving queue asks the scheduler for.
const RECEIVING_LATENCY: Duration = Duration::from_millis(1);

/// Scheduler shares of the task queue of publishers and idle connections.
const SENDING_SHARES: usize = 100;

/// Latency the sending queue asks the scheduler for: a publisher that never waits is taken off
/// the CPU after this long, so the subscribers' input is looked at again. (Set per queue rather
/// than as the executor's preempt timer, which would also make the executor's first turn, with
/// no timer or I/O yet to wake it, exposed to glommio's park-with-runnable-tasks race.)
const SENDING_LATENCY: Duration = Duration::from_millis(1);

/// Connections one executor sets up at the same time.
const SETUP_CONCURRENCY: u64 = 64;

/// How often the control task looks at the shared phase when not nudged (the coordinator
/// nudges it at every phase change and every tick; this is the backstop).
const PHASE_POLL: Duration = Duration::from_millis(20);

/// How often recent latencies are handed to the progress line.
const INTERVAL_FLUSH: Duration = Duration::from_millis(250);

/// How long tasks get to finish after the stop, before they are cancelled.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Distinct error messages kept per executor (each with its count).
const MAX_ERROR_KINDS: usize = 16;

/// What a subscriber received, kept per executor and returned at the end.
#[derive(Debug, Default)]
pub struct SubscriberRecord {
    /// Global subscriber index.
    pub index: usize,
    /// In-window deliveries by stream.
    pub ledger: SubscriberLedger,
    /// All deliveries, warm-up included.
    pub delivered_total: u64,
    /// Deliveries that arrived inside the measurement window, whenever they were sent: the
    /// base of the receive rate, which stays meaningful when a saturated broker delivers
    /// late.
    pub arrived_in_window: u64,
    /// Clock time of the first delivery.
    pub first_delivery_ns: Option<u64>,
    /// Clock time at which the delivery count reached the plan's subscriber target.
    pub target_reached_ns: Option<u64>,
    /// The QoS the broker granted.
    pub granted_qos: Option<u8>,
    /// The connection ended before the run did.
    pub dropped: bool,
}

/// What one stream of a publisher sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamSent {
    /// Stream id.
    pub stream: u32,
    /// Messages written, warm-up included.
    pub total: u64,
    /// Messages written inside the measurement window.
    pub in_window: u64,
}

/// What a publisher did, kept per executor and returned at the end.
#[derive(Debug, Default)]
pub struct PublisherRecord {
    /// Global publisher index.
    pub index: usize,
    /// Counts per stream.
    pub streams: Vec<StreamSent>,
    /// Clock time publishing started.
    pub started_ns: Option<u64>,
    /// Clock time publishing ended.
    pub finished_ns: Option<u64>,
    /// The publisher sent everything its limit asked for.
    pub completed: bool,
}

/// One kind of client error: its message, how often it happened, and the first client hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorKind {
    /// What went wrong.
    pub message: String,
    /// Occurrences.
    pub count: u64,
    /// The first client it happened to, e.g. "subscriber 12".
    pub first_client: String,
}

/// Client errors grouped by message.
#[derive(Debug, Default, Clone)]
pub struct ErrorLog {
    /// Kinds in the order first seen (at most [`MAX_ERROR_KINDS`]).
    pub kinds: Vec<ErrorKind>,
    /// Errors in all.
    pub total: u64,
}

impl ErrorLog {
    /// Counts one error of client `who`.
    pub fn record(&mut self, who: &str, message: String) {
        self.add(ErrorKind {
            message,
            count: 1,
            first_client: who.to_owned(),
        });
    }

    fn add(&mut self, kind: ErrorKind) {
        self.total += kind.count;
        if let Some(known) = self.kinds.iter_mut().find(|k| k.message == kind.message) {
            known.count += kind.count;
        } else if self.kinds.len() < MAX_ERROR_KINDS {
            self.kinds.push(kind);
        }
    }

    /// Adds another log into this one.
    pub fn merge(&mut self, other: &ErrorLog) {
        let listed: u64 = other.kinds.iter().map(|k| k.count).sum();
        for kind in &other.kinds {
            self.add(kind.clone());
        }
        self.total += other.total - listed;
    }
}

/// Everything an executor hands back when the run ends.
#[derive(Debug)]
pub struct ExecutorReport {
    /// In-window publish→deliver latencies (ns).
    pub latency: Histogram<u64>,
    /// Connection set-up times (ns).
    pub connect: Histogram<u64>,
    /// Its subscribers.
    pub subscribers: Vec<SubscriberRecord>,
    /// Its publishers.
    pub publishers: Vec<PublisherRecord>,
    /// Client errors.
    pub errors: ErrorLog,
}

/// The executor's state, shared by its tasks (never borrowed across an await).
pub struct Executor {
    /// This executor's index.
    pub index: usize,
    /// The plan.
    pub plan: Arc<Plan>,
    /// Cross-thread state.
    pub shared: Arc<RunShared>,
    /// Raised when publishing starts.
    pub running: Signal,
    /// Raised when publishing must stop.
    pub publishing_over: Signal,
    /// Raised when every client must close.
    pub stop: Signal,
    /// Raised once the executor's results are handed back: the control task may end.
    pub finished: Signal,
    /// In-window latencies of the whole run.
    pub latency: RefCell<Histogram<u64>>,
    /// Latencies (warm-up included) since the last flush to the progress line.
    pub interval: RefCell<Histogram<u64>>,
    /// Connection set-up times.
    pub connect: RefCell<Histogram<u64>>,
    /// Its subscribers' records.
    pub subscribers: RefCell<Vec<SubscriberRecord>>,
    /// Its publishers' records.
    pub publishers: RefCell<Vec<PublisherRecord>>,
    /// Client errors.
    pub errors: RefCell<ErrorLog>,
}

impl Executor {
    /// This executor's progress counters.
    pub fn progress(&self) -> &ExecutorProgress {
        &self.shared.executors[self.index]
    }

    /// Counts a client error; a fatal one (refused credentials, refused subscription) or any
    /// error during set-up ends the run.
    pub fn client_error(&self, who: &str, error: &ClientError, during_setup: bool) {
        if self.stop.is_raised() {
            return;
        }
        bump(&self.progress().errors, 1);
        if error.is_fatal() || during_setup {
            self.shared.fail(format!("{who}: {error}"));
        }
        self.errors.borrow_mut().record(who, error.to_string());
    }

    /// Records the set-up time of a connection.
    pub fn record_connect(&self, took: Duration) {
        bump(&self.progress().connects, 1);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.connect.borrow_mut().saturating_record(nanos.max(1));
    }

    /// The client id of a client of this run.
    pub fn client_id(&self, role: &str, index: usize) -> String {
        format!("{}-{role}{index}", self.plan.target.client_id_prefix)
    }
}

/// Which of the plan's items belong to executor `index` of `cores` (round robin).
pub fn owned(index: usize, cores: usize, count: usize) -> impl Iterator<Item = usize> {
    (index..count).step_by(cores.max(1))
}

/// Paces set-up connections: the n-th may start at `start + n / rate`.
pub struct Pacer {
    start: Instant,
    interval: Option<Duration>,
    issued: u32,
}

impl Pacer {
    /// A pacer for `rate` per second (`None` = no pacing).
    pub fn new(rate: Option<f64>) -> Self {
        Self {
            start: Instant::now(),
            interval: rate.map(|r| Duration::from_secs_f64(1.0 / r)),
            issued: 0,
        }
    }

    /// Waits for the next slot.
    pub async fn next(&mut self) {
        if let Some(interval) = self.interval {
            let due = self.start + interval.saturating_mul(self.issued);
            let now = Instant::now();
            if due > now {
                glommio::timer::sleep(due - now).await;
            }
        }
        self.issued = self.issued.saturating_add(1);
    }
}

/// Runs executor `index` until the run stops and sends what it measured to `results` before
/// returning, so the coordinator has it even if tearing the executor down takes long.
pub async fn run(
    index: usize,
    plan: Arc<Plan>,
    shared: Arc<RunShared>,
    results: mpsc::Sender<ExecutorResult>,
) {
    let cores = plan.cores;
    let executor = Rc::new(Executor {
        index,
        shared,
        running: Signal::new(),
        publishing_over: Signal::new(),
        stop: Signal::new(),
        finished: Signal::new(),
        latency: RefCell::new(new_latency_histogram()),
        interval: RefCell::new(new_latency_histogram()),
        connect: RefCell::new(new_connect_histogram()),
        subscribers: RefCell::new(Vec::new()),
        publishers: RefCell::new(Vec::new()),
        errors: RefCell::new(ErrorLog::default()),
        plan,
    });
    // Subscribers measure: they get the executor first whenever they have input, so that
    // publishers flooding a broker never delay the reading, acknowledging and timestamping of
    // deliveries. Publishers and idle connections share what is left.
    let receiving = glommio::executor().create_task_queue(
        Shares::Static(RECEIVING_SHARES),
        Latency::Matters(RECEIVING_LATENCY),
        "receiving",
    );
    let sending = glommio::executor().create_task_queue(
        Shares::Static(SENDING_SHARES),
        Latency::Matters(SENDING_LATENCY),
        "sending",
    );
    let control = glommio::spawn_local_into(control(executor.clone()), receiving)
        .unwrap_or_else(|_| glommio::spawn_local(self::control(executor.clone())));
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let permits = Rc::new(Semaphore::new(SETUP_CONCURRENCY));
    let setup_rate = executor.plan.setup_connect_rate.map(|r| r / cores as f64);
    let mut pacer = Pacer::new(setup_rate);

    let subscribers: Vec<usize> = owned(index, cores, executor.plan.subscribers.len()).collect();
    for (local, global) in subscribers.into_iter().enumerate() {
        executor.subscribers.borrow_mut().push(SubscriberRecord {
            index: global,
            ..SubscriberRecord::default()
        });
        if !setup_slot(&executor, &mut pacer).await {
            break;
        }
        let Ok(permit) = permits.acquire_static_permit(1).await else {
            break;
        };
        tasks.push(spawn_into(
            &executor,
            receiving,
            subscriber::run(executor.clone(), local, global, permit),
        ));
    }
    let publishers: Vec<usize> = owned(index, cores, executor.plan.publishers.len()).collect();
    for (local, global) in publishers.into_iter().enumerate() {
        executor.publishers.borrow_mut().push(PublisherRecord {
            index: global,
            ..PublisherRecord::default()
        });
        let persistent = matches!(
            executor.plan.publishers[global].mode,
            PublishMode::Persistent { .. }
        );
        let task = if persistent {
            if !setup_slot(&executor, &mut pacer).await {
                break;
            }
            let Ok(permit) = permits.acquire_static_permit(1).await else {
                break;
            };
            spawn_into(
                &executor,
                sending,
                publisher::run_persistent(executor.clone(), local, global, permit),
            )
        } else {
            spawn_into(
                &executor,
                sending,
                publisher::run_churn(executor.clone(), local, global),
            )
        };
        tasks.push(task);
    }
    if let Some(idle) = executor.plan.idle {
        tasks.push(spawn_into(
            &executor,
            sending,
            idle::run(executor.clone(), idle),
        ));
    }

    executor.stop.wait().await;
    let _ = future::or(
        async {
            for task in &mut tasks {
                task.await;
            }
        },
        glommio::timer::sleep(STOP_GRACE),
    )
    .await;
    for task in &tasks {
        task.cancel();
    }
    // The control task keeps registering for nudges until the results are out, so that no
    // wait of this shutdown can be slept through (see `shared`).
    let _ = results.send((index, Ok(report(&executor))));
    executor.finished.raise();
    control.await;
}

/// An executor's report, or why it has none.
pub type ExecutorResult = (usize, Result<ExecutorReport, String>);

/// Spawns a client task into one of the executor's task queues. glommio refuses only a queue
/// that does not exist, and ours live as long as the executor; should it refuse all the same,
/// the run ends with that error instead of silently missing a client.
fn spawn_into(
    executor: &Executor,
    queue: TaskQueueHandle,
    task: impl std::future::Future<Output = ()> + 'static,
) -> JoinHandle<()> {
    match glommio::spawn_local_into(task, queue) {
        Ok(task) => task.detach(),
        Err(error) => {
            executor
                .shared
                .fail(format!("cannot start a client task: {error}"));
            glommio::spawn_local(async {}).detach()
        }
    }
}

/// Waits for the next set-up slot; false when the run stopped meanwhile.
async fn setup_slot(executor: &Executor, pacer: &mut Pacer) -> bool {
    future::or(
        async {
            pacer.next().await;
            true
        },
        async {
            executor.stop.wait().await;
            false
        },
    )
    .await
        && !executor.stop.is_raised()
}

/// Mirrors the shared phase into the executor's signals, feeds the progress line, beats the
/// executor's heartbeat, and keeps its waker registered for the coordinator's nudges until the
/// executor's results are handed back.
async fn control(executor: Rc<Executor>) {
    let mut last_flush = Instant::now();
    loop {
        bump(&executor.progress().heartbeat, 1);
        let phase = executor.shared.phase();
        if phase >= Phase::Running {
            executor.running.raise();
        }
        if phase >= Phase::Draining {
            executor.publishing_over.raise();
        }
        if last_flush.elapsed() >= INTERVAL_FLUSH || phase == Phase::Stopped {
            let mut interval = executor.interval.borrow_mut();
            if !interval.is_empty() {
                executor.shared.add_interval(&interval);
                interval.reset();
            }
            last_flush = Instant::now();
        }
        if phase == Phase::Stopped {
            executor.stop.raise();
        }
        if executor.finished.is_raised() {
            executor.shared.withdraw_nudge(executor.index);
            return;
        }
        future::or(
            glommio::timer::sleep(PHASE_POLL),
            future::or(
                executor.shared.nudged(executor.index),
                executor.finished.wait(),
            ),
        )
        .await;
    }
}

fn report(executor: &Executor) -> ExecutorReport {
    ExecutorReport {
        latency: executor.latency.borrow().clone(),
        connect: executor.connect.borrow().clone(),
        subscribers: std::mem::take(&mut *executor.subscribers.borrow_mut()),
        publishers: std::mem::take(&mut *executor.publishers.borrow_mut()),
        errors: executor.errors.borrow().clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_grouped_by_message_across_clients_and_executors() {
        let mut first = ErrorLog::default();
        first.record("connection 1", "refused".into());
        first.record("connection 2", "refused".into());
        first.record("subscriber 0", "closed".into());
        let mut second = ErrorLog::default();
        second.record("connection 9", "refused".into());
        first.merge(&second);
        assert_eq!(first.total, 4);
        assert_eq!(first.kinds.len(), 2);
        assert_eq!(first.kinds[0].count, 3);
        assert_eq!(first.kinds[0].first_client, "connection 1");
        let mut many = ErrorLog::default();
        for i in 0..100 {
            many.record("c", format!("error {i}"));
        }
        assert_eq!(many.kinds.len(), MAX_ERROR_KINDS);
        assert_eq!(many.total, 100);
        first.merge(&many);
        assert_eq!(first.total, 104);
    }
}
