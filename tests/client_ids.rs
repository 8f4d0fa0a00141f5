//! Zero-length client ids: accepted (with an assigned id) only for 3.1.1 clean sessions and
//! only while `allow_zero_length_clientid` is on; otherwise CONNACK 2 (identifier rejected).

mod common;

use std::time::Duration;

use common::broker::field;
use common::raw::{Connect, RawClient};
use common::{Broker, LOG_TIMEOUT};

/// CONNACK return code "identifier rejected".
const IDENTIFIER_REJECTED: u8 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_id_with_clean_session_on_311_is_accepted_with_an_assigned_id() {
    let broker = Broker::start(&[]);
    let (mut client, session_present, code) =
        RawClient::handshake(broker.port, &Connect::v311("")).await;
    assert_eq!(
        code, 0,
        "3.1.1 + clean session + empty id is accepted (MQTT-3.1.3-6)"
    );
    assert!(!session_present);
    let codes = client.subscribe(1, &[("ids/anon", 1)]).await;
    assert_eq!(codes, [1], "the accepted connection works");

    let local = format!("127.0.0.1:{}", client.local_port());
    let line = broker
        .wait_for_log_where(
            |l| {
                l.contains("client connected")
                    && field(l, "addr").as_deref() == Some(local.as_str())
            },
            LOG_TIMEOUT,
        )
        .expect("a `client connected` line for the anonymous connection");
    let id = field(&line, "client_id").unwrap_or_default();
    assert!(
        id.starts_with("auto-"),
        "assigned id uses auto_id_prefix `auto-`: {line}"
    );
    assert!(
        id.len() > "auto-".len(),
        "assigned id is more than the prefix: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_empty_ids_get_different_assigned_ids() {
    let broker = Broker::start(&[]);
    let one = RawClient::connected(broker.port, &Connect::v311("")).await;
    let two = RawClient::connected(broker.port, &Connect::v311("")).await;
    let mut ids = Vec::new();
    for client in [&one, &two] {
        let local = format!("127.0.0.1:{}", client.local_port());
        let line = broker
            .wait_for_log_where(
                |l| {
                    l.contains("client connected")
                        && field(l, "addr").as_deref() == Some(local.as_str())
                },
                LOG_TIMEOUT,
            )
            .expect("a connect line per anonymous connection");
        ids.push(field(&line, "client_id").unwrap_or_default());
    }
    assert_ne!(
        ids[0], ids[1],
        "assigned ids must be unique (else one would take over the other)"
    );
}

async fn assert_refused(broker: &Broker, connect: &Connect, why: &str) {
    let (mut client, session_present, code) = RawClient::handshake(broker.port, connect).await;
    assert_eq!(code, IDENTIFIER_REJECTED, "{why}: CONNACK 2 expected");
    assert!(
        !session_present,
        "{why}: session_present must be 0 with a refusal (MQTT-3.2.2-4)"
    );
    assert!(
        client
            .read_until_closed(Duration::from_secs(3))
            .await
            .is_ok(),
        "{why}: the broker must close the connection after a refusing CONNACK"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_id_with_persistent_session_is_refused() {
    let broker = Broker::start(&[]);
    assert_refused(
        &broker,
        &Connect::v311("").clean(false),
        "3.1.1 + clean_session=0 + empty id (MQTT-3.1.3-8)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_id_on_mqtt_31_is_refused() {
    let broker = Broker::start(&[]);
    assert_refused(&broker, &Connect::v31(""), "MQTT 3.1 + empty id").await;
    let ok = RawClient::handshake(broker.port, &Connect::v31("v31-named")).await;
    assert_eq!(ok.2, 0, "MQTT 3.1 with a client id is accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_id_is_refused_when_the_config_disallows_it() {
    let broker = Broker::with_config("[session]\nallow_zero_length_clientid = false\n", &[]);
    assert_refused(
        &broker,
        &Connect::v311(""),
        "allow_zero_length_clientid = false + empty id",
    )
    .await;
    let ok = RawClient::handshake(broker.port, &Connect::v311("named")).await;
    assert_eq!(ok.2, 0, "a named client is still accepted");
}
