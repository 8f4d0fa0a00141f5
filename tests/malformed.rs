//! Malformed and out-of-order input: each case runs on its own connection while a healthy
//! publisher/subscriber pair keeps working. The broker must close the offending connection
//! (EOF or reset), log a WARN `closing connection` line with a fitting reason, and go on
//! delivering to everyone else.

mod common;

use std::time::Duration;

use common::broker::field;
use common::raw::{self, Connect, Incoming, RawClient};
use common::{Broker, HealthyPair, LOG_TIMEOUT};

/// How long the broker may take to close a connection that sent something malformed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// `n` reproducible pseudo-random bytes (64-bit LCG, high bits).
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// A broker with a healthy pair already exchanging messages.
async fn scene(tag: &str) -> (Broker, HealthyPair) {
    let broker = Broker::start(&[]);
    let pair = HealthyPair::new(broker.port, tag).await;
    (broker, pair)
}

/// Asserts that the broker closes `conn`, logs why (the reason, lower-cased, must contain one
/// of `keywords`; any reason when empty), and still serves the healthy pair.
async fn assert_rejected(
    broker: &Broker,
    pair: &mut HealthyPair,
    mut conn: RawClient,
    keywords: &[&str],
    what: &str,
) {
    let port = conn.local_port();
    match conn.read_until_closed(CLOSE_TIMEOUT).await {
        Ok((how, packets)) => {
            let unexpected: Vec<&Incoming> = packets
                .iter()
                .filter(|p| !matches!(p, Incoming::ConnAck { .. }))
                .collect();
            assert!(
                unexpected.is_empty(),
                "{what}: the broker answered {unexpected:?} before closing ({how:?})"
            );
        }
        Err(packets) => {
            panic!("{what}: connection still open {CLOSE_TIMEOUT:?} later (received {packets:?})")
        }
    }
    let line = broker
        .wait_closing_line(port, LOG_TIMEOUT)
        .unwrap_or_else(|| {
            panic!("{what}: no `closing connection addr=127.0.0.1:{port}` log line")
        });
    assert!(
        line.contains("WARN"),
        "{what}: closing line should be a WARN: {line}"
    );
    let reason = field(&line, "reason").unwrap_or_default();
    println!("{what}: reason={reason}");
    assert!(
        !reason.is_empty(),
        "{what}: closing line has no reason: {line}"
    );
    let lower = reason.to_lowercase();
    assert!(
        keywords.is_empty() || keywords.iter().any(|k| lower.contains(k)),
        "{what}: reason should mention one of {keywords:?}: {line}"
    );
    pair.check(&format!("after {what}")).await;
}

/// A connection that completed a valid 3.1.1 CONNECT.
async fn connected(broker: &Broker, id: &str) -> RawClient {
    RawClient::connected(broker.port, &Connect::v311(id)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_instead_of_connect() {
    let (broker, mut pair) = scene("rnd1").await;
    let bytes = random_bytes(1, 256);
    // Starts 0xd6 0x59: a PINGRESP-typed header with flags 6 and a body of 89 bytes.
    assert_eq!(&bytes[..2], [0xd6, 0x59]);
    let mut conn = RawClient::connect_tcp(broker.port).await;
    let _ = conn.send(&bytes).await;
    assert_rejected(
        &broker,
        &mut pair,
        conn,
        &[],
        "256 random bytes as the first packet",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_after_connect() {
    let (broker, mut pair) = scene("rnd2").await;
    let bytes = random_bytes(14, 256);
    // Starts 0xfc 0x76: reserved packet type 15 with a body of 118 bytes.
    assert_eq!(&bytes[..2], [0xfc, 0x76]);
    let mut conn = connected(&broker, "rnd2-bad").await;
    let _ = conn.send(&bytes).await;
    assert_rejected(
        &broker,
        &mut pair,
        conn,
        &[],
        "256 random bytes after CONNECT",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_length_with_five_bytes() {
    let (broker, mut pair) = scene("rl5").await;
    let mut conn = connected(&broker, "rl5-bad").await;
    let _ = conn.send(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]).await;
    assert_rejected(
        &broker,
        &mut pair,
        conn,
        &["remaining length"],
        "a remaining length of 5 bytes",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_publish_topic() {
    let (broker, mut pair) = scene("utf8").await;
    let mut conn = connected(&broker, "utf8-bad").await;
    let _ = conn
        .send(&raw::publish(
            &[b'a', 0xFF, b'/', 0xC3, 0x28],
            b"x",
            0,
            false,
            false,
            0,
        ))
        .await;
    assert_rejected(
        &broker,
        &mut pair,
        conn,
        &["utf-8", "utf8"],
        "invalid UTF-8 in a PUBLISH topic",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_character_in_publish_topic() {
    let (broker, mut pair) = scene("nul").await;
    let mut conn = connected(&broker, "nul-bad").await;
    let _ = conn
        .send(&raw::publish(b"a\0b", b"x", 0, false, false, 0))
        .await;
    assert_rejected(
        &broker,
        &mut pair,
        conn,
        &[],
        "U+0000 in a PUBLISH topic (MQTT-1.5.3-2)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_in_publish_topic() {
    let (broker, mut pair) = scene("wild").await;
    for (n, topic) in ["a/+/b", "a/#"].into_iter().enumerate() {
        let mut conn = connected(&broker, &format!("wild-bad-{n}")).await;
        let _ = conn
            .send(&raw::publish(topic.as_bytes(), b"x", 1, false, false, 1))
            .await;
        assert_rejected(
            &broker,
            &mut pair,
            conn,
            &["wildcard"],
            &format!("wildcard in PUBLISH topic {topic:?}"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_publish_topic() {
    let (broker, mut pair) = scene("empty").await;
    let mut conn = connected(&broker, "empty-bad").await;
    let _ = conn
        .send(&raw::publish(b"", b"x", 0, false, false, 0))
        .await;
    assert_rejected(
        &broker,
        &mut pair,
        conn,
        &[],
        "a zero-length PUBLISH topic (MQTT-4.7.3-1)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connect() {
    let (broker, mut pair) = scene("twice").await;
    let mut conn = connected(&broker, "twice-bad").await;
    let _ = conn.send(&Connect::v311("twice-bad").encode()).await;
    assert_rejected(
        &broker,
        &mut pair,
        conn,
        &["second connect"],
        "a second CONNECT",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_packet_not_connect() {
    let (broker, mut pair) = scene("first").await;
    let mut conn = RawClient::connect_tcp(broker.port).await;
    let _ = conn.send(&raw::subscribe(1, &[("a/b", 0)])).await;
    assert_rejected(
        &broker,
        &mut pair,
        conn,
        &["first packet"],
        "SUBSCRIBE before CONNECT",
    )
    .await;

    let mut conn = RawClient::connect_tcp(broker.port).await;
    let _ = conn.send(&raw::pingreq()).await;
    assert_rejected(
        &broker,
        &mut pair,
        conn,
        &["first packet"],
        "PINGREQ before CONNECT",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_fixed_header_flags() {
    let (broker, mut pair) = scene("flags").await;
    let mut conn = connected(&broker, "flags-sub").await;
    let mut subscribe = raw::subscribe(1, &[("a/b", 0)]);
    subscribe[0] = 0x80; // SUBSCRIBE flags must be 0010 (MQTT-3.8.1-1)
    let _ = conn.send(&subscribe).await;
    assert_rejected(
        &broker,
        &mut pair,
        conn,
        &["flag", "reserved"],
        "SUBSCRIBE with fixed-header flags 0000",
    )
    .await;

    let mut conn = connected(&broker, "flags-ping").await;
    let _ = conn.send(&[0xC1, 0x00]).await;
    assert_rejected(
        &broker,
        &mut pair,
        conn,
        &["flag", "reserved"],
        "PINGREQ with fixed-header flags 0001",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_connect_flag() {
    let (broker, mut pair) = scene("cflag").await;
    let mut connect = Connect::v311("cflag-bad");
    connect.extra_flags = 0x01; // reserved bit of the connect flags (MQTT-3.1.2-3)
    let mut conn = RawClient::connect_tcp(broker.port).await;
    let _ = conn.send(&connect.encode()).await;
    assert_rejected(
        &broker,
        &mut pair,
        conn,
        &["flag", "reserved"],
        "CONNECT with the reserved connect flag set",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_with_qos_3() {
    let (broker, mut pair) = scene("qos3").await;
    let mut conn = connected(&broker, "qos3-bad").await;
    let _ = conn.send(&raw::packet(0x36, b"\x00\x03a/b\x00\x01x")).await;
    assert_rejected(&broker, &mut pair, conn, &["qos"], "PUBLISH with QoS 3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_with_packet_id_zero() {
    let (broker, mut pair) = scene("pid0").await;
    let mut conn = connected(&broker, "pid0-bad").await;
    let _ = conn
        .send(&raw::publish(b"a/b", b"x", 1, false, false, 0))
        .await;
    assert_rejected(
        &broker,
        &mut pair,
        conn,
        &[],
        "QoS 1 PUBLISH with packet id 0 (MQTT-2.3.1-1)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_subscribe_filter() {
    let (broker, mut pair) = scene("filter").await;
    let mut conn = connected(&broker, "filter-bad").await;
    let _ = conn.send(&raw::subscribe(1, &[("a/#/b", 0)])).await;
    assert_rejected(
        &broker,
        &mut pair,
        conn,
        &["filter", "wildcard"],
        "SUBSCRIBE to the invalid filter a/#/b",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_protocol_level_gets_connack_1() {
    let (broker, mut pair) = scene("level").await;
    let mut connect = Connect::v311("level-7");
    connect.level = 7;
    let mut conn = RawClient::connect_tcp(broker.port).await;
    conn.send(&connect.encode()).await.expect("send CONNECT");
    match conn.recv(raw::PACKET_TIMEOUT).await {
        Ok(Incoming::ConnAck {
            code,
            session_present,
        }) => {
            assert_eq!(code, 1, "protocol level 7: CONNACK 1 (MQTT-3.1.2-2)");
            assert!(!session_present);
        }
        other => panic!("protocol level 7: expected CONNACK 1, got {other:?}"),
    }
    assert_rejected(
        &broker,
        &mut pair,
        conn,
        &["protocol"],
        "CONNECT with protocol level 7",
    )
    .await;
}
