//! The generator over TLS, WebSocket and WebSocket over TLS, against Debian's Mosquitto
//! (`/usr/sbin/mosquitto`, or `MOSQUITTO_BIN`) configured by each test with one listener per
//! transport on 127.0.0.1, with certificates made here by rcgen: every run's accounting must add
//! up (sent = delivered, nothing lost), and a refused certificate, a refused upgrade or the
//! wrong kind of listener must end the run quickly with one clear line and exit status 1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::Value;

/// One broker and one generator at a time: two runs side by side on a 2-core machine would
/// starve each other.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the [`SERIAL`] lock (a failed test does not block the others).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Longest any generator run of these tests may take.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "hydrant-loadtest-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("temp dir created");
        TempDir(path)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.file(name);
        std::fs::write(&path, contents).expect("temp file written");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The PEM files of a test: the broker's CA and certificate (valid for localhost and
/// 127.0.0.1), another CA that signed nothing here, and a client CA with a client certificate.
struct Certificates {
    dir: TempDir,
}

impl Certificates {
    fn new() -> Certificates {
        let dir = TempDir::new("certs");
        let (ca, ca_key) = certificate_authority("hydrant-loadtest test CA");
        let (other, _) = certificate_authority("an unrelated CA");
        let (client_ca, client_ca_key) = certificate_authority("hydrant-loadtest client CA");
        let mut server = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        server
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("address")));
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().expect("key");
        let server = server
            .signed_by(&server_key, &ca, &ca_key)
            .expect("server certificate");
        let mut client = CertificateParams::new(Vec::<String>::new()).expect("params");
        client
            .distinguished_name
            .push(DnType::CommonName, "loadtest-client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate().expect("key");
        let client = client
            .signed_by(&client_key, &client_ca, &client_ca_key)
            .expect("client certificate");
        dir.write("ca.pem", &ca.pem());
        dir.write("other-ca.pem", &other.pem());
        dir.write("client-ca.pem", &client_ca.pem());
        dir.write("server.pem", &server.pem());
        dir.write("server.key", &server_key.serialize_pem());
        dir.write("client.pem", &client.pem());
        dir.write("client.key", &client_key.serialize_pem());
        Certificates { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.file(name).display().to_string()
    }
}

/// A self-signed CA certificate and its key.
fn certificate_authority(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("key");
    let certificate = params.self_signed(&key).expect("CA certificate");
    (certificate, key)
}

/// The Mosquitto binary.
fn mosquitto_binary() -> PathBuf {
    let path = std::env::var_os("MOSQUITTO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/mosquitto"));
    assert!(
        path.exists(),
        "{} is missing: install Debian's mosquitto (scripts/install-test-deps.sh) or set \
         MOSQUITTO_BIN",
        path.display()
    );
    path
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("free port");
    listener.local_addr().expect("address").port()
}

/// A Mosquitto broker with one listener per transport, stopped when dropped.
struct Mosquitto {
    child: Child,
    /// Plain MQTT (Mosquitto needs one for its WebSocket listeners to start).
    mqtt: u16,
    /// MQTT over TLS.
    tls: u16,
    /// MQTT over TLS that requires a client certificate signed by the client CA.
    tls_client_auth: u16,
    /// MQTT over WebSocket.
    ws: u16,
    /// MQTT over WebSocket over TLS.
    wss: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Mosquitto {
    fn start(certificates: &Certificates) -> Mosquitto {
        let binary = mosquitto_binary();
        let mut last_log = String::new();
        // A port taken between choosing it and Mosquitto binding it makes Mosquitto exit:
        // try again with new ports.
        for _ in 0..3 {
            let dir = TempDir::new("mosquitto");
            let (mqtt, tls, tls_client_auth, ws, wss) = (
                free_port(),
                free_port(),
                free_port(),
                free_port(),
                free_port(),
            );
            let server = format!(
                "certfile {}\nkeyfile {}\n",
                certificates.path("server.pem"),
                certificates.path("server.key")
            );
            let config = format!(
                "per_listener_settings false\nallow_anonymous true\npersistence false\n\
                 log_dest stderr\nlog_type error\nlog_type warning\n\
                 listener {mqtt} 127.0.0.1\n\
                 listener {tls} 127.0.0.1\n{server}\
                 listener {tls_client_auth} 127.0.0.1\n{server}\
                 cafile {}\nrequire_certificate true\n\
                 listener {ws} 127.0.0.1\nprotocol websockets\n\
                 listener {wss} 127.0.0.1\nprotocol websockets\n{server}",
                certificates.path("client-ca.pem"),
            );
            let config_path = dir.write("mosquitto.conf", &config);
            let log = dir.file("mosquitto.log");
            let child = Command::new(&binary)
                .arg("-c")
                .arg(&config_path)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"))
                .spawn()
                .expect("mosquitto starts");
            let mut broker = Mosquitto {
                child,
                mqtt,
                tls,
                tls_client_auth,
                ws,
                wss,
                log,
                _dir: dir,
            };
            if broker.wait_ready() {
                return broker;
            }
            last_log = broker.log();
        }
        panic!("mosquitto did not start\n{last_log}");
    }

    /// Waits until every listener accepts connections; false if Mosquitto exited.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        let ports = [self.mqtt, self.tls, self.tls_client_auth, self.ws, self.wss];
        while Instant::now() < deadline {
            if self.child.try_wait().expect("mosquitto status").is_some() {
                return false;
            }
            if ports
                .iter()
                .all(|port| TcpStream::connect(("127.0.0.1", *port)).is_ok())
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the generator with `args`, killing it after [`RUN_LIMIT`]; returns its output and how
/// long it ran.
fn generator(args: &[String]) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hydrant-loadtest"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("generator starts");
    loop {
        if child.try_wait().expect("generator status").is_some() {
            let output = child.wait_with_output().expect("generator output");
            return (output, started.elapsed());
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

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Runs `args` (which must not ask for JSON) and returns the JSON report and stderr.
fn run_json(args: &[String], broker: &Mosquitto) -> (Value, String) {
    let dir = TempDir::new("report");
    let json = dir.file("report.json");
    let mut args = args.to_vec();
    args.extend([
        "--quiet".into(),
        "--json".into(),
        json.display().to_string(),
    ]);
    let (output, _) = generator(&args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "generator failed: {}\nargs: {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}\n\
         mosquitto log:\n{}",
        output.status,
        broker.log()
    );
    let text = std::fs::read_to_string(&json).expect("JSON report written");
    (
        serde_json::from_str(&text).expect("JSON report parses"),
        stderr,
    )
}

fn number(report: &Value, pointer: &str) -> u64 {
    report
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing in {report:#}"))
}

/// Asserts that every message sent in the window reached each of `fan_out` subscribers once,
/// in order, and returns how many were sent.
fn assert_all_delivered(report: &Value, fan_out: u64, connections: u64) -> u64 {
    let sent = number(report, "/messages/sent");
    assert!(sent > 0, "nothing sent\n{report:#}");
    assert_eq!(number(report, "/messages/expected"), sent * fan_out);
    assert_eq!(
        number(report, "/messages/delivered"),
        sent * fan_out,
        "{report:#}"
    );
    assert_eq!(number(report, "/messages/unique"), sent * fan_out);
    for field in ["lost", "duplicated", "reordered", "unexpected"] {
        assert_eq!(
            number(report, &format!("/messages/{field}")),
            0,
            "{field}\n{report:#}"
        );
    }
    assert_eq!(number(report, "/connect/connections"), connections);
    assert_eq!(number(report, "/connect/errors"), 0);
    sent
}

/// The fan-out run of these tests: 2 publishers → 3 subscribers for 1.5 s at `qos`.
fn fanout(qos: &str, extra: &[&str]) -> Vec<String> {
    let mut args = strings(&[
        "fanout",
        "--publishers",
        "2",
        "--subscribers",
        "3",
        "--qos",
        qos,
        "--rate",
        "200",
        "--warmup",
        "300ms",
        "--duration",
        "1500ms",
        "--drain-timeout",
        "3s",
    ]);
    args.extend(strings(extra));
    args
}

/// The generator's stderr must be exactly one error line containing each of `needles`.
fn assert_one_clear_error(output: &Output, took: Duration, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{stderr}");
    assert!(
        lines[0].starts_with("hydrant-loadtest: error: "),
        "{stderr}"
    );
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "'{needle}' missing in:\n{stderr}"
        );
    }
    assert!(took < Duration::from_secs(8), "took {took:?}: {stderr}");
}

#[test]
fn runs_over_tls_add_up() {
    let _serial = serial();
    let certificates = Certificates::new();
    let broker = Mosquitto::start(&certificates);
    let ca = certificates.path("ca.pem");
    let port = broker.tls.to_string();
    let (report, _) = run_json(
        &fanout(
            "1",
            &[
                "--transport",
                "mqtt+tls",
                "--host",
                "localhost",
                "--port",
                &port,
                "--cafile",
                &ca,
                "--cores",
                "2",
            ],
        ),
        &broker,
    );
    assert_all_delivered(&report, 3, 5);
    assert_eq!(
        report["broker"],
        format!("mqtt+tls://localhost:{port}"),
        "the report names the transport"
    );

    // A client certificate, to a listener that requires one; the host is an address and the
    // certificate is verified for the name given by --server-name. Churning publishers make a
    // handshake per message.
    let (report, _) = run_json(
        &strings(&[
            "churn",
            "--publishers",
            "2",
            "--subscribers",
            "2",
            "--qos",
            "2",
            "--rate",
            "20",
            "--warmup",
            "200ms",
            "--duration",
            "1s",
            "--transport",
            "mqtt+tls",
            "--host",
            "127.0.0.1",
            "--server-name",
            "localhost",
            "--port",
            &broker.tls_client_auth.to_string(),
            "--cafile",
            &ca,
            "--certfile",
            &certificates.path("client.pem"),
            "--keyfile",
            &certificates.path("client.key"),
        ]),
        &broker,
    );
    let sent = number(&report, "/messages/sent");
    assert!(
        sent >= 10,
        "2 churning publishers at 20/s for 1 s sent {sent}"
    );
    assert_eq!(number(&report, "/messages/delivered"), sent * 2);
    assert_eq!(number(&report, "/messages/lost"), 0);
    assert_eq!(number(&report, "/connect/errors"), 0);
    assert!(number(&report, "/connect/connections") > sent);
}

#[test]
fn runs_over_websockets_add_up() {
    let _serial = serial();
    let certificates = Certificates::new();
    let broker = Mosquitto::start(&certificates);
    let port = broker.ws.to_string();
    for qos in ["0", "2"] {
        let (report, _) = run_json(
            &fanout(qos, &["--transport", "ws", "--port", &port]),
            &broker,
        );
        assert_all_delivered(&report, 3, 5);
        assert_eq!(report["broker"], format!("ws://127.0.0.1:{port}/mqtt"));
    }
    // Payloads of 16 KiB take frames with 16-bit lengths, both ways. (Frames with 64-bit
    // lengths are left to the frame codec's tests: Mosquitto 2.0 serves its WebSocket clients
    // 4 KiB per turn of its event loop, and takes about 2 s to pass on a 70 KB message.)
    let (report, _) = run_json(
        &strings(&[
            "fanout",
            "--publishers",
            "1",
            "--subscribers",
            "2",
            "--qos",
            "1",
            "--size",
            "16000",
            "--rate",
            "20",
            "--warmup",
            "0",
            "--duration",
            "1500ms",
            "--drain-timeout",
            "5s",
            "--transport",
            "ws",
            "--port",
            &port,
        ]),
        &broker,
    );
    assert_all_delivered(&report, 2, 3);
    // Many publishers through one wildcard subscriber: the broker's frames carry many
    // packets, and packets cross frame boundaries.
    let (report, _) = run_json(
        &strings(&[
            "fanin",
            "--publishers",
            "20",
            "--subscribers",
            "1",
            "--qos",
            "1",
            "--rate",
            "100",
            "--warmup",
            "300ms",
            "--duration",
            "1500ms",
            "--transport",
            "ws",
            "--port",
            &port,
        ]),
        &broker,
    );
    assert_all_delivered(&report, 1, 21);
}

#[test]
fn the_wss_scenario_file_runs_and_adds_up() {
    let _serial = serial();
    let certificates = Certificates::new();
    let broker = Mosquitto::start(&certificates);
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/fanout-wss.toml");
    let port = broker.wss.to_string();
    let (report, _) = run_json(
        &strings(&[
            "run",
            &file.display().to_string(),
            "--port",
            &port,
            "--cafile",
            &certificates.path("ca.pem"),
            "--subscribers",
            "4",
            "--rate",
            "200",
            "--warmup",
            "300ms",
            "--duration",
            "1500ms",
        ]),
        &broker,
    );
    assert_all_delivered(&report, 4, 5);
    assert_eq!(report["broker"], format!("wss://localhost:{port}/mqtt"));
}

#[test]
fn insecure_accepts_a_self_signed_broker_and_warns_once() {
    let _serial = serial();
    let certificates = Certificates::new();
    let broker = Mosquitto::start(&certificates);
    let (report, stderr) = run_json(
        &fanout(
            "1",
            &[
                "--transport",
                "wss",
                "--port",
                &broker.wss.to_string(),
                "--insecure",
                "--cores",
                "2",
            ],
        ),
        &broker,
    );
    assert_all_delivered(&report, 3, 5);
    assert_eq!(
        stderr.matches("--insecure").count(),
        1,
        "one warning expected:\n{stderr}"
    );
    assert!(stderr.contains("warning"), "{stderr}");
}

#[test]
fn an_untrusted_certificate_is_a_quick_clear_error() {
    let _serial = serial();
    let certificates = Certificates::new();
    let broker = Mosquitto::start(&certificates);
    let other_ca = certificates.path("other-ca.pem");
    for (transport, port) in [("mqtt+tls", broker.tls), ("wss", broker.wss)] {
        let (output, took) = generator(&fanout(
            "1",
            &[
                "--transport",
                transport,
                "--host",
                "localhost",
                "--port",
                &port.to_string(),
                "--cafile",
                &other_ca,
                "--quiet",
            ],
        ));
        assert_one_clear_error(
            &output,
            took,
            &[
                "the broker's certificate is not trusted for 'localhost'",
                &format!("it is not signed by a CA of --cafile {other_ca}"),
            ],
        );
    }
    // The right CA, the wrong name.
    let (output, took) = generator(&fanout(
        "1",
        &[
            "--transport",
            "mqtt+tls",
            "--port",
            &broker.tls.to_string(),
            "--cafile",
            &certificates.path("ca.pem"),
            "--server-name",
            "broker.example.org",
            "--quiet",
        ],
    ));
    assert_one_clear_error(
        &output,
        took,
        &["not trusted for 'broker.example.org'", "--server-name"],
    );
}

#[test]
fn a_missing_client_certificate_is_a_clear_error() {
    let _serial = serial();
    let certificates = Certificates::new();
    let broker = Mosquitto::start(&certificates);
    let (output, took) = generator(&fanout(
        "1",
        &[
            "--transport",
            "mqtt+tls",
            "--host",
            "localhost",
            "--port",
            &broker.tls_client_auth.to_string(),
            "--cafile",
            &certificates.path("ca.pem"),
            "--quiet",
        ],
    ));
    assert_one_clear_error(&output, took, &["TLS failed"]);
}

#[test]
fn the_wrong_kind_of_listener_is_a_clear_error_not_a_hang() {
    let _serial = serial();
    let certificates = Certificates::new();
    let broker = Mosquitto::start(&certificates);
    let ca = certificates.path("ca.pem");
    let plain = broker.mqtt.to_string();
    let (output, took) = generator(&fanout(
        "0",
        &[
            "--transport",
            "mqtt+tls",
            "--port",
            &plain,
            "--cafile",
            &ca,
            "--quiet",
        ],
    ));
    assert_one_clear_error(
        &output,
        took,
        &["during the TLS handshake: is this a TLS listener?"],
    );
    let (output, took) = generator(&fanout(
        "0",
        &["--transport", "ws", "--port", &plain, "--quiet"],
    ));
    assert_one_clear_error(
        &output,
        took,
        &["during the WebSocket upgrade: is this a WebSocket listener?"],
    );
    // A WebSocket listener spoken to in plain MQTT answers in HTTP.
    let (output, took) = generator(&fanout(
        "0",
        &[
            "--port",
            &broker.ws.to_string(),
            "--connect-timeout",
            "1s",
            "--quiet",
        ],
    ));
    assert_one_clear_error(
        &output,
        took,
        &["the broker answered in HTTP: is this a WebSocket listener? (--transport ws or wss)"],
    );
}

/// A listener that answers every connection with `answer` and closes it; and one that accepts
/// and never says anything. Returns the port.
fn fake_server(answer: Option<&'static [u8]>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("free port");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            match answer {
                Some(answer) => {
                    let mut request = [0u8; 1024];
                    let _ = stream.read(&mut request);
                    let _ = stream.write_all(answer);
                }
                None => held.push(stream),
            }
        }
    });
    port
}

#[test]
fn a_refused_websocket_upgrade_is_a_clear_error() {
    let port = fake_server(Some(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ));
    let (output, took) = generator(&fanout(
        "0",
        &[
            "--transport",
            "ws",
            "--port",
            &port.to_string(),
            "--ws-path",
            "/wrong",
            "--quiet",
        ],
    ));
    assert_one_clear_error(
        &output,
        took,
        &["the broker refused the WebSocket upgrade: HTTP 404 Not Found (check --ws-path)"],
    );
}

#[test]
fn a_silent_listener_ends_the_handshake_at_the_connect_timeout() {
    let port = fake_server(None).to_string();
    for (transport, step) in [
        ("mqtt+tls", "the TLS handshake"),
        ("ws", "the WebSocket upgrade"),
    ] {
        let (output, took) = generator(&fanout(
            "0",
            &[
                "--transport",
                transport,
                "--port",
                &port,
                "--insecure",
                "--connect-timeout",
                "1s",
                "--quiet",
            ]
            .into_iter()
            .filter(|arg| transport == "mqtt+tls" || *arg != "--insecure")
            .collect::<Vec<_>>(),
        ));
        let stderr = String::from_utf8_lossy(&output.stderr);
        // --insecure prints its warning first; the error is the last line.
        let error = stderr.lines().last().unwrap_or_default();
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            error.contains(&format!("timed out after 1s waiting for {step}")),
            "{stderr}"
        );
        assert!(took < Duration::from_secs(8), "took {took:?}");
    }
}
