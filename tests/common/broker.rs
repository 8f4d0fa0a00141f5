//! Starts the real `hydrant` binary on 127.0.0.1:0 and observes it through its stdout (the
//! `ready` handshake) and its stderr log lines (connects, disconnects, closing reasons).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the broker may take to print `hydrant: ready` before a test gives up.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Lines of stderr printed when a test panics while this broker is alive.
const LOG_TAIL_ON_PANIC: usize = 80;

/// Distinguishes the temporary config files of brokers started by one test process.
static CONFIG_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Every stderr line the broker has written so far, shared with the collecting thread.
#[derive(Default)]
struct LogBook {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

/// A running broker process; killed when dropped.
pub struct Broker {
    child: Child,
    /// Port of the plain MQTT listener, parsed from `hydrant: listening on ...`.
    pub port: u16,
    /// The `hydrant: listening on ...` lines, in order.
    pub listening: Vec<String>,
    log: Arc<LogBook>,
    config_path: Option<PathBuf>,
    exit: Option<ExitStatus>,
}

/// Path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_hydrant")
}

/// Extracts the value of `key=` from a tracing fmt line (`key=value` or `key="value"`).
/// `reason` is special: its value runs to the end of the line because it contains spaces.
pub fn field(line: &str, key: &str) -> Option<String> {
    let needle = format!(" {key}=");
    let start = line.find(&needle)? + needle.len();
    let rest = &line[start..];
    let value = if key == "reason" {
        rest.trim_end()
    } else if let Some(quoted) = rest.strip_prefix('"') {
        return quoted.find('"').map(|end| quoted[..end].to_string());
    } else {
        rest.split(' ').next().unwrap_or("")
    };
    Some(value.trim_matches('"').to_string())
}

impl Broker {
    /// Starts the broker with `--bind 127.0.0.1:0 --cores 2` plus `args` (either default is
    /// left out when `args` already names that flag).
    pub fn start(args: &[&str]) -> Broker {
        Self::spawn(None, args)
    }

    /// Like `start`, with `toml_text` written to a temporary file passed as `--config`.
    pub fn with_config(toml_text: &str, args: &[&str]) -> Broker {
        let path = std::env::temp_dir().join(format!(
            "hydrant-test-{}-{}.toml",
            std::process::id(),
            CONFIG_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, toml_text).expect("write temporary config file");
        Self::spawn(Some(path), args)
    }

    fn spawn(config_path: Option<PathBuf>, args: &[&str]) -> Broker {
        let mut cmd = Command::new(binary());
        if !args.contains(&"--bind") {
            cmd.args(["--bind", "127.0.0.1:0"]);
        }
        if !args.contains(&"--cores") {
            cmd.args(["--cores", "2"]);
        }
        if let Some(path) = &config_path {
            cmd.arg("--config").arg(path);
        }
        cmd.args(args);
        cmd.env("RUST_LOG", "info");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary()));

        let log = Arc::new(LogBook::default());
        let stderr = child.stderr.take().expect("stderr is piped");
        let book = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut lines = book.lines.lock().unwrap_or_else(|p| p.into_inner());
                lines.push(line);
                book.grew.notify_all();
            }
        });

        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel::<String>();
        thread::spawn(move || {
            // Keeps draining after `ready` so the broker never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });

        let mut broker = Broker {
            child,
            port: 0,
            listening: Vec::new(),
            log,
            config_path,
            exit: None,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("hydrant: ready") => break,
                Ok(line) if line.starts_with("hydrant: listening on ") => {
                    broker.listening.push(line);
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "broker did not print `hydrant: ready` within {READY_TIMEOUT:?}; stderr:\n{}",
                        broker.stderr_text()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = broker.child.wait().ok();
                    thread::sleep(Duration::from_millis(100));
                    panic!(
                        "broker exited ({status:?}) before `hydrant: ready`; stderr:\n{}",
                        broker.stderr_text()
                    )
                }
            }
        }
        broker.port = broker
            .listening
            .iter()
            .find(|l| l.ends_with("(mqtt)"))
            .and_then(|l| {
                let addr = l.strip_prefix("hydrant: listening on ")?;
                let addr = addr.strip_suffix(" (mqtt)")?;
                addr.rsplit(':').next()?.parse().ok()
            })
            .unwrap_or_else(|| {
                panic!(
                    "no `hydrant: listening on 127.0.0.1:PORT (mqtt)` line before ready: {:?}",
                    broker.listening
                )
            });
        broker
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `127.0.0.1:PORT` of the MQTT listener.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// All stderr lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// All stderr so far, one string.
    pub fn stderr_text(&self) -> String {
        self.log_lines().join("\n")
    }

    /// Number of log lines so far: pass it to the `_since` waits to ignore older lines.
    pub fn log_mark(&self) -> usize {
        self.log
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Waits for a log line containing `needle`; returns it, or None after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_for_log_where_since(0, |l| l.contains(needle), timeout)
    }

    /// Waits for a log line accepted by `pred`.
    pub fn wait_for_log_where(
        &self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        self.wait_for_log_where_since(0, pred, timeout)
    }

    /// Waits for a line at index `mark` or later accepted by `pred`.
    pub fn wait_for_log_where_since(
        &self,
        mark: usize,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().unwrap_or_else(|p| p.into_inner());
        let mut checked = mark;
        loop {
            if let Some(hit) = lines.iter().skip(checked).find(|l| pred(l)) {
                return Some(hit.clone());
            }
            checked = checked.max(lines.len());
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            lines = self
                .log
                .grew
                .wait_timeout(lines, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// All `event` lines ("client connected", "client disconnected") of `client_id`, in order.
    pub fn event_lines(&self, event: &str, client_id: &str) -> Vec<String> {
        self.log_lines()
            .into_iter()
            .filter(|l| is_event_for(l, event, client_id))
            .collect()
    }

    /// Waits for the `n`-th (0-based) `event` line of `client_id`.
    pub fn wait_event_nth(
        &self,
        event: &str,
        client_id: &str,
        n: usize,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.event_lines(event, client_id).get(n) {
                return Some(line.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Core of the `n`-th (0-based) connection of `client_id`, from its `client connected` line.
    pub fn core_of_nth(&self, client_id: &str, n: usize, timeout: Duration) -> usize {
        let line = self
            .wait_event_nth("client connected", client_id, n, timeout)
            .unwrap_or_else(|| {
                panic!(
                    "no `client connected client_id={client_id}` line #{n} within {timeout:?}; stderr:\n{}",
                    self.stderr_text()
                )
            });
        field(&line, "core")
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no core=K in connect line: {line}"))
    }

    /// Core of the first connection of `client_id`.
    pub fn core_of(&self, client_id: &str, timeout: Duration) -> usize {
        self.core_of_nth(client_id, 0, timeout)
    }

    /// Waits for the `n`-th `client disconnected` line of `client_id`; returns it.
    pub fn wait_disconnected_nth(
        &self,
        client_id: &str,
        n: usize,
        timeout: Duration,
    ) -> Option<String> {
        self.wait_event_nth("client disconnected", client_id, n, timeout)
    }

    /// Waits for the first `client disconnected` line of `client_id`.
    pub fn wait_disconnected(&self, client_id: &str, timeout: Duration) -> Option<String> {
        self.wait_disconnected_nth(client_id, 0, timeout)
    }

    /// Waits for the WARN `closing connection` line of the connection from local `port`.
    pub fn wait_closing_line(&self, client_port: u16, timeout: Duration) -> Option<String> {
        let addr = format!("127.0.0.1:{client_port}");
        self.wait_for_log_where(
            |l| {
                l.contains("closing connection")
                    && field(l, "addr").as_deref() == Some(addr.as_str())
            },
            timeout,
        )
    }

    /// Sends a signal (`libc::SIGTERM`, `libc::SIGINT`) to the broker.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with the pid of a child this struct owns and has not reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits for the process to exit; None if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exit {
            return Some(status);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exit = Some(status);
                    // Let the stderr thread read what was written just before exit.
                    thread::sleep(Duration::from_millis(100));
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => return None,
            }
        }
    }
}

/// Whether `line` is the `event` line ("client connected", "client disconnected") of `id`.
pub fn is_event_for(line: &str, event: &str, id: &str) -> bool {
    line.contains(event) && field(line, "client_id").as_deref() == Some(id)
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            let lines = self.log_lines();
            let skip = lines.len().saturating_sub(LOG_TAIL_ON_PANIC);
            eprintln!(
                "---- hydrant (port {}) stderr, last {} of {} lines ----",
                self.port,
                lines.len() - skip,
                lines.len()
            );
            for line in &lines[skip..] {
                eprintln!("{line}");
            }
            eprintln!("---- end of hydrant stderr ----");
        }
        if let Some(path) = &self.config_path {
            let _ = std::fs::remove_file(path);
        }
    }
}
