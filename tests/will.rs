//! Will messages: published when a connection ends without DISCONNECT (socket closed, reset,
//! keep-alive expired, protocol error), never after DISCONNECT; the will's retain flag is kept.

mod common;

use std::time::{Duration, Instant};

use common::broker::field;
use common::client::{self, level};
use common::raw::{self, Connect, RawClient};
use common::{Broker, LOG_TIMEOUT, QUIET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_when_the_socket_closes_abruptly() {
    let broker = Broker::start(&[]);
    let mut sub = client::connect(broker.port, "will-watch").await;
    sub.subscribe("will/#", 2).await;

    let fin = RawClient::connected(
        broker.port,
        &Connect::v311("will-fin").will("will/fin", b"gone (FIN)", 1, false),
    )
    .await;
    drop(fin);
    let p = sub
        .next_publish("will after the socket was closed (FIN)")
        .await;
    assert_eq!(p.topic, "will/fin");
    assert_eq!(&p.payload[..], b"gone (FIN)");
    assert_eq!(level(p.qos), 1, "will QoS 1");
    assert!(!p.retain);

    let rst = RawClient::connected(
        broker.port,
        &Connect::v311("will-rst").will("will/rst", b"gone (RST)", 2, false),
    )
    .await;
    rst.reset();
    let p = sub
        .next_publish("will after the socket was reset (RST)")
        .await;
    assert_eq!(p.topic, "will/rst");
    assert_eq!(&p.payload[..], b"gone (RST)");
    assert_eq!(level(p.qos), 2, "will QoS 2");
    sub.expect_no_publish(QUIET, "each will is published once")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_when_keep_alive_expires() {
    let broker = Broker::start(&[]);
    let mut sub = client::connect(broker.port, "ka-watch").await;
    sub.subscribe("will/ka", 1).await;

    let mut silent = RawClient::connected(
        broker.port,
        &Connect::v311("ka-silent")
            .keep_alive(1)
            .will("will/ka", b"timed out", 1, false),
    )
    .await;
    let since_connack = Instant::now();
    let closed = silent.read_until_closed(Duration::from_secs(5)).await;
    let elapsed = since_connack.elapsed();
    assert!(
        closed.is_ok(),
        "a client silent for 5 s with keep_alive=1 must be disconnected (1.5 x keep-alive)"
    );
    assert!(
        elapsed >= Duration::from_millis(1400),
        "closed after {elapsed:?}: the broker must allow 1.5 x keep_alive = 1.5 s"
    );
    let p = sub.next_publish("will after keep-alive expiry").await;
    assert_eq!(p.topic, "will/ka");
    assert_eq!(&p.payload[..], b"timed out");
    let line = broker
        .wait_disconnected("ka-silent", LOG_TIMEOUT)
        .expect("a `client disconnected client_id=ka-silent` line");
    assert!(
        field(&line, "reason")
            .unwrap_or_default()
            .contains("keep-alive timeout"),
        "disconnect reason should be `keep-alive timeout`: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_a_keep_alive_1_client_connected() {
    let broker = Broker::start(&[]);
    let mut pinging =
        RawClient::connected(broker.port, &Connect::v311("ka-pinging").keep_alive(1)).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        pinging.send(&raw::pingreq()).await.expect("send PINGREQ");
        match pinging.recv(Duration::from_secs(2)).await {
            Ok(raw::Incoming::PingResp) => {}
            other => panic!("expected PINGRESP while pinging every 0.5 s, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_after_a_protocol_error() {
    let broker = Broker::start(&[]);
    let mut sub = client::connect(broker.port, "perr-watch").await;
    sub.subscribe("will/perr", 1).await;

    let mut bad = RawClient::connected(
        broker.port,
        &Connect::v311("perr-client").will("will/perr", b"broke the protocol", 1, false),
    )
    .await;
    // PUBLISH with QoS 3: malformed.
    let _ = bad.send(&raw::packet(0x36, b"\x00\x03a/b\x00\x01x")).await;
    assert!(
        bad.read_until_closed(Duration::from_secs(3)).await.is_ok(),
        "the broker must close a connection that sent a QoS 3 PUBLISH"
    );
    let p = sub.next_publish("will after a protocol error").await;
    assert_eq!(&p.payload[..], b"broke the protocol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_not_published_after_disconnect() {
    let broker = Broker::start(&[]);
    let mut sub = client::connect(broker.port, "polite-watch").await;
    sub.subscribe("will/polite", 1).await;

    let mut polite = RawClient::connected(
        broker.port,
        &Connect::v311("polite").will("will/polite", b"must not appear", 1, false),
    )
    .await;
    polite
        .send(&raw::disconnect())
        .await
        .expect("send DISCONNECT");
    let _ = polite.read_until_closed(Duration::from_secs(3)).await;
    drop(polite);
    let line = broker
        .wait_disconnected("polite", LOG_TIMEOUT)
        .expect("a `client disconnected client_id=polite` line");
    let reason = field(&line, "reason").unwrap_or_default();
    assert!(
        reason.contains("client disconnected"),
        "reason should be `client disconnected`: {line}"
    );
    sub.expect_no_publish(
        Duration::from_secs(1),
        "DISCONNECT discards the will (MQTT-3.1.2-10)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_retain_flag_is_honoured() {
    let broker = Broker::start(&[]);
    let mut live = client::connect(broker.port, "wr-live").await;
    live.subscribe("will/retain/#", 1).await;

    let kept = RawClient::connected(
        broker.port,
        &Connect::v311("wr-kept").will("will/retain/kept", b"retained will", 1, true),
    )
    .await;
    drop(kept);
    let not_kept = RawClient::connected(
        broker.port,
        &Connect::v311("wr-not-kept").will("will/retain/not-kept", b"plain will", 1, false),
    )
    .await;
    drop(not_kept);

    let mut got: Vec<String> = Vec::new();
    for _ in 0..2 {
        let p = live.next_publish("both wills, live").await;
        assert!(!p.retain, "live delivery of a will has retain=false");
        got.push(p.topic);
    }
    got.sort();
    assert_eq!(got, ["will/retain/kept", "will/retain/not-kept"]);

    let mut late = client::connect(broker.port, "wr-late").await;
    late.subscribe("will/retain/#", 1).await;
    let p = late
        .next_publish("the retained will, sent to a later subscriber")
        .await;
    assert_eq!(p.topic, "will/retain/kept");
    assert_eq!(&p.payload[..], b"retained will");
    assert!(
        p.retain,
        "a will published with retain=1 is stored as retained"
    );
    late.expect_no_publish(QUIET, "the will without retain is not stored")
        .await;
}
