//! The command line: the embedded default config, config checking with key suggestions, and
//! a clean exit on SIGTERM/SIGINT that closes every client connection.

mod common;

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::broker::binary;
use common::client;
use common::raw::{Connect, RawClient};
use common::{Broker, LOG_TIMEOUT};

static FILES: AtomicUsize = AtomicUsize::new(0);

fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap_or_else(|e| panic!("run hydrant {args:?}: {e}"))
}

/// Writes `text` to a fresh temporary file and returns its path.
fn temp_config(text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "hydrant-cli-test-{}-{}.toml",
        std::process::id(),
        FILES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, text).expect("write temporary config");
    path
}

fn check_config(text: &str) -> Output {
    let path = temp_config(text);
    let out = run(&[
        "--check-config",
        "--config",
        path.to_str().expect("utf-8 temp path"),
    ]);
    let _ = std::fs::remove_file(&path);
    out
}

#[test]
fn print_default_config_prints_config_hydrant_toml() {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/hydrant.toml"))
            .expect("config/hydrant.toml exists");
    let out = run(&["--print-default-config"]);
    assert!(
        out.status.success(),
        "--print-default-config exit status {:?}",
        out.status
    );
    let printed = String::from_utf8(out.stdout).expect("UTF-8 output");
    assert_eq!(
        printed, shipped,
        "--print-default-config must print config/hydrant.toml verbatim"
    );
}

#[test]
fn default_config_passes_check_config() {
    let out = run(&["--print-default-config"]);
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).expect("UTF-8 output");
    let checked = check_config(&printed);
    assert!(
        checked.status.success(),
        "the embedded default config must pass --check-config; stderr: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn check_config_accepts_a_small_valid_file() {
    let out = check_config("[limits]\nmax_inflight_messages = 5\n");
    assert!(
        out.status.success(),
        "valid config rejected: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_rejects_an_unknown_key_and_suggests_the_nearest() {
    let out = check_config("[limits]\nmax_inflight_mesages = 5\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a misspelt key must fail --check-config"
    );
    assert!(
        stderr.contains("max_inflight_mesages"),
        "the error names the unknown key: {stderr}"
    );
    assert!(
        stderr.contains("did you mean `max_inflight_messages`?"),
        "the error suggests the nearest valid key (contract wording): {stderr}"
    );
}

#[test]
fn check_config_rejects_an_unknown_top_level_key() {
    let out = check_config("conection_messages = false\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a misspelt top-level key must fail");
    assert!(
        stderr.contains("did you mean `connection_messages`?"),
        "suggests the nearest key: {stderr}"
    );
}

#[test]
fn check_config_rejects_a_wrong_type() {
    let out = check_config("[limits]\nmax_packet_size = \"big\"\n");
    assert!(
        !out.status.success(),
        "a string where a size is expected must fail"
    );
    assert!(!out.stderr.is_empty(), "the error is printed on stderr");
}

async fn shutdown_closes_clients(signal: libc::c_int, name: &str) {
    let mut broker = Broker::start(&[]);
    let mut raw_clients = Vec::new();
    for n in 0..4 {
        raw_clients.push(
            RawClient::connected(broker.port, &Connect::v311(&format!("{name}-raw-{n}"))).await,
        );
    }
    let mut rumqtt = client::connect(broker.port, &format!("{name}-rumqttc")).await;
    for n in 0..4 {
        broker.core_of(&format!("{name}-raw-{n}"), LOG_TIMEOUT);
    }

    broker.signal(signal);
    for (n, conn) in raw_clients.iter_mut().enumerate() {
        assert!(
            conn.read_until_closed(Duration::from_secs(5)).await.is_ok(),
            "{name}: raw client {n} must see its connection closed"
        );
    }
    assert!(
        rumqtt.wait_closed(Duration::from_secs(5)).await.is_some(),
        "{name}: the rumqttc client must see its connection closed"
    );
    let status = broker
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{name}: broker still running 10 s after the signal"));
    assert_eq!(
        status.code(),
        Some(0),
        "{name}: exit status must be 0, got {status:?}"
    );
    let line = broker.wait_for_log("server shutting down", Duration::from_secs(1));
    assert!(
        line.is_some(),
        "{name}: disconnect lines should give reason `server shutting down`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_connections_and_exits_0() {
    shutdown_closes_clients(libc::SIGTERM, "term").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_closes_connections_and_exits_0() {
    shutdown_closes_clients(libc::SIGINT, "int").await;
}
