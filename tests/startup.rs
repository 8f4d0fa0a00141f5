//! Start-up: a locked-memory limit too small for the executors, or a listener address another
//! program holds, is refused with a message that says what is wrong (and how to fix it)
//! instead of a panic or a hang; and the executors are placed on CPUs as `pin_cores` says.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A command for the broker whose locked-memory limit (soft and hard) is `bytes`.
fn limited(bytes: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hydrant"));
    // SAFETY: setrlimit is async-signal-safe and only touches the child being spawned.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

#[test]
fn too_little_locked_memory_fails_with_an_actionable_message() {
    let mut command = limited(512 * 1024);
    command.args(["--bind", "127.0.0.1:0", "--cores", "2"]);
    let output = command.output().expect("run hydrant");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "must refuse to start: {stderr}");
    assert_eq!(
        output.status.code(),
        Some(1),
        "a clean error exit, not a panic (101) or a signal: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in ["locked-memory limit", "512 KiB", "ulimit -l", "io_memory"] {
        assert!(
            stderr.contains(needle),
            "message names `{needle}`: {stderr}"
        );
    }
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("ready"),
        "never reports ready"
    );
}

/// Longest a broker may take to say it is ready (a hang guard, not a performance assertion).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the broker with `command` (plus `--bind 127.0.0.1:0 --cores 2`) and a configuration
/// file holding `config`, waits for its ready line, hands its pid to `while_ready`, and stops
/// it. Returns what `while_ready` returned (`None` if the broker never became ready) and the
/// broker's standard error.
fn while_ready<T>(
    mut command: Command,
    tag: &str,
    config: &str,
    while_ready: impl FnOnce(u32) -> T,
) -> (Option<T>, String) {
    let path =
        std::env::temp_dir().join(format!("hydrant-startup-{tag}-{}.toml", std::process::id()));
    std::fs::write(&path, config).expect("write config");
    command.args(["--bind", "127.0.0.1:0", "--cores", "2", "--config"]);
    command.arg(&path);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("run hydrant");
    let stdout = child.stdout.take().expect("piped stdout");
    // Read on a thread of its own, so that a broker that never gets ready fails the test
    // instead of hanging it.
    let (ready_tx, ready_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("hydrant: ready") {
                let _ = ready_tx.send(());
            }
        }
    });
    let ready = ready_rx.recv_timeout(READY_TIMEOUT).is_ok();
    let seen = ready.then(|| while_ready(child.id()));
    let _ = child.kill();
    let status = child.wait().expect("reap hydrant");
    let _ = reader.join();
    let _ = std::fs::remove_file(&path);
    let mut stderr = format!("(exit: {status}) ");
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (seen, stderr)
}

#[test]
fn a_smaller_io_memory_starts_within_a_small_limit() {
    // 2 cores x (64 KiB + ring margin) fits in 1 MiB: the check is not stricter than needed.
    let (ready, stderr) = while_ready(limited(1024 * 1024), "io", "io_memory = 65536\n", |_| ());
    assert!(
        ready.is_some(),
        "broker must start with io_memory = 64 KiB under a 1 MiB limit: {stderr}"
    );
}

/// `Cpus_allowed_list` of a `/proc` status file: the CPUs a thread may run on, e.g. `0-1`.
fn allowed_cpus(status_file: &Path) -> String {
    let status = std::fs::read_to_string(status_file).expect("read a /proc status file");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .expect("the status file lists the allowed CPUs")
        .trim()
        .to_owned()
}

/// Where the broker's threads may run: the process's allowed CPUs, and for each executor
/// thread (named `hydrant-<shard>-<n>` by glommio) its shard and its allowed CPUs.
fn executor_cpus(pid: u32) -> (String, Vec<(String, String)>) {
    let process = allowed_cpus(Path::new(&format!("/proc/{pid}/status")));
    let mut executors = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("list the threads");
    for task in tasks.map_while(Result::ok) {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let Some(rest) = name.trim().strip_prefix("hydrant-") else {
            continue;
        };
        let shard: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !shard.is_empty() {
            executors.push((shard, allowed_cpus(&task.path().join("status"))));
        }
    }
    (process, executors)
}

#[test]
fn executors_may_run_on_any_cpu_by_default() {
    let command = Command::new(env!("CARGO_BIN_EXE_hydrant"));
    let (seen, stderr) = while_ready(command, "unpinned", "", executor_cpus);
    let (process, executors) = seen.unwrap_or_else(|| panic!("broker must start: {stderr}"));
    let shards: HashSet<&str> = executors.iter().map(|(shard, _)| shard.as_str()).collect();
    assert_eq!(shards.len(), 2, "one executor per core: {executors:?}");
    // On a one-CPU machine pinned and unpinned look the same; everywhere else a pinned
    // executor would list one CPU where the process lists several.
    for (shard, cpus) in &executors {
        assert_eq!(
            cpus, &process,
            "shard {shard}'s executor may run wherever the process may"
        );
    }
}

/// The CPUs of a `Cpus_allowed_list` value such as `0-3,6`.
fn cpu_list(text: &str) -> HashSet<u32> {
    let number = |part: &str| part.trim().parse::<u32>().expect("a CPU number");
    let mut cpus = HashSet::new();
    for range in text.split(',') {
        match range.split_once('-') {
            Some((first, last)) => cpus.extend(number(first)..=number(last)),
            None => {
                cpus.insert(number(range));
            }
        }
    }
    cpus
}

/// With `pin_cores = true`: the CPU of each shard, after checking that every thread of a shard
/// is pinned to the same single CPU, one the process may use.
fn pinned_shards(command: Command, tag: &str) -> (String, HashMap<String, String>) {
    let (seen, stderr) = while_ready(command, tag, "pin_cores = true\n", executor_cpus);
    let (process, executors) = seen.unwrap_or_else(|| panic!("broker must start: {stderr}"));
    let allowed = cpu_list(&process);
    let mut cpu_of_shard: HashMap<String, String> = HashMap::new();
    for (shard, cpus) in executors {
        assert!(
            cpus.chars().all(|c| c.is_ascii_digit()),
            "shard {shard}'s executor is pinned to one CPU, not {cpus}"
        );
        assert!(
            allowed.is_superset(&cpu_list(&cpus)),
            "shard {shard} is pinned to CPU {cpus}, which the process may not use ({process})"
        );
        let first = cpu_of_shard.entry(shard.clone()).or_insert(cpus.clone());
        assert_eq!(first, &cpus, "every thread of shard {shard} on one CPU");
    }
    assert_eq!(
        cpu_of_shard.len(),
        2,
        "one executor per core: {cpu_of_shard:?}"
    );
    (process, cpu_of_shard)
}

#[test]
fn pin_cores_pins_each_executor_to_a_cpu_of_its_own() {
    let command = Command::new(env!("CARGO_BIN_EXE_hydrant"));
    let (process, cpu_of_shard) = pinned_shards(command, "pinned");
    let distinct: HashSet<&String> = cpu_of_shard.values().collect();
    if cpu_list(&process).len() > 1 {
        assert_eq!(
            distinct.len(),
            2,
            "with several CPUs allowed ({process}), the two shards get different ones: \
             {cpu_of_shard:?}"
        );
    }
}

#[test]
fn pin_cores_keeps_to_the_cpus_a_confined_process_may_use() {
    // The broker started as `taskset -c <last CPU>` would start it: both shards must be
    // pinned to that CPU, not to CPUs 0 and 1.
    let ours = cpu_list(&allowed_cpus(Path::new("/proc/self/status")));
    let last = *ours.iter().max().expect("this process may use some CPU");
    let mut command = Command::new(env!("CARGO_BIN_EXE_hydrant"));
    // SAFETY: sched_setaffinity is async-signal-safe and only touches the child being spawned;
    // an all-zero cpu_set_t is a valid empty set, and `last` is below CPU_SETSIZE (the kernel
    // listed it).
    unsafe {
        command.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(last as usize, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (process, cpu_of_shard) = pinned_shards(command, "confined");
    assert_eq!(process, last.to_string(), "the broker runs confined");
    for (shard, cpu) in &cpu_of_shard {
        assert_eq!(
            cpu,
            &last.to_string(),
            "shard {shard} stays on the one CPU allowed"
        );
    }
}

#[test]
fn an_address_another_program_listens_on_is_refused_with_its_reason() {
    // Held without SO_REUSEPORT, as Mosquitto holds its port: every shard's bind fails, and
    // the broker says so and exits instead of serving part of its listeners or hanging.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let addr = taken.local_addr().expect("the held address");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hydrant"))
        .args(["--bind", &addr.to_string(), "--cores", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hydrant");
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    while child.try_wait().expect("poll hydrant").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the broker neither served nor exited within {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("reap hydrant");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a clean error exit, not a panic (101) or a signal: {stderr}"
    );
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "names the address: {stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("ready"),
        "never reports ready"
    );
    drop(taken);
}
