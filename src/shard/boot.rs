//! Starting and stopping the shards: start-up checks, one glommio executor per core (pinned to
//! its CPU only when `pin_cores` is set), the mesh that links them, every listener bound on
//! every shard, the metrics tasks (and the metrics HTTP listener on the aggregating core), a
//! reload of the listeners' files on SIGHUP, and a clean shutdown on SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use thiserror::Error;

use super::observe::spawn_observers;
use super::persistence;
use super::{DropWatches, Peers, Shard, ShardMsg, CLOCK_TICK, DROP_WATCH_TICKS};
use crate::config::Config;
use crate::connection::{self, CloseReason};
use crate::listener::{
    self, AccessFiles, ListenerFileError, ListenerState, PerIpLimits, ReloadSource,
};
use crate::metrics::{bind_http_listener, HttpError, AGGREGATOR_CORE};
use crate::transport::parked::ParkingLot;

/// Capacity of each shard-to-shard channel, in messages.
pub const MESH_CHANNEL_CAPACITY: usize = 4096;

/// Most deliveries a link from another core hands over per turn among the core's readers (see
/// `pacing`), fewer when a queue falls behind meanwhile: about one 4 KiB read's worth of small
/// publishes, as a connection's turn.
const LINK_TURN: usize = 64;

/// Longest a shard waits at shutdown for its connections to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Why the broker could not start. Each message says what is wrong and how to fix it.
#[derive(Debug, Error)]
pub enum BootError {
    /// The kernel refuses io_uring.
    #[error("io_uring is not available: {0}")]
    IoUring(String),
    /// The locked-memory limit is below what the executors need.
    #[error(
        "the locked-memory limit (ulimit -l) is {have_kib} KiB, but {cores} core(s) x io_memory \
         {io_memory_kib} KiB need {need_kib} KiB. Raise the limit (`ulimit -l {need_kib}` in the \
         shell, LimitMEMLOCK= in a systemd unit, memlock in /etc/security/limits.conf, \
         --ulimit memlock=... for a container), or lower `io_memory` or `--cores`"
    )]
    LockedMemory {
        /// The current limit.
        have_kib: u64,
        /// What is needed.
        need_kib: u64,
        /// Shards to start.
        cores: usize,
        /// Configured io_memory per shard.
        io_memory_kib: u64,
    },
    /// A listener address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The system's reason.
        source: std::io::Error,
    },
    /// An executor could not be started.
    #[error("cannot start the executor of core {core}: {reason}")]
    Executor {
        /// The shard index.
        core: usize,
        /// glommio's reason.
        reason: String,
    },
    /// A shard stopped during start-up without saying why.
    #[error("a shard stopped during start-up")]
    ShardStopped,
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// A listener's password, ACL, certificate or key file could not be loaded.
    #[error("{0}")]
    ListenerFile(#[from] ListenerFileError),
    /// The credential cache could not be keyed (the system's random source failed).
    #[error("cannot set up the credential cache: {0}")]
    CredentialCache(String),
    /// The metrics HTTP listener (`[metrics] http_listener`) could not be bound.
    #[error("{0}")]
    MetricsListener(#[from] HttpError),
}

/// Number of shards for a configured `cores` value (0 = one per CPU the process may use, as
/// `available_parallelism` counts them: online CPUs narrowed by the affinity mask and by a
/// cgroup's CPU quota).
pub fn shard_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The CPUs this process may run on, in ascending order: every online CPU unless `taskset` or
/// a cgroup cpuset narrowed the process's affinity mask. Empty if the mask cannot be read.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero `cpu_set_t` is a valid empty set; `sched_getaffinity` writes at most
    // the size it is given into it, and `CPU_ISSET` only reads it within `CPU_SETSIZE`.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        let size = usize::try_from(libc::CPU_SETSIZE).unwrap_or(0);
        (0..size)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// The CPU shard `index` is pinned to, given the CPUs the process may use (`None`: unpinned):
/// shard N on the N-th allowed CPU, wrapping round when there are more shards than CPUs. The
/// N-th allowed, not CPU N: a process confined to CPUs 2 and 3 must not be pinned to 0 and 1.
fn pinned_cpu(index: usize, allowed: &[usize]) -> Option<usize> {
    allowed.get(index.checked_rem(allowed.len())?).copied()
}

/// Checks that io_uring works and that the locked-memory limit fits the executors, raising the
/// soft limit to the hard one when that is enough.
pub fn preflight(config: &Config, cores: usize) -> Result<(), BootError> {
    check_io_uring()?;
    check_locked_memory(cores, config.io_memory)
}

fn check_io_uring() -> Result<(), BootError> {
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        match text.trim() {
            "2" => {
                return Err(BootError::IoUring(
                    "it is disabled by the kernel.io_uring_disabled sysctl (2); run \
                     `sysctl kernel.io_uring_disabled=0` as root"
                        .into(),
                ))
            }
            "1" => tracing::info!(
                "kernel.io_uring_disabled is 1: io_uring works only for members of kernel.io_uring_group"
            ),
            _ => {}
        }
    }
    // The parameters block of io_uring_setup(2) is 120 bytes; zeroed means "defaults".
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes only the 120-byte block we pass, which lives
    // for the whole call; the returned descriptor is closed right away.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        let error = std::io::Error::last_os_error();
        let hint = match error.raw_os_error() {
            Some(libc::ENOSYS) => "this kernel has no io_uring; hydrant needs Linux 5.8 or newer",
            Some(libc::EPERM) => {
                "the kernel or a seccomp policy forbids it (container runtimes often block \
                 io_uring: allow the io_uring_* syscalls, or set kernel.io_uring_disabled=0)"
            }
            Some(libc::ENOMEM) => "not enough locked memory for a ring: raise ulimit -l",
            _ => "io_uring_setup failed",
        };
        return Err(BootError::IoUring(format!("{hint} ({error})")));
    }
    // SAFETY: `fd` is a descriptor we own and do not use again.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

fn check_locked_memory(cores: usize, io_memory: usize) -> Result<(), BootError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Ok(());
    }
    // Registered buffers plus a margin for the rings of each executor.
    let need = (cores as u64) * (io_memory as u64 + 256 * 1024);
    if limit.rlim_cur == libc::RLIM_INFINITY || limit.rlim_cur >= need {
        return Ok(());
    }
    if limit.rlim_max == libc::RLIM_INFINITY || limit.rlim_max >= need {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one `rlimit` from the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } == 0 {
            return Ok(());
        }
    }
    Err(BootError::LockedMemory {
        have_kib: limit.rlim_cur / 1024,
        need_kib: need.div_ceil(1024),
        cores,
        io_memory_kib: io_memory as u64 / 1024,
    })
}

/// Binds `addr` (port 0: the kernel picks one) with SO_REUSEPORT and returns the socket, which
/// holds the port (bound, not listening) until the shards have bound it too, and the address
/// with its concrete port.
fn hold_port(addr: SocketAddr) -> std::io::Result<(socket2::Socket, SocketAddr)> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    let bound = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("not an IP socket"))?;
    Ok((socket, bound))
}

/// Gives every listener on port 0 a concrete port, so that all shards bind the same one. The
/// returned sockets hold the ports until the shards have bound them.
fn resolve_ports(config: &mut Config) -> Result<Vec<socket2::Socket>, BootError> {
    let mut holders = Vec::new();
    for listener in &mut config.listener {
        if listener.bind.port() != 0 {
            continue;
        }
        let addr = listener.bind;
        let (socket, bound) = hold_port(addr).map_err(|source| BootError::Bind { addr, source })?;
        listener.bind = bound;
        holders.push(socket);
    }
    Ok(holders)
}

/// Gives a metrics HTTP listener on port 0 a concrete port, as [`resolve_ports`] does for
/// the MQTT listeners (its address is printed at start-up); returns the socket holding it.
fn resolve_metrics_port(config: &mut Config) -> Result<Option<socket2::Socket>, BootError> {
    let Some(addr) = config.metrics.http_listener.filter(|addr| addr.port() == 0) else {
        return Ok(None);
    };
    let (socket, bound) = hold_port(addr)
        .map_err(|source| BootError::MetricsListener(HttpError::Bind { addr, source }))?;
    config.metrics.http_listener = Some(bound);
    Ok(Some(socket))
}

/// Runs the broker until SIGINT or SIGTERM; returns once every shard has stopped.
pub fn run(mut config: Config) -> Result<(), BootError> {
    let cores = shard_count(config.cores);
    preflight(&config, cores)?;
    let files = AccessFiles::load(&config)?;
    let port_holders = resolve_ports(&mut config)?;
    let metrics_port_holder = resolve_metrics_port(&mut config)?;
    let config = Arc::new(config);
    let reload = Arc::new(ReloadSource::new(files));

    let shutdown = Arc::new(AtomicBool::new(false));
    watch_signals(shutdown.clone(), reload.clone(), config.clone())?;

    let allowed = if config.pin_cores {
        allowed_cpus()
    } else {
        Vec::new()
    };
    if config.pin_cores && allowed.is_empty() {
        tracing::warn!("pin_cores: cannot read the CPUs this process may use; executors unpinned");
    }
    let mesh = (cores > 1).then(|| MeshBuilder::<ShardMsg, _>::full(cores, MESH_CHANNEL_CAPACITY));
    let shared_counts: Arc<Vec<SharedListenerCounts>> = Arc::new(
        config
            .listener
            .iter()
            .map(|listener| SharedListenerCounts {
                open: Arc::new(AtomicUsize::new(0)),
                per_ip: PerIpLimits::new(
                    listener.max_connections_per_ip,
                    listener.max_connect_rate_per_ip,
                ),
            })
            .collect(),
    );
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), BootError>>();

    let mut executors = Vec::with_capacity(cores);
    for index in 0..cores {
        let config = config.clone();
        let mesh = mesh.clone();
        let shard_shutdown = shutdown.clone();
        let shared_counts = shared_counts.clone();
        let reload = reload.clone();
        let ready = ReadySignal::new(index, ready_tx.clone());
        let placement = match pinned_cpu(index, &allowed) {
            Some(cpu) => Placement::Fixed(cpu),
            None => Placement::Unbound,
        };
        let spawned = LocalExecutorBuilder::new(placement)
            .io_memory(config.io_memory)
            .name(&format!("hydrant-{index}"))
            .spawn(move || async move {
                let links = ShardLinks {
                    mesh,
                    shutdown: shard_shutdown,
                    shared_counts,
                    reload,
                };
                run_shard(index, cores, config, links, ready).await;
            });
        match spawned {
            Ok(handle) => executors.push(Some(handle)),
            Err(error) => {
                shutdown.store(true, Ordering::SeqCst);
                return Err(BootError::Executor {
                    core: index,
                    reason: error.to_string(),
                });
            }
        }
    }
    drop(ready_tx);

    let start_up = await_start_up(&ready_rx, cores, START_UP_GRACE, &shutdown);
    drop(port_holders);
    drop(metrics_port_holder);
    let mut failure = match start_up {
        StartUp::Ready => {
            let mut stdout = std::io::stdout().lock();
            for listener in &config.listener {
                let _ = writeln!(
                    stdout,
                    "hydrant: listening on {} ({})",
                    listener.bind, listener.protocol
                );
            }
            if let Some(addr) = config.metrics.http_listener {
                let _ = writeln!(stdout, "hydrant: listening on {addr} (http)");
            }
            let _ = writeln!(stdout, "hydrant: ready ({cores} cores)");
            let _ = stdout.flush();
            tracing::info!(cores, "hydrant ready");
            None
        }
        StartUp::Failed {
            error,
            all_reported: true,
        } => Some(explain_stopped_shard(error, &mut executors, EXPLAIN_GRACE)),
        // A shard that never reported may be waiting in the mesh for the one that failed,
        // and would never stop: the executors are left to the process's exit.
        StartUp::Failed {
            error,
            all_reported: false,
        } => return Err(explain_stopped_shard(error, &mut executors, EXPLAIN_GRACE)),
    };
    for (index, executor) in executors.into_iter().enumerate() {
        let Some(executor) = executor else {
            continue;
        };
        if executor.join().is_err() {
            failure.get_or_insert(BootError::Executor {
                core: index,
                reason: "the executor failed while running".into(),
            });
        }
    }
    match failure {
        Some(error) => Err(error),
        None => {
            tracing::info!("hydrant stopped");
            Ok(())
        }
    }
}

/// Sets `shutdown` on the first SIGINT or SIGTERM (a second one exits at once), and reloads
/// the listeners' files on SIGHUP: they are parsed here, on the signal thread, and each core
/// installs them at its next clock tick.
fn watch_signals(
    shutdown: Arc<AtomicBool>,
    reload: Arc<ReloadSource>,
    config: Arc<Config>,
) -> Result<(), BootError> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(BootError::Signals)?;
    std::thread::Builder::new()
        .name("hydrant-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == signal_hook::consts::SIGHUP {
                    reload_files(&reload, &config);
                    continue;
                }
                if shutdown.swap(true, Ordering::SeqCst) {
                    tracing::warn!(signal, "second signal: exiting at once");
                    std::process::exit(130);
                }
                tracing::info!(signal, "shutting down");
            }
        })
        .map_err(BootError::Signals)?;
    Ok(())
}

/// Re-reads every listener's files; a file that fails keeps its previous contents in force.
fn reload_files(reload: &ReloadSource, config: &Config) {
    let errors = reload.reload(config);
    for error in &errors {
        tracing::error!(%error, "reload failed for this file; its previous contents stay in force");
    }
    tracing::info!(
        failed_files = errors.len(),
        "SIGHUP: listener files re-read"
    );
}

/// What every shard shares with the others and the signal thread.
struct ShardLinks {
    mesh: Option<MeshBuilder<ShardMsg, glommio::channels::channel_mesh::Full>>,
    shutdown: Arc<AtomicBool>,
    /// Per listener, in `config.listener` order.
    shared_counts: Arc<Vec<SharedListenerCounts>>,
    reload: Arc<ReloadSource>,
}

/// The counts of one listener that every core updates: its open connections and, when it
/// limits them, its per-address table.
struct SharedListenerCounts {
    open: Arc<AtomicUsize>,
    per_ip: Option<Arc<PerIpLimits>>,
}

/// How long start-up waits for the other shards' reports once one shard has failed (and
/// shutdown was set, so that those past the mesh stop what they wait for and report). One still
/// waiting in the mesh for the failed shard never reports.
const START_UP_GRACE: Duration = Duration::from_secs(2);

/// A shard's start-up report to the thread that boots the broker: `Ok` once it serves, or why
/// it cannot. Dropped without a report, it reports the shard as stopped, so that start-up does
/// not wait for a shard that is gone: when the executor could not start (glommio drops the
/// shard's closure, and this with it), and, parked in its thread by [`ReadySignal::park`],
/// when the executor's thread ends by a panic in any of its tasks.
struct ReadySignal {
    /// The shard's index, named in the report of a shard that stopped.
    core: usize,
    /// Taken by the first report.
    sender: Option<mpsc::Sender<Result<(), BootError>>>,
}

thread_local! {
    /// The signal of the shard this executor thread runs, until the shard reports.
    static PARKED_SIGNAL: std::cell::RefCell<Option<ReadySignal>> =
        const { std::cell::RefCell::new(None) };
}

impl ReadySignal {
    fn new(core: usize, sender: mpsc::Sender<Result<(), BootError>>) -> Self {
        Self {
            core,
            sender: Some(sender),
        }
    }

    /// Keeps the signal in the executor's thread until [`ReadySignal::report`]: a task that
    /// panics ends the thread without dropping the shard's own task, but the thread's end
    /// drops what it keeps.
    fn park(self) {
        PARKED_SIGNAL.with(|parked| *parked.borrow_mut() = Some(self));
    }

    /// Reports how the start-up of this thread's shard went.
    fn report(report: Result<(), BootError>) {
        if let Some(signal) = PARKED_SIGNAL.with(|parked| parked.borrow_mut().take()) {
            signal.send(report);
        }
    }

    /// Reports how the shard's start-up went.
    fn send(mut self, report: Result<(), BootError>) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(report);
        }
    }
}

impl Drop for ReadySignal {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(Err(BootError::Executor {
                core: self.core,
                reason: SHARD_STOPPED.into(),
            }));
        }
    }
}

/// The reason a [`ReadySignal`] dropped without a report gives, until
/// [`explain_stopped_shard`] learns a better one.
const SHARD_STOPPED: &str = "the shard stopped during start-up";

/// Longest start-up waits to learn why a shard's executor ended (its thread is ending when
/// its signal reports it stopped).
const EXPLAIN_GRACE: Duration = Duration::from_secs(1);

/// Replaces a shard's "stopped during start-up" with why its executor ended (glommio's error,
/// or that its thread panicked), read by joining the executor within `bound`. Any other error,
/// or an executor that says nothing within `bound`, is left as it is.
fn explain_stopped_shard(
    error: BootError,
    executors: &mut [Option<glommio::ExecutorJoinHandle<()>>],
    bound: Duration,
) -> BootError {
    let core = match &error {
        BootError::Executor { core, reason } if reason == SHARD_STOPPED => *core,
        _ => return error,
    };
    let Some(executor) = executors.get_mut(core).and_then(Option::take) else {
        return error;
    };
    let ended = within(bound, move || {
        executor.join().err().map(|why| why.to_string())
    });
    match ended.flatten() {
        Some(reason) => BootError::Executor { core, reason },
        None => error,
    }
}

/// Runs `work` on a thread of its own and returns what it gives, if it does within `bound`.
/// `None` otherwise (the thread is left to finish or to the process's exit), or when no thread
/// can be started: what `work` would have said is then lost, which is logged.
fn within<T: Send + 'static>(
    bound: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (sender, outcome) = mpsc::channel();
    let started = std::thread::Builder::new()
        .name("hydrant-start-up".into())
        .spawn(move || {
            let _ = sender.send(work());
        });
    if let Err(error) = started {
        tracing::debug!(%error, "cannot start a thread to wait on");
        return None;
    }
    outcome.recv_timeout(bound).ok()
}

/// How the shards' start-up went.
#[derive(Debug)]
enum StartUp {
    /// Every shard serves.
    Ready,
    /// A shard could not start.
    Failed {
        /// The first failure reported.
        error: BootError,
        /// Whether every shard reported, so that every one will stop when told to.
        all_reported: bool,
    },
}

/// Waits for the `cores` shards' start-up reports. At the first failure it sets `shutdown`, and
/// the others have `grace` to report: a shard that waits in the mesh for the failed one never
/// will.
fn await_start_up(
    reports: &mpsc::Receiver<Result<(), BootError>>,
    cores: usize,
    grace: Duration,
    shutdown: &AtomicBool,
) -> StartUp {
    let mut failure: Option<(BootError, Instant)> = None;
    for _ in 0..cores {
        let report = match &failure {
            None => reports
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some((_, deadline)) => {
                reports.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            }
        };
        match report {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                if failure.is_none() {
                    shutdown.store(true, Ordering::SeqCst);
                    failure = Some((error, Instant::now() + grace));
                }
            }
            Err(_) => {
                // Every signal reports once before its sender is gone, so only a deadline
                // ends the wait early, and it is set by a failure.
                let error = failure.map_or(BootError::ShardStopped, |(error, _)| error);
                return StartUp::Failed {
                    error,
                    all_reported: false,
                };
            }
        }
    }
    match failure {
        None => StartUp::Ready,
        Some((error, _)) => StartUp::Failed {
            error,
            all_reported: true,
        },
    }
}

/// The life of one shard: join the mesh, bind the listeners, serve, and stop on shutdown.
async fn run_shard(
    index: usize,
    cores: usize,
    config: Arc<Config>,
    links: ShardLinks,
    ready: ReadySignal,
) {
    ready.park();
    let ShardLinks {
        mesh,
        shutdown,
        shared_counts,
        reload,
    } = links;
    // Every shard joins the mesh before anything can fail, or the others would wait forever.
    let (senders, receivers, id) = match mesh {
        Some(mesh) => match mesh.join().await {
            Ok((senders, receivers)) => {
                let id = senders.peer_id();
                (Some(senders), Some(receivers), id)
            }
            Err(_) => {
                ReadySignal::report(Err(BootError::Executor {
                    core: index,
                    reason: "could not join the shard mesh".into(),
                }));
                return;
            }
        },
        None => (None, None, 0),
    };
    let peers = Rc::new(Peers::new(id, cores, senders));
    let files = reload.current();
    let mut shard =
        Shard::new(id, cores, config.clone(), peers.clone(), shutdown).with_reload(reload);
    if config.park_after_idle_ms > 0 {
        match ParkingLot::new() {
            Ok(lot) => {
                glommio::spawn_local(lot.clone().run()).detach();
                shard = shard.with_parking(lot);
            }
            Err(error) => {
                tracing::warn!(core = index, %error, "cannot make the parking lot; quiet connections stay as they are");
            }
        }
    }
    let shard = Rc::new(shard);
    let restore = persistence::open(&shard).await;

    let mut listeners = Vec::new();
    let per_listener = config
        .listener
        .iter()
        .zip(shared_counts.iter())
        .zip(&files.listeners);
    for (index, ((listener, counts), loaded)) in per_listener.enumerate() {
        let state = match ListenerState::new(
            index,
            listener,
            &config.auth,
            loaded,
            config.limits.max_packet_size,
            counts.open.clone(),
            counts.per_ip.clone(),
        ) {
            Ok(state) => Rc::new(state),
            Err(error) => {
                ReadySignal::report(Err(BootError::CredentialCache(error.to_string())));
                return;
            }
        };
        shard.listeners.borrow_mut().push(state.clone());
        match crate::listener::bind(listener.bind) {
            Ok(bound) => listeners.push((bound, state)),
            Err(source) => {
                ReadySignal::report(Err(BootError::Bind {
                    addr: listener.bind,
                    source,
                }));
                return;
            }
        }
    }

    let http = match config.metrics.http_listener {
        Some(addr) if id == AGGREGATOR_CORE => match bind_http_listener(addr) {
            Ok(bound) => Some(bound),
            Err(error) => {
                ReadySignal::report(Err(error.into()));
                return;
            }
        },
        _ => None,
    };

    if let Some(mut receivers) = receivers {
        for (peer, mut stream) in receivers.streams() {
            let shard = shard.clone();
            glommio::spawn_local(async move {
                // Deliveries handed over since the link last waited for its turn.
                let mut turn = 0;
                while let Some(msg) = stream.next().await {
                    // A link is a reader like a connection: what it hands to the core's
                    // clients waits for its turn while a client that keeps up waits for its
                    // own (and its peer's publishers wait behind it), and a turn takes about
                    // what one read of a connection does. Everything else (replies, claims,
                    // adoptions) takes no turn, since a client whose queue holds the readers
                    // back may be waiting for one; but the channel keeps its order, so one
                    // queued behind a delivery that waits waits with it (until the valve in
                    // `pacing` lets the readers go, at most a tick or ten).
                    if msg.is_delivery() {
                        if turn == 0 || turn == LINK_TURN || shard.pacing.is_holding() {
                            shard.pacing.go().await;
                            turn = 0;
                        }
                        turn += 1;
                    }
                    match msg {
                        ShardMsg::Adopt(adoption) => {
                            connection::serve_adopted(shard.clone(), *adoption)
                        }
                        msg => shard.on_peer_message(peer, msg).await,
                    }
                }
            })
            .detach();
        }
        for peer in peers.others().collect::<Vec<_>>() {
            glommio::spawn_local(peers.clone().drain_backlog(peer)).detach();
        }
    }
    persistence::restore(&shard, restore).await;
    for (bound, state) in listeners {
        glommio::spawn_local(listener::accept_loop(shard.clone(), bound, state)).detach();
    }
    spawn_observers(&shard, http);
    // The pacing valve has a timer of its own: the housekeeping below may wait (for a will's
    // publish to another core), and must never keep the readers waiting meanwhile.
    let valve = shard.clone();
    glommio::spawn_local(async move {
        while !valve.is_shutting_down() {
            glommio::timer::sleep(CLOCK_TICK).await;
            valve.pacing.tick();
        }
    })
    .detach();
    ReadySignal::report(Ok(()));

    let mut drop_watches = DropWatches::default();
    while !shard.is_shutting_down() {
        // Housekeeping: the shard's clock (keep-alives), offline sessions, and the clients
        // that stopped losing messages.
        glommio::timer::sleep(CLOCK_TICK).await;
        shard.tick();
        shard.pick_up_reload();
        shard.expire_offline_sessions_counted();
        shard.publish_due_wills().await;
        shard.redeliver_shared_orphans().await;
        persistence::housekeeping(&shard);
        if shard.clock() % DROP_WATCH_TICKS == 0 {
            shard.watch_drops(&mut drop_watches);
        }
    }
    let open: Vec<_> = shard.connections.borrow().values().cloned().collect();
    for conn in open {
        conn.close(CloseReason::ShuttingDown);
    }
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while !shard.connections.borrow().is_empty() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    persistence::close(&shard).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_pinned_to_the_cpus_the_process_may_use_in_turn() {
        // Confined to CPUs 2 and 3 (`taskset -c 2,3`): never CPU 0 or 1.
        let allowed = [2, 3];
        let pinned: Vec<_> = (0..5).map(|index| pinned_cpu(index, &allowed)).collect();
        assert_eq!(pinned, [Some(2), Some(3), Some(2), Some(3), Some(2)]);
    }

    #[test]
    fn no_known_cpu_leaves_shards_unpinned() {
        assert_eq!(pinned_cpu(0, &[]), None);
        assert_eq!(pinned_cpu(3, &[]), None);
    }

    /// Start-up reports for `cores` shards, and the signal of each.
    fn shards(cores: usize) -> (mpsc::Receiver<Result<(), BootError>>, Vec<ReadySignal>) {
        let (sender, reports) = mpsc::channel();
        let signals = (0..cores)
            .map(|core| ReadySignal::new(core, sender.clone()))
            .collect();
        (reports, signals)
    }

    /// How start-up went by `reports` of `cores` shards, with no deadline that a test would
    /// meet.
    fn start_up_of(reports: &mpsc::Receiver<Result<(), BootError>>, cores: usize) -> StartUp {
        await_start_up(
            reports,
            cores,
            Duration::from_secs(60),
            &AtomicBool::new(false),
        )
    }

    /// Whether `start` is shard 0's failure, with every shard reported.
    fn shard_0_failed_all_reported(start: &StartUp) -> bool {
        matches!(
            start,
            StartUp::Failed {
                error: BootError::Executor { core: 0, .. },
                all_reported: true,
            }
        )
    }

    #[test]
    fn every_shard_ready_is_a_clean_start() {
        let (reports, signals) = shards(2);
        for signal in signals {
            signal.send(Ok(()));
        }
        let start = start_up_of(&reports, 2);
        assert!(matches!(start, StartUp::Ready), "{start:?}");
    }

    #[test]
    fn a_shard_that_never_ran_is_reported_and_not_waited_for() {
        // Shard 0's executor could not start, so its signal is dropped unsent; shard 1 waits
        // in the mesh for it and never reports (its signal stays alive).
        let (reports, mut signals) = shards(2);
        let waiting = signals.pop();
        drop(signals);
        let shutdown = AtomicBool::new(false);
        let start = await_start_up(&reports, 2, Duration::from_millis(50), &shutdown);
        match start {
            StartUp::Failed {
                error: BootError::Executor { core: 0, reason },
                all_reported: false,
            } => assert!(reason.contains("stopped during start-up"), "{reason}"),
            other => panic!("shard 0 stopped and shard 1 never reported, not {other:?}"),
        }
        assert!(
            shutdown.load(Ordering::SeqCst),
            "the others are told to stop"
        );
        drop(waiting);
    }

    #[test]
    fn a_shard_that_fails_leaves_the_others_time_to_report() {
        let (reports, mut signals) = shards(2);
        let running = signals.pop().expect("two signals");
        let failing = signals.pop().expect("two signals");
        failing.send(Err(BootError::Executor {
            core: 0,
            reason: "no listener".into(),
        }));
        running.send(Ok(()));
        let start = start_up_of(&reports, 2);
        assert!(
            shard_0_failed_all_reported(&start),
            "both reported, so both will stop when told to: {start:?}"
        );
    }

    #[test]
    fn a_shard_whose_thread_ends_before_it_reports_is_reported_as_stopped() {
        // A task of the shard panics while the shard waits: the executor's thread ends without
        // the shard's own task being dropped, but with what the thread parked.
        let (reports, mut signals) = shards(1);
        let signal = signals.pop().expect("one signal");
        let thread = std::thread::spawn(move || {
            signal.park();
            panic!("a task of the shard panicked");
        });
        assert!(thread.join().is_err(), "the thread ended by its panic");
        let start = start_up_of(&reports, 1);
        assert!(shard_0_failed_all_reported(&start), "{start:?}");
    }

    #[test]
    fn waiting_for_an_answer_is_bounded() {
        assert_eq!(within(Duration::from_secs(60), || 7), Some(7));
        let (_keep, never) = mpsc::channel::<()>();
        let stuck = within(Duration::from_millis(50), move || never.recv().is_ok());
        assert_eq!(stuck, None, "a join that never returns is not waited for");
    }

    #[test]
    fn a_stopped_shard_is_explained_by_its_executor() {
        // A real executor whose set-up fails in its own thread: the kernel refuses an io_uring
        // of more than 32,768 entries.
        let failing = LocalExecutorBuilder::new(Placement::Unbound)
            .ring_depth(1 << 20)
            .spawn(|| async {});
        let mut executors = match failing {
            Ok(handle) => vec![None, Some(handle)],
            Err(error) => panic!("the failure is expected in the executor's thread: {error}"),
        };
        let stopped = BootError::Executor {
            core: 1,
            reason: SHARD_STOPPED.into(),
        };
        match explain_stopped_shard(stopped, &mut executors, Duration::from_secs(30)) {
            BootError::Executor { core: 1, reason } => {
                assert!(
                    reason.contains("os error"),
                    "glommio's own reason replaces it: {reason}"
                );
            }
            other => panic!("still the executor of core 1, not {other:?}"),
        }
        let bind = BootError::ShardStopped;
        assert!(matches!(
            explain_stopped_shard(bind, &mut executors, Duration::from_secs(30)),
            BootError::ShardStopped
        ));
    }

    #[test]
    fn this_process_may_use_some_cpu() {
        let allowed = allowed_cpus();
        assert!(!allowed.is_empty(), "the affinity mask is readable here");
        assert!(
            allowed.windows(2).all(|pair| pair[0] < pair[1]),
            "{allowed:?}"
        );
    }
}
