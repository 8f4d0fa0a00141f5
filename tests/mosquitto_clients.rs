//! Interoperability with Debian's `mosquitto_sub` / `mosquitto_pub` (MQTT 5, 3.1.1 and 3.1).
//! The tools are required: install them with scripts/install-test-deps.sh.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::broker::field;
use common::{Broker, LOG_TIMEOUT};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::timeout;

/// Bound on any one mosquitto client process.
const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// Panics with the install hint unless `tool` is on PATH.
fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
        || Path::new(tool).is_file();
    assert!(
        found,
        "`{tool}` not found: run scripts/install-test-deps.sh"
    );
}

fn require_all() {
    for tool in ["mosquitto_sub", "mosquitto_pub", "stdbuf"] {
        require(tool);
    }
}

/// Starts a line-buffered `mosquitto_sub` with `args`; returns it and its stdout lines.
fn spawn_sub(port: u16, args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let port = port.to_string();
    let mut child = Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", &port])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mosquitto_sub");
    let stdout = child.stdout.take().expect("piped stdout");
    (child, BufReader::new(stdout).lines())
}

/// Reads lines until one contains `needle`; returns every line read. Panics on timeout/EOF.
async fn read_until(lines: &mut Lines<BufReader<ChildStdout>>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match timeout(TOOL_TIMEOUT, lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return seen;
                }
            }
            other => panic!("mosquitto_sub: no line containing {needle:?} ({other:?}); output so far: {seen:#?}"),
        }
    }
}

/// Runs `mosquitto_pub` with `args` to completion; returns its combined output.
async fn run_pub(port: u16, args: &[&str]) -> String {
    let port = port.to_string();
    let out = timeout(
        TOOL_TIMEOUT,
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("mosquitto_pub finished in time")
    .expect("run mosquitto_pub");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?} failed ({:?}): {text}",
        out.status
    );
    text
}

async fn qos2_round_trip(version: &str, protocol_in_log: &str, tag: &str) {
    require_all();
    let broker = Broker::start(&[]);
    let topic = format!("interop/{tag}");
    let sub_id = format!("sub-{tag}");
    let pub_id = format!("pub-{tag}");
    let payload = format!("hello over {version}");
    let (mut sub, mut lines) = spawn_sub(
        broker.port,
        &[
            "-V", version, "-i", &sub_id, "-t", &topic, "-q", "2", "-C", "1", "-v", "-d",
        ],
    );
    let handshake = read_until(&mut lines, "Subscribed").await;
    assert!(
        handshake
            .iter()
            .any(|l| l.starts_with("Subscribed") && l.ends_with(": 2")),
        "{version}: granted QoS 2: {handshake:#?}"
    );

    let pub_out = run_pub(
        broker.port,
        &[
            "-V", version, "-i", &pub_id, "-t", &topic, "-q", "2", "-m", &payload, "-d",
        ],
    )
    .await;
    assert!(
        pub_out.contains("received PUBREC") && pub_out.contains("received PUBCOMP"),
        "{version}: publisher completes the QoS 2 exchange: {pub_out}"
    );

    let message_line = format!("{topic} {payload}");
    let received = read_until(&mut lines, &message_line).await;
    assert!(
        received
            .iter()
            .any(|l| l.contains("received PUBLISH (d0, q2, r0")),
        "{version}: delivered at QoS 2, not DUP, not retained: {received:#?}"
    );
    assert!(
        received.iter().any(|l| l.contains("received PUBREL")),
        "{version}: broker sends PUBREL: {received:#?}"
    );
    let status = timeout(TOOL_TIMEOUT, sub.wait())
        .await
        .expect("mosquitto_sub exits after -C 1")
        .expect("wait mosquitto_sub");
    assert!(
        status.success(),
        "{version}: mosquitto_sub exit status {status:?}"
    );

    for id in [&sub_id, &pub_id] {
        let line = broker
            .wait_event_nth("client connected", id, 0, LOG_TIMEOUT)
            .unwrap_or_else(|| panic!("`client connected client_id={id}`"));
        assert_eq!(
            field(&line, "protocol").as_deref(),
            Some(protocol_in_log),
            "{version}: connect line protocol: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_qos2_round_trip_mqttv311() {
    qos2_round_trip("mqttv311", "3.1.1", "v311").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_qos2_round_trip_mqttv5() {
    qos2_round_trip("mqttv5", "5.0", "v5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_v5_properties_reach_v5_and_not_v311() {
    require_all();
    let broker = Broker::start(&[]);
    let topic = "interop/props";
    let (new_sub, mut new_lines) = spawn_sub(
        broker.port,
        &[
            "-V",
            "mqttv5",
            "-i",
            "props-v5",
            "-t",
            topic,
            "-q",
            "1",
            "-C",
            "1",
            "-d",
            "-F",
            "%t|%p|%F|%C|%R|%P",
        ],
    );
    read_until(&mut new_lines, "Subscribed").await;
    let (old_sub, mut old_lines) = spawn_sub(
        broker.port,
        &[
            "-V",
            "mqttv311",
            "-i",
            "props-v311",
            "-t",
            topic,
            "-q",
            "1",
            "-C",
            "1",
            "-d",
            "-F",
            "%t|%p",
        ],
    );
    read_until(&mut old_lines, "Subscribed").await;

    run_pub(
        broker.port,
        &[
            "-V",
            "mqttv5",
            "-i",
            "props-pub",
            "-t",
            topic,
            "-q",
            "1",
            "-m",
            "with properties",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "response-topic",
            "interop/reply",
            "-D",
            "publish",
            "user-property",
            "origin",
            "mosquitto_pub",
        ],
    )
    .await;

    let expected =
        format!("{topic}|with properties|1|text/plain|interop/reply|origin:mosquitto_pub");
    let received = read_until(&mut new_lines, &format!("{topic}|")).await;
    assert_eq!(received.last(), Some(&expected), "{received:#?}");
    let received = read_until(&mut old_lines, &format!("{topic}|")).await;
    assert_eq!(
        received.last(),
        Some(&format!("{topic}|with properties")),
        "{received:#?}"
    );
    for sub in [new_sub, old_sub] {
        let status = timeout(TOOL_TIMEOUT, sub.wait_with_output())
            .await
            .expect("mosquitto_sub exits after -C 1")
            .expect("wait mosquitto_sub");
        assert!(status.status.success(), "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_qos2_round_trip_mqttv31() {
    qos2_round_trip("mqttv31", "3.1", "v31").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_retained_message_with_r() {
    require_all();
    let broker = Broker::start(&[]);
    let topic = "interop/retained";
    run_pub(
        broker.port,
        &["-i", "ret-pub", "-t", topic, "-q", "1", "-r", "-m", "kept"],
    )
    .await;

    let (sub, mut lines) = spawn_sub(
        broker.port,
        &[
            "-i", "ret-sub", "-t", topic, "-q", "1", "-C", "1", "-v", "-d", "-W", "5",
        ],
    );
    let received = read_until(&mut lines, &format!("{topic} kept")).await;
    assert!(
        received
            .iter()
            .any(|l| l.contains("received PUBLISH (d0, q1, r1")),
        "the retained message arrives with retain=1 at QoS 1: {received:#?}"
    );
    let out = timeout(TOOL_TIMEOUT, sub.wait_with_output())
        .await
        .expect("mosquitto_sub exits")
        .expect("wait mosquitto_sub");
    assert!(
        out.status.success(),
        "mosquitto_sub exit status {:?}",
        out.status
    );

    run_pub(
        broker.port,
        &["-i", "ret-clear", "-t", topic, "-q", "1", "-r", "-n"],
    )
    .await;
    let port = broker.port.to_string();
    let out = timeout(
        TOOL_TIMEOUT,
        Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-i",
                "ret-late",
                "-t",
                topic,
                "-C",
                "1",
                "-v",
                "-W",
                "1",
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("mosquitto_sub -W 1 exits")
    .expect("run mosquitto_sub");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains(topic),
        "after `mosquitto_pub -r -n` no retained message is delivered, got: {stdout}"
    );
    assert!(
        !out.status.success(),
        "mosquitto_sub -W 1 times out when nothing arrives"
    );
}
