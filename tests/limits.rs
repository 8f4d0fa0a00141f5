//! Configured limits, each tested at its edge with a small config: connections, packet size,
//! inflight window, offline queue (messages and bytes), keep-alive bounds, and QoS 0 drops
//! for a subscriber that stops reading.

mod common;

use std::time::{Duration, Instant};

use common::broker::field;
use common::client::{self, connect_persistent, options};
use common::raw::{self, Connect, Incoming, RawClient};
use common::{Broker, HealthyPair, LOG_TIMEOUT, QUIET, SETTLED};

fn text(p: &rumqttc::Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_one_more_with_connack_3_until_one_leaves() {
    let config = "[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"mqtt\"\nmax_connections = 3\n";
    let broker = Broker::with_config(config, &[]);
    let mut held = Vec::new();
    for n in 0..3 {
        held.push(RawClient::connected(broker.port, &Connect::v311(&format!("cap-{n}"))).await);
    }
    let (mut extra, _, code) = RawClient::handshake(broker.port, &Connect::v311("cap-extra")).await;
    assert_eq!(
        code, 3,
        "connection 4 of max_connections = 3: CONNACK 3 (server unavailable)"
    );
    assert!(
        extra
            .read_until_closed(Duration::from_secs(3))
            .await
            .is_ok(),
        "the refused connection must be closed"
    );

    let mut leaving = held.remove(0);
    leaving.send(&raw::disconnect()).await.expect("DISCONNECT");
    let _ = leaving.read_until_closed(Duration::from_secs(3)).await;
    drop(leaving);
    broker
        .wait_disconnected("cap-0", LOG_TIMEOUT)
        .expect("`client disconnected client_id=cap-0`");

    // The slot is released asynchronously (possibly by another core): allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    let replacement = loop {
        let (client, _, code) = RawClient::handshake(broker.port, &Connect::v311("cap-new")).await;
        if code == 0 {
            break client;
        }
        assert!(
            Instant::now() < deadline,
            "after one of 3 clients left, a new connection still gets CONNACK {code}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    held.push(replacement);
    let (_, _, code) = RawClient::handshake(broker.port, &Connect::v311("cap-extra-2")).await;
    assert_eq!(
        code, 3,
        "back at 3 connections: the next one is refused again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_packet_size_accepts_the_limit_and_closes_one_byte_more() {
    let broker = Broker::with_config("[limits]\nmax_packet_size = 1024\n", &[]);
    let mut pair = HealthyPair::new(broker.port, "mps").await;
    let mut sub = client::connect(broker.port, "mps-sub").await;
    sub.subscribe("mps/t", 0).await;

    // Fixed header 1 + 2 (remaining length 1021) + topic 2+5 + payload 1014 = 1024 bytes.
    let exact = raw::publish(b"mps/t", &[b'x'; 1014], 0, false, false, 0);
    assert_eq!(exact.len(), 1024);
    let mut publisher = RawClient::connected(broker.port, &Connect::v311("mps-pub")).await;
    publisher
        .send(&exact)
        .await
        .expect("send 1024-byte PUBLISH");
    let p = sub
        .next_publish("a PUBLISH of exactly max_packet_size")
        .await;
    assert_eq!(
        p.payload.len(),
        1014,
        "payload of the 1024-byte packet intact"
    );

    let over = raw::publish(b"mps/t", &[b'y'; 1015], 0, false, false, 0);
    assert_eq!(over.len(), 1025);
    let _ = publisher.send(&over).await;
    assert!(
        publisher
            .read_until_closed(Duration::from_secs(3))
            .await
            .is_ok(),
        "a 1025-byte packet with max_packet_size = 1024 must close the connection"
    );
    let line = broker
        .wait_closing_line(publisher.local_port(), LOG_TIMEOUT)
        .expect("a WARN `closing connection` line for the oversized packet");
    assert!(line.contains("WARN"), "closing line is a warning: {line}");
    let reason = field(&line, "reason").unwrap_or_default().to_lowercase();
    assert!(
        reason.contains("too large"),
        "reason should say the packet is too large: {line}"
    );
    sub.expect_no_publish(QUIET, "the oversized PUBLISH is not delivered")
        .await;

    pair.check("after the oversized packet").await;
    let mut second = RawClient::connected(broker.port, &Connect::v311("mps-pub-2")).await;
    second.send(&exact).await.expect("send 1024-byte PUBLISH");
    let p = sub
        .next_publish("the other subscriber still receives limit-sized packets")
        .await;
    assert_eq!(p.payload.len(), 1014);
}

/// A large PUBLISH that arrives in pieces is read whole while its publisher's connection is
/// woken between the pieces to deliver messages to it (the broker keeps the room its read
/// waits to fill from one wake-up to the next).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_publish_arriving_in_pieces_between_deliveries_is_read_whole() {
    const PIECES: usize = 64;
    let broker = Broker::start(&[]);
    let mut receiver = RawClient::connected(broker.port, &Connect::v311("pieces-sub")).await;
    assert_eq!(receiver.subscribe(1, &[("pieces/big", 0)]).await, [0]);
    let mut uploader = RawClient::connected(broker.port, &Connect::v311("pieces-up")).await;
    assert_eq!(uploader.subscribe(1, &[("pieces/wake", 0)]).await, [0]);
    let mut waker = RawClient::connected(broker.port, &Connect::v311("pieces-waker")).await;

    let payload: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    let packet = raw::publish(b"pieces/big", &payload, 0, false, false, 0);
    for (n, piece) in packet.chunks(packet.len().div_ceil(PIECES)).enumerate() {
        uploader.send(piece).await.expect("send a piece");
        let wake = n.to_string();
        waker
            .send(&raw::publish(
                b"pieces/wake",
                wake.as_bytes(),
                0,
                false,
                false,
                0,
            ))
            .await
            .expect("send a wake-up");
        let delivered = uploader
            .next_publish(raw::PACKET_TIMEOUT)
            .await
            .expect("a delivery to the uploader between two pieces");
        assert_eq!(delivered.payload, wake.as_bytes());
    }
    let big = receiver
        .next_publish(raw::PACKET_TIMEOUT)
        .await
        .expect("the large PUBLISH");
    assert_eq!(big.payload.len(), payload.len());
    assert!(big.payload == payload, "payload intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_inflight_messages_caps_unacknowledged_deliveries() {
    const WINDOW: usize = 3;
    const TOTAL: usize = 10;
    let broker = Broker::with_config("[limits]\nmax_inflight_messages = 3\n", &[]);
    let mut opts = options(broker.port, "inflight-sub");
    opts.set_manual_acks(true);
    let (mut sub, _) = client::connect_with(opts).await;
    sub.subscribe("inflight/t", 1).await;
    let mut publisher = client::connect(broker.port, "inflight-pub").await;
    for seq in 0..TOTAL {
        publisher
            .publish("inflight/t", 1, false, format!("m{seq}"))
            .await;
    }

    let first = sub.collect_publishes(WINDOW).await;
    let seqs: Vec<String> = first.iter().map(text).collect();
    assert_eq!(
        seqs,
        ["m0", "m1", "m2"],
        "the first {WINDOW} messages are sent unacknowledged"
    );
    sub.expect_no_publish(QUIET, "max_inflight_messages = 3 are unacknowledged")
        .await;

    sub.ack(&first[0]).await;
    let next = sub.next_publish("one more after one PUBACK").await;
    assert_eq!(text(&next), "m3");
    sub.expect_no_publish(QUIET, "one PUBACK frees exactly one slot")
        .await;

    let mut pending = vec![first[1].clone(), first[2].clone(), next];
    let mut received = WINDOW + 1;
    while received < TOTAL {
        for p in pending.drain(..) {
            sub.ack(&p).await;
        }
        let got = sub.collect_publishes((TOTAL - received).min(WINDOW)).await;
        assert!(
            !got.is_empty(),
            "acknowledging the window releases more messages"
        );
        for p in &got {
            assert_eq!(text(p), format!("m{received}"), "in order, none lost");
            received += 1;
        }
        pending = got;
    }
    for p in pending.drain(..) {
        sub.ack(&p).await;
    }
    sub.expect_no_publish(QUIET, "all 10 delivered once").await;
}

/// Subscribes `id` persistently to `topic` at QoS 1 and disconnects it.
async fn park_session(broker: &Broker, id: &str, topic: &str) {
    let (mut sub, _) = connect_persistent(broker.port, id, false).await;
    sub.subscribe(topic, 1).await;
    sub.disconnect().await;
    broker
        .wait_disconnected(id, LOG_TIMEOUT)
        .unwrap_or_else(|| panic!("`client disconnected client_id={id}`"));
}

/// Reconnects `id` and returns the payloads it receives.
async fn collect_parked(broker: &Broker, id: &str, expected: usize) -> Vec<String> {
    let (mut sub, present) = connect_persistent(broker.port, id, false).await;
    assert!(present, "{id}: session_present");
    let mut got = sub.collect_publishes(expected).await;
    tokio::time::sleep(QUIET).await;
    got.extend(sub.drain_publishes(SETTLED).await);
    got.iter().map(text).collect()
}

/// Waits until `$SYS/broker/hydrant/publish/dropped/<reason>` reads `count`. A PUBACK only
/// says the message was routed: it may still be on its way to the session's core, and a
/// session taken over before it arrives would see it delivered instead of dropped.
async fn wait_dropped(broker: &Broker, reason: &str, count: usize) {
    let mut watcher = client::connect(broker.port, "drop-watcher").await;
    watcher
        .subscribe(&format!("$SYS/broker/hydrant/publish/dropped/{reason}"), 0)
        .await;
    let want = count.to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while let Some(p) = watcher
        .try_next_publish(deadline.saturating_duration_since(Instant::now()))
        .await
    {
        if text(&p) == want {
            return;
        }
        seen.push(text(&p));
    }
    panic!("dropped/{reason} never read {want}; it read {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_queued_messages_keeps_exactly_the_first_ones() {
    let broker = Broker::with_config(
        "[limits]\nmax_queued_messages = 5\n[metrics]\nsys_interval = 1\n",
        &[],
    );
    park_session(&broker, "mq-sub", "mq/t").await;
    let mut publisher = client::connect(broker.port, "mq-pub").await;
    for seq in 0..12 {
        publisher.publish("mq/t", 1, false, format!("m{seq}")).await;
    }
    wait_dropped(&broker, "max_queued_messages", 7).await;
    let got = collect_parked(&broker, "mq-sub", 5).await;
    assert_eq!(
        got,
        ["m0", "m1", "m2", "m3", "m4"],
        "an offline session keeps max_queued_messages = 5, the oldest (contract)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_queued_bytes_keeps_exactly_the_first_ones() {
    // Each message is 4 bytes of topic + 96 bytes of payload = 100 bytes: 5 fit in 500.
    let broker = Broker::with_config(
        "[limits]\nmax_queued_messages = 1000\nmax_queued_bytes = 500\n[metrics]\nsys_interval = 1\n",
        &[],
    );
    park_session(&broker, "qb-sub", "qb/t").await;
    let mut publisher = client::connect(broker.port, "qb-pub").await;
    for seq in 0..12 {
        let mut payload = format!("m{seq}").into_bytes();
        payload.resize(96, b'.');
        publisher.publish("qb/t", 1, false, payload).await;
    }
    wait_dropped(&broker, "max_queued_bytes", 7).await;
    let got: Vec<String> = collect_parked(&broker, "qb-sub", 5)
        .await
        .into_iter()
        .map(|p| p.trim_end_matches('.').to_string())
        .collect();
    assert_eq!(
        got,
        ["m0", "m1", "m2", "m3", "m4"],
        "an offline session keeps max_queued_bytes = 500 (5 x 100 bytes), the oldest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_outside_the_configured_bounds_gets_connack_2() {
    let broker = Broker::with_config("[limits]\nmin_keepalive = 10\nmax_keepalive = 100\n", &[]);
    for keep_alive in [0u16, 1, 9, 101, 65535] {
        let (mut client, _, code) = RawClient::handshake(
            broker.port,
            &Connect::v311(&format!("ka-{keep_alive}")).keep_alive(keep_alive),
        )
        .await;
        assert_eq!(
            code, 2,
            "keep_alive {keep_alive} outside [10, 100]: CONNACK 2"
        );
        assert!(
            client
                .read_until_closed(Duration::from_secs(3))
                .await
                .is_ok(),
            "keep_alive {keep_alive}: refused connection closed"
        );
    }
    for keep_alive in [10u16, 60, 100] {
        let (_client, _, code) = RawClient::handshake(
            broker.port,
            &Connect::v311(&format!("ka-{keep_alive}")).keep_alive(keep_alive),
        )
        .await;
        assert_eq!(
            code, 0,
            "keep_alive {keep_alive} inside [10, 100] is accepted"
        );
    }
}

/// Client "slow", connected with a 4 KiB receive buffer (so that it fills fast once it stops
/// reading) and subscribed to `filter` at QoS 0.
async fn small_buffer_subscriber(port: u16, filter: &str) -> RawClient {
    let mut slow = RawClient::connect_tcp_small_buffer(port, 4096).await;
    slow.send(&Connect::v311("slow").encode())
        .await
        .expect("CONNECT");
    match slow.recv(raw::PACKET_TIMEOUT).await {
        Ok(Incoming::ConnAck { code: 0, .. }) => {}
        other => panic!("slow client CONNACK: {other:?}"),
    }
    assert_eq!(slow.subscribe(1, &[(filter, 0)]).await, [0]);
    slow
}

/// QoS 0 publishes [`flood`] sends to `flood/t`.
const FLOOD_SENT: usize = 20_000;

/// The payload size of each of them.
const FLOOD_PAYLOAD: usize = 1024;

/// Publishes [`FLOOD_SENT`] QoS 0 messages of [`FLOOD_PAYLOAD`] bytes to `flood/t` through
/// `publisher`, 500 per write; panics with `stalled` when the broker takes none of a write
/// within 60 s.
async fn flood(publisher: &mut RawClient, stalled: &str) {
    let batch = raw::publish(b"flood/t", &[b'f'; FLOOD_PAYLOAD], 0, false, false, 0).repeat(500);
    for _ in 0..FLOOD_SENT / 500 {
        tokio::time::timeout(Duration::from_secs(60), publisher.stream_write(&batch))
            .await
            .expect(stalled)
            .expect("write flood");
    }
}

/// The broker keeps reading a client whose socket it cannot write to: flooded while it reads
/// nothing, the client still has what it publishes delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_still_read() {
    let broker = Broker::start(&[]);
    let mut watcher = RawClient::connected(broker.port, &Connect::v311("watcher")).await;
    assert_eq!(watcher.subscribe(1, &[("slow/said", 0)]).await, [0]);

    let mut slow = small_buffer_subscriber(broker.port, "flood/t").await;
    // From here on `slow` reads nothing.

    let mut flooder = RawClient::connected(broker.port, &Connect::v311("flooder")).await;
    flood(&mut flooder, "the broker keeps reading the flood").await;
    // Its queue is full, so the socket under it is: the broker's write to it waits.
    broker
        .wait_for_log_where(
            |l| {
                l.contains("dropping messages for slow client")
                    && field(l, "client_id").as_deref() == Some("slow")
            },
            LOG_TIMEOUT,
        )
        .expect("WARN `dropping messages for slow client client_id=slow`");

    let said = raw::publish(b"slow/said", b"still heard", 0, false, false, 0);
    slow.send(&said)
        .await
        .expect("PUBLISH from the slow client");
    let said = watcher
        .next_publish(Duration::from_secs(10))
        .await
        .expect("what a client whose socket is full publishes still reaches its subscriber");
    assert_eq!(said.topic, b"slow/said");
    assert_eq!(said.payload, b"still heard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_is_dropped_for_a_subscriber_that_stops_reading() {
    let broker = Broker::start(&[]);
    let mut pair = HealthyPair::new(broker.port, "flood").await;

    let mut slow = small_buffer_subscriber(broker.port, "flood/t").await;
    // From here on `slow` reads nothing until the flood is over.

    let port = broker.port;
    let flood = tokio::spawn(async move {
        let mut publisher = RawClient::connected(port, &Connect::v311("flooder")).await;
        flood(
            &mut publisher,
            "the broker must keep reading a QoS 0 publisher (no stall on a slow subscriber)",
        )
        .await;
        // A QoS 1 PUBLISH after the flood: its PUBACK proves every earlier PUBLISH was read.
        publisher
            .send(&raw::publish(b"flood/end", b"end", 1, false, false, 7))
            .await
            .expect("send marker");
        loop {
            match publisher.recv(Duration::from_secs(30)).await {
                Ok(Incoming::PubAck(7)) => break,
                Ok(_) => {}
                Err(e) => panic!("no PUBACK after the flood: {e:?}"),
            }
        }
        publisher
    });
    pair.check("during the flood").await;
    let _publisher = tokio::time::timeout(Duration::from_secs(90), flood)
        .await
        .expect("flood finished")
        .expect("flood task");
    pair.check("after the flood").await;

    let warn = broker
        .wait_for_log_where(
            |l| {
                l.contains("dropping messages for slow client")
                    && field(l, "client_id").as_deref() == Some("slow")
            },
            LOG_TIMEOUT,
        )
        .expect("WARN `dropping messages for slow client client_id=slow`");
    assert!(warn.contains("WARN"), "{warn}");

    let mut received = 0usize;
    while let Some(p) = slow.next_publish(Duration::from_millis(1500)).await {
        assert_eq!(p.payload.len(), FLOOD_PAYLOAD, "payload intact");
        received += 1;
    }
    println!("slow subscriber read {received} of {FLOOD_SENT} QoS 0 messages");
    assert!(received > 0, "the slow subscriber still gets what fitted");
    assert!(
        received < FLOOD_SENT,
        "a subscriber that stopped reading cannot have got all {FLOOD_SENT}"
    );

    slow.send(&raw::disconnect()).await.expect("DISCONNECT");
    let line = broker
        .wait_for_log_where(
            |l| {
                l.contains("client dropped messages")
                    && field(l, "client_id").as_deref() == Some("slow")
            },
            LOG_TIMEOUT,
        )
        .expect("INFO `client dropped messages client_id=slow dropped=N` at disconnect");
    let dropped: usize = field(&line, "dropped")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("dropped=N in {line}"));
    assert_eq!(
        received + dropped,
        FLOOD_SENT,
        "every message is either delivered or counted as dropped ({received} + {dropped})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_past_the_inflight_window_and_queue_is_dropped_logged_and_counted() {
    // 20 in flight (never acknowledged) + 50 queued are kept; the newer 130 are dropped.
    const SENT: usize = 200;
    const KEPT: usize = 20 + 50;
    let broker = Broker::with_config(
        "[limits]\nmax_inflight_messages = 20\nmax_queued_messages = 50\n",
        &[],
    );
    let mut opts = options(broker.port, "stalled");
    opts.set_manual_acks(true);
    let (mut sub, _) = client::connect_with(opts).await;
    sub.subscribe("stall/t", 1).await;
    let mut publisher = client::connect(broker.port, "stall-pub").await;
    for seq in 0..SENT {
        publisher
            .publish("stall/t", 1, false, format!("m{seq}"))
            .await;
    }
    // All of them offered to the subscriber before it acknowledges any.
    publisher.sync_cores().await;
    let warn = broker
        .wait_for_log_where(
            |l| {
                l.contains("dropping messages for slow client")
                    && field(l, "client_id").as_deref() == Some("stalled")
            },
            LOG_TIMEOUT,
        )
        .expect(
            "WARN `dropping messages for slow client client_id=stalled` once the queue overflows",
        );
    assert!(warn.contains("WARN"), "{warn}");

    let mut got = Vec::new();
    while got.len() < SENT {
        let Some(p) = sub.try_next_publish(QUIET).await else {
            break;
        };
        sub.ack(&p).await;
        got.push(text(&p));
    }
    let want: Vec<String> = (0..KEPT).map(|seq| format!("m{seq}")).collect();
    assert_eq!(
        got, want,
        "the inflight window (20) and the queue (50) keep the oldest messages, in order"
    );

    sub.disconnect().await;
    let line = broker
        .wait_for_log_where(
            |l| {
                l.contains("client dropped messages")
                    && field(l, "client_id").as_deref() == Some("stalled")
            },
            LOG_TIMEOUT,
        )
        .expect("INFO `client dropped messages client_id=stalled dropped=N` at disconnect");
    assert_eq!(
        field(&line, "dropped").as_deref(),
        Some("130"),
        "dropped count: {line}"
    );
}
