//! Black-box runs of the generator against the real hydrant broker (and against fakes for the
//! failure cases): the delivery accounting must add up, provoked loss must be reported as loss,
//! and bad input must end quickly with a clear error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs against a real broker one at a time: a flood test beside a counting test on a 2-core
/// machine would starve both of CPU and turn delays into apparent loss.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the [`SERIAL`] lock (a failed test does not block the others).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Longest any generator run of these tests may take.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// The hydrant binary: `HYDRANT_BIN`, else the one built beside this generator (same target
/// directory and profile), else the workspace's `target/debug/hydrant` (built if missing).
fn hydrant_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HYDRANT_BIN") {
        return PathBuf::from(path);
    }
    let sibling = Path::new(env!("CARGO_BIN_EXE_hydrant-loadtest")).with_file_name("hydrant");
    if sibling.exists() {
        return sibling;
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let binary = workspace.join("target/debug/hydrant");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "hydrant", "--bin", "hydrant"])
            .current_dir(&workspace)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the hydrant binary failed");
    }
    binary
}

/// A hydrant broker on a free loopback port, stopped when dropped.
struct Broker {
    child: Child,
    port: u16,
    _config: Option<tempfile_path::TempPath>,
}

impl Broker {
    fn start(config: Option<&str>) -> Broker {
        let config =
            config.map(|text| tempfile_path::TempPath::with_contents("hydrant.toml", text));
        let mut command = Command::new(hydrant_binary());
        command.args(["--bind", "127.0.0.1:0", "--cores", "2"]);
        if let Some(path) = &config {
            command.arg("--config").arg(path.path());
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("hydrant starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut port = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = ready
                .recv_timeout(left)
                .expect("hydrant prints its port and readiness");
            if let Some(rest) = line.strip_prefix("hydrant: listening on 127.0.0.1:") {
                port = rest.split_whitespace().next().and_then(|p| p.parse().ok());
            }
            if line.starts_with("hydrant: ready") {
                break;
            }
        }
        Broker {
            child,
            port: port.expect("hydrant printed its port"),
            _config: config,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Temporary files without another crate.
mod tempfile_path {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static NEXT: AtomicUsize = AtomicUsize::new(0);

    /// A file removed when dropped.
    pub struct TempPath(PathBuf);

    impl TempPath {
        pub fn new(name: &str) -> TempPath {
            let unique = NEXT.fetch_add(1, Ordering::Relaxed);
            TempPath(std::env::temp_dir().join(format!(
                "hydrant-loadtest-{}-{unique}-{name}",
                std::process::id()
            )))
        }

        pub fn with_contents(name: &str, contents: &str) -> TempPath {
            let path = TempPath::new(name);
            std::fs::write(&path.0, contents).expect("temp file written");
            path
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Runs the generator with `args`, killing it after [`RUN_LIMIT`].
fn generator(args: &[String]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hydrant-loadtest"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("generator starts");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("generator status").is_some() {
            return child.wait_with_output().expect("generator output");
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let output = child.wait_with_output().expect("generator output");
            panic!(
                "generator did not finish within {RUN_LIMIT:?}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a scenario against `port` and returns (stdout, JSON report).
fn run_json(scenario: &[&str], port: u16) -> (String, Value) {
    let json = tempfile_path::TempPath::new("report.json");
    let mut args: Vec<String> = scenario.iter().map(|s| s.to_string()).collect();
    args.extend([
        "--port".into(),
        port.to_string(),
        "--quiet".into(),
        "--json".into(),
        json.path().display().to_string(),
    ]);
    let output = generator(&args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "generator failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(json.path()).expect("JSON report written");
    (
        stdout,
        serde_json::from_str(&text).expect("JSON report parses"),
    )
}

fn number(report: &Value, pointer: &str) -> u64 {
    report
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing in {report:#}"))
}

#[test]
fn fanout_counts_add_up() {
    let _serial = serial();
    let broker = Broker::start(None);
    let (stdout, report) = run_json(
        &[
            "fanout",
            "--publishers",
            "2",
            "--subscribers",
            "5",
            "--qos",
            "1",
            "--rate",
            "400",
            "--warmup",
            "500ms",
            "--duration",
            "2s",
        ],
        broker.port,
    );
    let sent = number(&report, "/messages/sent");
    assert!(
        sent >= 1200,
        "sent {sent}: 2 publishers at 400/s for 2 s\n{stdout}"
    );
    assert!(
        number(&report, "/messages/sent_total") > sent,
        "warm-up messages are not counted"
    );
    assert_eq!(number(&report, "/messages/expected"), sent * 5, "{stdout}");
    assert_eq!(number(&report, "/messages/delivered"), sent * 5, "{stdout}");
    assert_eq!(number(&report, "/messages/unique"), sent * 5);
    for field in ["lost", "duplicated", "reordered", "unexpected"] {
        assert_eq!(
            number(&report, &format!("/messages/{field}")),
            0,
            "{field}\n{stdout}"
        );
    }
    assert_eq!(number(&report, "/messages/pairs"), 10);
    assert_eq!(number(&report, "/latency/count"), sent * 5);
    assert_eq!(number(&report, "/connect/connections"), 7);
    assert_eq!(number(&report, "/connect/errors"), 0);
    assert!(stdout.contains("lost                        0"), "{stdout}");
}

#[test]
fn pymqttbench_original_and_intended_runs() {
    let _serial = serial();
    let broker = Broker::start(None);
    let (stdout, report) = run_json(&["pymqttbench", "--brief"], broker.port);
    let brief = stdout.lines().next().expect("a brief line");
    let fields: Vec<&str> = brief.split(':').collect();
    assert_eq!(fields.len(), 10, "{brief}");
    assert_eq!(&fields[..2], ["10", "10"]);
    for field in &fields[2..] {
        assert!(field.parse::<f64>().is_ok() || *field == "inf", "{brief}");
    }
    // 10 publishers × 10 messages, each to 10 subscribers; 0-byte payloads are only counted.
    assert_eq!(number(&report, "/messages/sent"), 100);
    assert_eq!(number(&report, "/messages/expected"), 1000);
    assert_eq!(number(&report, "/messages/delivered"), 1000, "{stdout}");
    assert_eq!(number(&report, "/messages/lost"), 0);
    assert_eq!(report["messages"]["untracked"], true);
    assert!(report["latency"].is_null());
    assert_eq!(number(&report, "/pymqttbench/failed_subscribers"), 0);
    assert_eq!(number(&report, "/connect/connections"), 110);

    let (stdout, report) = run_json(
        &[
            "pymqttbench",
            "--intended",
            "--qos",
            "1",
            "--msg-size",
            "256",
            "--pub-clients",
            "4",
            "--pub-count",
            "5",
            "--sub-clients",
            "3",
            "--sub-count",
            "20",
        ],
        broker.port,
    );
    assert!(
        stdout.starts_with("[ran with 3 subscribers and 4 publishers]"),
        "{stdout}"
    );
    assert_eq!(number(&report, "/messages/expected"), 60);
    assert_eq!(number(&report, "/messages/delivered"), 60, "{stdout}");
    assert_eq!(number(&report, "/messages/lost"), 0);
    assert_eq!(number(&report, "/latency/count"), 60);
    assert_eq!(report["messages"]["untracked"], false);
    assert_eq!(number(&report, "/pymqttbench/failed_subscribers"), 0);
}

#[test]
fn provoked_loss_is_reported_as_loss() {
    let _serial = serial();
    // A one-message queue per client (with room in bytes for that message): a QoS 0 flood to
    // many subscribers must overflow it, while some messages still get through.
    let broker = Broker::start(Some(
        "[limits]\nmax_queued_messages = 1\nmax_queued_bytes = 4096\n",
    ));
    let (stdout, report) = run_json(
        &[
            "fanout",
            "--subscribers",
            "20",
            "--qos",
            "0",
            "--size",
            "512",
            "--warmup",
            "0",
            "--duration",
            "2s",
            "--drain-timeout",
            "3s",
        ],
        broker.port,
    );
    let expected = number(&report, "/messages/expected");
    let unique = number(&report, "/messages/unique");
    let lost = number(&report, "/messages/lost");
    assert!(
        lost > 0,
        "a flood through one-message queues lost nothing?\n{stdout}"
    );
    assert!(
        unique > 0,
        "nothing was delivered: the run shows loss but not the accounting of deliveries\n{stdout}"
    );
    assert_eq!(
        unique + lost,
        expected,
        "every expected message is delivered or lost"
    );
    assert_eq!(number(&report, "/messages/duplicated"), 0);
    assert!(number(&report, "/messages/pairs_with_loss") > 0);
    assert!(report["anomalous_pairs"]
        .as_array()
        .is_some_and(|p| !p.is_empty()));
    assert!(report["messages"]["loss_percent"].as_f64().unwrap_or(0.0) > 0.0);
}

/// Stops a process (SIGSTOP) until dropped (SIGCONT), so a failing test never leaves it frozen.
struct Frozen(u32);

impl Frozen {
    fn new(pid: u32) -> Frozen {
        // SAFETY: kill only sends a signal to the broker process this test started.
        let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
        assert_eq!(sent, 0, "SIGSTOP to the broker");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGCONT) };
    }
}

/// A broker that stops answering mid-run (SIGSTOP: connections stay open, nothing is read or
/// written) must not hold the generator: blocked writes, unanswered reads and closes that get
/// no answer are all bounded, and the run ends within its duration + drain + the generator's
/// stop grace, reporting the loss (or failing with a clear error).
#[test]
fn a_broker_that_stops_answering_mid_run_ends_the_run_in_bounded_time() {
    let _serial = serial();
    // Duration 3 s + drain 1 s + the generator's 5 s grace for the stop, and a margin.
    let bound = Duration::from_secs(12);
    for qos in ["0", "1"] {
        let broker = Broker::start(None);
        let json = tempfile_path::TempPath::new("frozen-broker.json");
        let args: Vec<String> = [
            "fanout",
            "--publishers",
            "2",
            "--subscribers",
            "4",
            "--qos",
            qos,
            "--size",
            "1024",
            "--warmup",
            "0",
            "--duration",
            "3s",
            "--drain-timeout",
            "1s",
            "--connect-timeout",
            "2s",
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "--port".into(),
            broker.port.to_string(),
            "--broker-pid".into(),
            broker.child.id().to_string(),
            "--json".into(),
            json.path().display().to_string(),
        ])
        .collect();
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_hydrant-loadtest"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("generator starts");
        std::thread::sleep(Duration::from_secs(1));
        let frozen = Frozen::new(broker.child.id());
        while child.try_wait().expect("generator status").is_none() {
            if started.elapsed() > bound {
                let _ = child.kill();
                let output = child.wait_with_output().expect("generator output");
                panic!(
                    "QoS {qos}: the generator still ran {bound:?} after it started, its broker \
                     stopped\nstderr:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = started.elapsed();
        let output = child.wait_with_output().expect("generator output");
        drop(frozen);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            let text = std::fs::read_to_string(json.path()).expect("JSON report written");
            let report: Value = serde_json::from_str(&text).expect("JSON report parses");
            assert!(
                number(&report, "/messages/lost") > 0,
                "QoS {qos}: a broker stopped for most of the window lost nothing?\n{stdout}"
            );
            assert_eq!(report["timing"]["drain_timed_out"], true, "{stdout}");
        } else {
            assert!(
                stderr.contains("hydrant-loadtest: error:"),
                "QoS {qos}: failed without a clear error ({took:?})\nstderr:\n{stderr}"
            );
        }
    }
}

#[test]
fn unreachable_broker_is_a_quick_clear_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("free port");
        listener.local_addr().expect("address").port()
    };
    let started = Instant::now();
    let output = generator(&[
        "fanout".into(),
        "--port".into(),
        port.to_string(),
        "--quiet".into(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to 127.0.0.1:"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn refused_connect_is_a_clear_error() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("free port");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            let mut connect = [0u8; 256];
            let _ = stream.read(&mut connect);
            // CONNACK, return code 5: not authorized.
            let _ = stream.write_all(&[0x20, 0x02, 0x00, 0x05]);
        }
    });
    let output = generator(&[
        "fanout".into(),
        "--port".into(),
        port.to_string(),
        "--subscribers".into(),
        "3".into(),
        "--username".into(),
        "someone".into(),
        "--quiet".into(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not authorized"), "{stderr}");
}

#[test]
fn impossible_parameters_are_refused_before_connecting() {
    let output = generator(&["fanout".into(), "--size".into(), "8".into()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("impossible parameters"), "{stderr}");
    let output = generator(&["fanout".into(), "--qos".into(), "3".into()]);
    assert_eq!(output.status.code(), Some(2), "usage errors exit with 2");
}
