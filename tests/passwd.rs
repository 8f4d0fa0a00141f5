//! Password files shared with Mosquitto: entries made by Debian's `mosquitto_passwd` verify in
//! hydrant, and `hydrant passwd` (the built binary) creates, updates and deletes entries that
//! hydrant and, for `$7$` entries, Mosquitto's own broker accept.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hydrant::auth::{PasswordFile, PasswordHash};

const HYDRANT: &str = env!("CARGO_BIN_EXE_hydrant");

/// Fails (never skips) when an external tool the test needs is missing.
fn require_tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed: scripts/install-test-deps.sh must install it \
             (Debian packages mosquitto and mosquitto-clients)"
        )
    })
}

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "hydrant-passwd-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temporary directory");
        Self(path)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Runs `hydrant passwd ARGS` with `stdin` as its standard input (not a terminal).
fn hydrant_passwd(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(HYDRANT)
        .arg("passwd")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hydrant passwd");
    let written = child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes());
    // A request refused before the password is read closes stdin early: the broken pipe is
    // the child's answer, which its exit status and stderr tell.
    if let Err(error) = written {
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::BrokenPipe,
            "write the password: {error}"
        );
    }
    child.wait_with_output().expect("wait for hydrant passwd")
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn mosquitto_passwd(args: &[&str]) {
    let tool = require_tool("mosquitto_passwd");
    let output = Command::new(tool)
        .args(args)
        .output()
        .expect("run mosquitto_passwd");
    assert_success(&output, "mosquitto_passwd");
}

fn load(path: &Path) -> PasswordFile {
    PasswordFile::load(path).unwrap_or_else(|e| panic!("hydrant cannot read the file: {e}"))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn mosquitto_passwd_pbkdf2_entries_verify_in_hydrant() {
    let dir = TempDir::new();
    let file = dir.file("passwd");
    mosquitto_passwd(&["-c", "-b", path_str(&file), "infra", "s3cret pass"]);
    mosquitto_passwd(&["-b", path_str(&file), "other", "other-pass"]);
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.contains("infra:$7$101$"), "{text}");
    let passwords = load(&file);
    assert!(passwords.verify("infra", b"s3cret pass"));
    assert!(passwords.verify("other", b"other-pass"));
    assert!(!passwords.verify("infra", b"s3cret"));
    assert!(!passwords.verify("infra", b"other-pass"));
    assert!(!passwords.verify("nobody", b"s3cret pass"));
}

#[test]
fn mosquitto_passwd_sha512_entries_verify_in_hydrant() {
    let dir = TempDir::new();
    let file = dir.file("passwd");
    mosquitto_passwd(&["-c", "-H", "sha512", "-b", path_str(&file), "old", "legacy"]);
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.starts_with("old:$6$"), "{text}");
    let passwords = load(&file);
    assert!(passwords.verify("old", b"legacy"));
    assert!(!passwords.verify("old", b"Legacy"));
}

#[test]
fn hydrant_passwd_creates_argon2id_entries_readable_only_by_the_owner() {
    let dir = TempDir::new();
    let file = dir.file("passwd");
    let output = hydrant_passwd(&["-c", path_str(&file), "infra"], "pw from stdin\n");
    assert_success(&output, "hydrant passwd -c");
    assert_eq!(mode(&file), 0o600);
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.starts_with("infra:$argon2id$v=19$"), "{text}");
    assert_eq!(text.lines().count(), 1);
    let passwords = load(&file);
    assert!(passwords.verify("infra", b"pw from stdin"));
    assert!(!passwords.verify("infra", b"pw from stdin\n"));
    assert!(!passwords.verify("infra", b"pw"));
}

#[test]
fn hydrant_passwd_updates_one_entry_and_keeps_the_rest() {
    let dir = TempDir::new();
    let file = dir.file("passwd");
    mosquitto_passwd(&["-c", "-b", path_str(&file), "infra", "old-pass"]);
    mosquitto_passwd(&["-b", path_str(&file), "bob", "bob-pass"]);
    let original = std::fs::read_to_string(&file).expect("read");
    let bob_line = original
        .lines()
        .find(|line| line.starts_with("bob:"))
        .expect("bob's line")
        .to_owned();
    std::fs::write(&file, format!("# managed by hand\n{original}")).expect("add a comment");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");

    let output = hydrant_passwd(&["--pbkdf2", path_str(&file), "infra"], "new-pass\r\n");
    assert_success(&output, "hydrant passwd --pbkdf2");
    assert_eq!(mode(&file), 0o640, "permissions are kept");
    let text = std::fs::read_to_string(&file).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], "# managed by hand");
    assert!(
        lines[1].starts_with("infra:$7$101$"),
        "replaced in place: {text}"
    );
    assert_eq!(lines[2], bob_line, "other users are kept byte for byte");
    let passwords = load(&file);
    assert!(passwords.verify("infra", b"new-pass"));
    assert!(!passwords.verify("infra", b"old-pass"));
    assert!(passwords.verify("bob", b"bob-pass"));

    let output = hydrant_passwd(&[path_str(&file), "carol"], "carol-pass\n");
    assert_success(&output, "hydrant passwd (new user)");
    let passwords = load(&file);
    assert_eq!(passwords.len(), 3);
    assert!(passwords.verify("carol", b"carol-pass"));
    assert!(std::fs::read_dir(&dir.0).expect("list").all(|entry| !entry
        .expect("entry")
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
}

#[test]
fn hydrant_passwd_deletes_users() {
    let dir = TempDir::new();
    let file = dir.file("passwd");
    mosquitto_passwd(&["-c", "-b", path_str(&file), "infra", "pw"]);
    mosquitto_passwd(&["-b", path_str(&file), "bob", "pw"]);
    let output = hydrant_passwd(&["-D", path_str(&file), "bob"], "");
    assert_success(&output, "hydrant passwd -D");
    let passwords = load(&file);
    assert!(passwords.contains_user("infra"));
    assert!(!passwords.contains_user("bob"));

    let before = std::fs::read(&file).expect("read");
    let output = hydrant_passwd(&["-D", path_str(&file), "bob"], "");
    assert!(!output.status.success(), "deleting a missing user fails");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"bob\" is not in"), "{stderr}");
    assert_eq!(
        std::fs::read(&file).expect("read"),
        before,
        "file unchanged"
    );
}

#[test]
fn hydrant_passwd_refuses_bad_requests_without_touching_the_file() {
    let dir = TempDir::new();
    let file = dir.file("passwd");

    let output = hydrant_passwd(&[path_str(&file), "infra"], "pw\n");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("use -c"));
    assert!(!file.exists());

    let output = hydrant_passwd(&["-c", path_str(&file), "infra"], "pw\n");
    assert_success(&output, "hydrant passwd -c");
    let before = std::fs::read(&file).expect("read");
    for (args, stdin, message) in [
        (
            vec![path_str(&file), "infra"],
            "\n",
            "the password is empty",
        ),
        (
            vec![path_str(&file), "infra"],
            "",
            "no password on standard input",
        ),
        (vec![path_str(&file), "a:b"], "pw\n", "invalid user name"),
        (
            vec!["-c", "-D", path_str(&file), "infra"],
            "",
            "cannot be used with",
        ),
    ] {
        let output = hydrant_passwd(&args, stdin);
        assert!(!output.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert_eq!(std::fs::read(&file).expect("read"), before, "{args:?}");
    }
}

/// Reads everything a child writes on a pipe, chunk by chunk, into a channel.
fn forward(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 256];
        while let Ok(n) = pipe.read(&mut buffer) {
            if n == 0 || sender.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Waits until everything received so far contains `wanted`.
fn wait_for(receiver: &mpsc::Receiver<Vec<u8>>, seen: &mut Vec<u8>, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(seen).contains(wanted) {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(chunk) => seen.extend_from_slice(&chunk),
            Err(_) => panic!(
                "no {wanted:?} from hydrant passwd; got {:?}",
                String::from_utf8_lossy(seen)
            ),
        }
    }
}

#[test]
fn hydrant_passwd_prompts_without_echo_on_a_terminal() {
    let (mut master, slave) = {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two new descriptors into the integers it is given; the name,
        // termios and winsize arguments are optional and passed as null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened by openpty and are owned by nobody else.
        unsafe {
            (
                std::fs::File::from(OwnedFd::from_raw_fd(master)),
                OwnedFd::from_raw_fd(slave),
            )
        }
    };
    let dir = TempDir::new();
    let file = dir.file("passwd");
    let mut child = {
        let mut command = Command::new(HYDRANT);
        command
            .args(["passwd", "-c", path_str(&file), "infra"])
            .stdin(Stdio::from(slave))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command.spawn().expect("start hydrant passwd")
        // `command`, and with it the parent's copy of the terminal's slave side, is dropped
        // here, so the master reads end-of-file once the child exits.
    };
    let stderr = forward(child.stderr.take().expect("piped stderr"));
    let mut seen = Vec::new();
    wait_for(&stderr, &mut seen, "Password: ");
    master
        .write_all(b"typed secret\n")
        .expect("type the password");
    wait_for(&stderr, &mut seen, "Reenter password: ");
    master.write_all(b"typed secret\n").expect("type it again");
    let status = child.wait().expect("wait for hydrant passwd");
    assert!(
        status.success(),
        "{status}: {}",
        String::from_utf8_lossy(&seen)
    );

    let mut echoed = Vec::new();
    let mut buffer = [0u8; 256];
    // After the child exits the master reads what the terminal echoed, then fails (EIO).
    while let Ok(n) = master.read(&mut buffer) {
        if n == 0 {
            break;
        }
        echoed.extend_from_slice(&buffer[..n]);
    }
    let echoed = String::from_utf8_lossy(&echoed);
    assert!(
        !echoed.contains("typed"),
        "the password was echoed: {echoed:?}"
    );
    assert!(load(&file).verify("infra", b"typed secret"));
}

/// A Mosquitto broker on a loopback port, killed when dropped.
struct Mosquitto {
    child: Child,
    port: u16,
}

impl Mosquitto {
    fn start(dir: &TempDir, password_file: &Path) -> Self {
        let broker = require_tool("mosquitto");
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("find a free port")
            .port();
        let mut config = format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n\
             persistence false\nlog_dest stderr\n",
            path_str(password_file)
        );
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // As root Mosquitto would switch to the `mosquitto` user, which cannot read a
            // 0600 file in our temporary directory.
            config.push_str("user root\n");
        }
        let config_path = dir.file("mosquitto.conf");
        std::fs::write(&config_path, config).expect("write mosquitto.conf");
        let child = Command::new(broker)
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mosquitto");
        let mut mosquitto = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if let Ok(Some(status)) = mosquitto.child.try_wait() {
                let mut log = String::new();
                if let Some(mut stderr) = mosquitto.child.stderr.take() {
                    let _ = stderr.read_to_string(&mut log);
                }
                panic!("mosquitto exited ({status}): {log}");
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        mosquitto
    }

    /// Whether `mosquitto_pub` can connect and publish with these credentials.
    fn accepts(&self, user: &str, password: &str) -> bool {
        let client = require_tool("mosquitto_pub");
        let port = self.port.to_string();
        let output = Command::new(client)
            .args(["-h", "127.0.0.1", "-p", &port, "-u", user, "-P", password])
            .args(["-t", "hydrant/test", "-m", "x", "-q", "1"])
            .output()
            .expect("run mosquitto_pub");
        output.status.success()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mosquitto_accepts_pbkdf2_entries_written_by_hydrant_passwd() {
    let dir = TempDir::new();
    let file = dir.file("passwd");
    let output = hydrant_passwd(&["-c", "--pbkdf2", path_str(&file), "infra"], "for both\n");
    assert_success(&output, "hydrant passwd -c --pbkdf2");
    // An argon2id entry in the same file: Mosquitto drops it with an error line and keeps
    // the rest, so one file can serve both brokers during a migration.
    let output = hydrant_passwd(&[path_str(&file), "modern"], "argon\n");
    assert_success(&output, "hydrant passwd (argon2id)");
    let passwords = load(&file);
    assert!(passwords.verify("infra", b"for both"));
    assert!(passwords.verify("modern", b"argon"));

    let mosquitto = Mosquitto::start(&dir, &file);
    assert!(mosquitto.accepts("infra", "for both"));
    assert!(!mosquitto.accepts("infra", "wrong"));
    assert!(!mosquitto.accepts("modern", "argon"));
}

#[test]
fn hydrant_hashes_match_the_mosquitto_tools_in_both_directions() {
    let dir = TempDir::new();
    let file = dir.file("passwd");
    let hash = PasswordHash::new_pbkdf2_sha512(b"shared", 101).expect("hash");
    std::fs::write(&file, format!("infra:{hash}\n")).expect("write");
    // mosquitto_passwd rewrites the file around an entry it adds: ours must survive intact.
    mosquitto_passwd(&["-b", path_str(&file), "added", "by-mosquitto"]);
    let passwords = load(&file);
    assert!(passwords.verify("infra", b"shared"));
    assert!(passwords.verify("added", b"by-mosquitto"));
}
