//! Parked connections, seen from outside: quiet plain TCP clients are counted in
//! `$SYS/broker/hydrant/clients/parked` and served as before at every QoS, a busy publisher
//! (one that fills the broker's reads) leaves the lot and comes back once quiet, while a
//! client's first few packets or a stream of small ones do not take it out, and
//! `park_after_idle_ms = 0` parks nothing.
//! The rest of the suite runs with parking on too (its default), so every plain TCP test
//! exercises parked connections from their first packet.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::{self, Client};
use common::Broker;

/// `$SYS` every second.
const SYS_EVERY_SECOND: &str = "[metrics]\nsys_interval = 1\n";

/// Longest wait for a `$SYS` value to reach what a test expects (several rounds).
const SYS_TIMEOUT: Duration = Duration::from_secs(15);

const PARKED: &str = "$SYS/broker/hydrant/clients/parked";
const CONNECTED: &str = "$SYS/broker/clients/connected";

/// A client watching the parked and connected counts, with the latest value of each.
struct Counts {
    client: Client,
    parked: Option<String>,
    connected: Option<String>,
}

impl Counts {
    async fn watch(port: u16) -> Counts {
        let mut client = client::connect(port, "counts-watcher").await;
        client.subscribe(PARKED, 0).await;
        client.subscribe(CONNECTED, 0).await;
        Counts {
            client,
            parked: None,
            connected: None,
        }
    }

    /// Reads `$SYS` values for `wait`, or until `done` holds; returns whether it does.
    async fn read_until(&mut self, wait: Duration, done: impl Fn(&Counts) -> bool) -> bool {
        let deadline = Instant::now() + wait;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(publish) = self.client.try_next_publish(left).await else {
                return false;
            };
            let value = String::from_utf8(publish.payload.to_vec()).expect("UTF-8 payload");
            match publish.topic.as_str() {
                PARKED => self.parked = Some(value),
                CONNECTED => self.connected = Some(value),
                _ => {}
            }
        }
        true
    }

    /// Checks that the parked count stays at `parked` for `wait`.
    async fn expect_steady(&mut self, parked: &str, wait: Duration) {
        let changed = self
            .read_until(wait, |counts| counts.parked.as_deref() != Some(parked))
            .await;
        assert!(!changed, "parked: {:?}, not {parked}", self.parked);
    }

    /// Waits until `parked` clients of `connected` are parked.
    async fn expect(&mut self, parked: &str, connected: &str) {
        let seen = self
            .read_until(SYS_TIMEOUT, |counts| {
                counts.parked.as_deref() == Some(parked)
                    && counts.connected.as_deref() == Some(connected)
            })
            .await;
        assert!(
            seen,
            "expected {parked} parked of {connected} connected within {SYS_TIMEOUT:?}; last seen {:?} of {:?}",
            self.parked, self.connected
        );
    }
}

/// A broker with `$SYS` every second and three quiet clients, all parked: the watcher, a
/// subscriber to `<name>/#` at `qos`, and a publisher.
async fn parked_trio(name: &str, qos: u8) -> (Broker, Counts, Client, Client) {
    let broker = Broker::with_config(SYS_EVERY_SECOND, &[]);
    let mut counts = Counts::watch(broker.port).await;
    let mut subscriber = client::connect(broker.port, &format!("{name}-sub")).await;
    subscriber.subscribe(&format!("{name}/#"), qos).await;
    let publisher = client::connect(broker.port, &format!("{name}-pub")).await;
    counts.expect("3", "3").await;
    (broker, counts, subscriber, publisher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_clients_are_parked_and_served_at_every_qos() {
    let (broker, mut counts, mut subscriber, mut publisher) = parked_trio("parked", 2).await;

    for qos in 0..=2u8 {
        publisher
            .publish("parked/event", qos, false, format!("at qos {qos}"))
            .await;
    }
    let received = subscriber.collect_publishes(3).await;
    for (qos, publish) in received.iter().enumerate() {
        assert_eq!(publish.topic, "parked/event");
        assert_eq!(publish.payload.as_ref(), format!("at qos {qos}").as_bytes());
        assert_eq!(client::level(publish.qos), qos as u8);
    }

    // The parked subscriber speaks: its QoS 1 publish is acknowledged and delivered.
    let mut listener = client::connect(broker.port, "parked-listener").await;
    listener.subscribe("back/#", 1).await;
    subscriber.publish("back/reply", 1, false, "reply").await;
    let reply = listener.next_publish("the parked client's reply").await;
    assert_eq!(reply.payload.as_ref(), b"reply");
    // A few packets do not make a client busy: all four are parked again, or still.
    counts.expect("4", "4").await;
}

/// A publisher sending `size`-byte messages (a sequence number, then padding) to `topic` at
/// `qos` every 10 ms until it is told to stop.
struct Stream {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Client, u32)>,
}

impl Stream {
    fn start(mut publisher: Client, topic: &'static str, qos: u8, size: usize) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut sent = 0u32;
            while !stopped.load(Ordering::Relaxed) {
                let mut payload = sent.to_be_bytes().to_vec();
                payload.resize(size, b'.');
                publisher.publish(topic, qos, false, payload).await;
                sent += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (publisher, sent)
        });
        Stream { stop, task }
    }

    /// Stops the stream; returns the publisher, still connected, and how many messages it
    /// sent.
    async fn stop(self) -> (Client, u32) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("publisher task")
    }
}

/// Checks that `subscriber` received the stream's `sent` messages, in order.
async fn expect_sequence(subscriber: &mut Client, sent: u32) {
    let received = subscriber.drain_publishes(Duration::from_millis(500)).await;
    let sequence: Vec<u32> = received
        .iter()
        .map(|publish| u32::from_be_bytes(publish.payload[..4].try_into().expect("4 bytes")))
        .collect();
    assert_eq!(sequence, (0..sent).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_publisher_leaves_the_lot_and_returns_once_quiet() {
    let (_broker, mut counts, mut subscriber, publisher) = parked_trio("busy", 0).await;
    // 8 KiB every 10 ms (rumqttc takes up to 10 KiB): each message fills the broker's reads
    // (4 KiB).
    let stream = Stream::start(publisher, "busy/tick", 0, 8 * 1024);
    // Busy for a few ticks, the publisher is glommio's again.
    counts.expect("2", "3").await;
    let (_publisher, sent) = stream.stop().await;
    // Quiet for `park_after_idle_ms` (1 s by default), it is parked again.
    counts.expect("3", "3").await;
    // Every message arrived, in order, across the moves.
    expect_sequence(&mut subscriber, sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_small_packets_keeps_its_clients_parked() {
    let (_broker, mut counts, mut subscriber, publisher) = parked_trio("small", 1).await;
    // A 64-byte QoS 1 message every 10 ms, each acknowledged by the subscriber: both are
    // heard in every tick, but none of their reads fills its room.
    let stream = Stream::start(publisher, "small/tick", 1, 64);
    counts.expect_steady("3", Duration::from_millis(1500)).await;
    let (_publisher, sent) = stream.stop().await;
    assert!(sent > 50, "the stream ran ({sent} messages)");
    expect_sequence(&mut subscriber, sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn park_after_idle_ms_0_parks_nothing() {
    let config = format!("park_after_idle_ms = 0\n{SYS_EVERY_SECOND}");
    let broker = Broker::with_config(&config, &[]);
    let mut counts = Counts::watch(broker.port).await;
    let mut subscriber = client::connect(broker.port, "unparked-sub").await;
    subscriber.subscribe("quiet/#", 1).await;
    counts.expect("0", "2").await;
    // Quiet well past the default delay: still nothing parked.
    counts.expect_steady("0", Duration::from_millis(2500)).await;
    let mut publisher = client::connect(broker.port, "unparked-pub").await;
    publisher.publish("quiet/event", 1, false, "served").await;
    let publish = subscriber.next_publish("the message").await;
    assert_eq!(publish.payload.as_ref(), b"served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_packets_do_not_take_a_client_out_of_the_lot() {
    // Parked again only after a minute: a client taken out would be seen out.
    let config = format!("park_after_idle_ms = 60000\n{SYS_EVERY_SECOND}");
    let broker = Broker::with_config(&config, &[]);
    let mut counts = Counts::watch(broker.port).await;
    let mut client = client::connect(broker.port, "few-packets").await;
    client.subscribe("few/#", 1).await;
    client.publish("few/one", 1, false, "one").await;
    let echo = client.next_publish("its own message").await;
    assert_eq!(echo.payload.as_ref(), b"one");
    counts.expect("2", "2").await;
    counts.expect_steady("2", Duration::from_millis(2500)).await;
}
