//! Start-up checks: a locked-memory limit too small for the executors is refused with a
//! message that says what is wrong and how to fix it, instead of a panic.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

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

#[test]
fn a_smaller_io_memory_starts_within_a_small_limit() {
    // 2 cores x (64 KiB + ring margin) fits in 1 MiB: the check is not stricter than needed.
    let config = std::env::temp_dir().join(format!("hydrant-startup-{}.toml", std::process::id()));
    std::fs::write(&config, "io_memory = 65536\n").expect("write config");
    let mut command = limited(1024 * 1024);
    command.args(["--bind", "127.0.0.1:0", "--cores", "2", "--config"]);
    command.arg(&config);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("run hydrant");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut ready = false;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if line.starts_with("hydrant: ready") {
            ready = true;
            break;
        }
    }
    let _ = child.kill();
    let status = child.wait().expect("reap hydrant");
    let _ = std::fs::remove_file(&config);
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(
        ready,
        "broker must start with io_memory = 64 KiB under a 1 MiB limit ({status}): {stderr}"
    );
}
