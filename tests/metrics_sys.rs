//! The `$SYS` tree of a running broker, read by a rumqttc subscriber on `$SYS/#` as an operator
//! would: values with Mosquitto's names that follow clients connecting, publishing and leaving,
//! summed over both cores; hydrant's own figures per core; retained values for a late
//! subscriber; a value that does not change is not published again; `sys_interval = 0` turns
//! the tree off.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::client::{self, Client};
use common::Broker;

/// `$SYS` every second.
const SYS_EVERY_SECOND: &str = "[metrics]\nsys_interval = 1\n";

/// Longest wait for a value to reach what a test expects (a few rounds).
const SYS_TIMEOUT: Duration = Duration::from_secs(10);

/// A subscriber on `$SYS/#` and the latest value it received on every topic.
struct SysWatcher {
    client: Client,
    latest: HashMap<String, String>,
}

impl SysWatcher {
    async fn subscribe(port: u16, id: &str) -> SysWatcher {
        let mut client = client::connect(port, id).await;
        client.subscribe("$SYS/#", 0).await;
        SysWatcher {
            client,
            latest: HashMap::new(),
        }
    }

    /// Reads `$SYS` publishes until the latest values satisfy `done`; panics after
    /// [`SYS_TIMEOUT`], saying `what` was awaited.
    async fn wait_until(&mut self, what: &str, done: impl Fn(&HashMap<String, String>) -> bool) {
        let deadline = Instant::now() + SYS_TIMEOUT;
        while !done(&self.latest) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(publish) = self.client.try_next_publish(left).await else {
                panic!("{what}: not seen in $SYS within {SYS_TIMEOUT:?}");
            };
            let payload = String::from_utf8(publish.payload.to_vec()).expect("UTF-8 payload");
            self.latest.insert(publish.topic, payload);
        }
    }

    /// Waits until `topic`'s latest value satisfies `accept`; returns it.
    async fn value(&mut self, topic: &str, accept: impl Fn(&str) -> bool) -> String {
        let what = format!("an acceptable value of {topic}");
        self.wait_until(&what, |latest| latest.get(topic).is_some_and(|v| accept(v)))
            .await;
        self.latest[topic].clone()
    }

    /// Waits until `topic` holds exactly `expected`.
    async fn expect(&mut self, topic: &str, expected: &str) {
        self.value(topic, |v| v == expected).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_values_follow_clients_and_publishes() {
    let broker = Broker::with_config(SYS_EVERY_SECOND, &[]);
    let mut sys = SysWatcher::subscribe(broker.port, "sys-watcher").await;

    let version = sys.value("$SYS/broker/version", |_| true).await;
    assert_eq!(
        version,
        format!("hydrant version {}", env!("CARGO_PKG_VERSION"))
    );
    sys.expect("$SYS/broker/hydrant/cores", "2").await;
    sys.expect("$SYS/broker/clients/connected", "1").await;

    // Two more clients, on whichever cores the kernel gives them: the figure is the sum.
    let mut subscriber = client::connect(broker.port, "sys-sub").await;
    subscriber.subscribe("sys/data/#", 1).await;
    let mut publisher = client::connect(broker.port, "sys-pub").await;
    sys.expect("$SYS/broker/clients/connected", "3").await;
    sys.expect("$SYS/broker/subscriptions/count", "2").await;
    let per_core = |latest: &HashMap<String, String>| -> u64 {
        (0..2)
            .filter_map(|core| {
                latest.get(&format!(
                    "$SYS/broker/hydrant/core/{core}/clients/connected"
                ))
            })
            .map(|value| value.parse::<u64>().expect("a count"))
            .sum()
    };
    sys.wait_until("the cores' clients adding up to 3", |latest| {
        per_core(latest) == 3
    })
    .await;

    for seq in 0..25 {
        publisher
            .publish("sys/data/t", 1, false, format!("reading {seq}"))
            .await;
    }
    assert_eq!(subscriber.collect_publishes(25).await.len(), 25);
    sys.expect("$SYS/broker/publish/messages/received", "25")
        .await;
    sys.value("$SYS/broker/publish/messages/sent", |v| {
        v.parse::<u64>().is_ok_and(|n| n >= 25)
    })
    .await;
    sys.expect("$SYS/broker/publish/messages/dropped", "0")
        .await;
    let load = sys
        .value("$SYS/broker/load/publish/received/1min", |v| {
            v.parse::<f64>().is_ok_and(|rate| rate > 0.0)
        })
        .await;
    assert!(
        load.contains('.'),
        "two decimals, as Mosquitto writes them: {load}"
    );

    subscriber.disconnect().await;
    publisher.disconnect().await;
    sys.expect("$SYS/broker/clients/connected", "1").await;
    sys.expect("$SYS/broker/clients/maximum", "3").await;
    sys.wait_until("the cores' clients adding up to 1", |latest| {
        per_core(latest) == 1
    })
    .await;
}

/// Reads `$SYS` publishes until one carries the uptime.
async fn wait_for_uptime(watcher: &mut Client) {
    let deadline = Instant::now() + SYS_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match watcher.try_next_publish(left).await {
            Some(publish) if publish.topic == "$SYS/broker/uptime" => return,
            Some(_) => {}
            None => panic!("no $SYS/broker/uptime within {SYS_TIMEOUT:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_retained_and_published_only_when_they_change() {
    let broker = Broker::with_config(SYS_EVERY_SECOND, &[]);
    let mut watcher = client::connect(broker.port, "sys-changes").await;
    watcher.subscribe("$SYS/broker/#", 0).await;
    wait_for_uptime(&mut watcher).await;

    // Over three more rounds the uptime changes every time; the version never does. (Values
    // flagged retained are the ones sent on subscribing, when it came after a round.)
    let mut live = Vec::new();
    let until = Instant::now() + Duration::from_millis(3200);
    while let Some(publish) = watcher
        .try_next_publish(until.saturating_duration_since(Instant::now()))
        .await
    {
        if !publish.retain {
            live.push(publish.topic);
        }
    }
    let uptimes = live.iter().filter(|t| *t == "$SYS/broker/uptime").count();
    assert!(uptimes >= 2, "uptime published {uptimes} times: {live:?}");
    assert!(
        !live.iter().any(|t| t == "$SYS/broker/version"),
        "the version does not change, so it is not published again"
    );

    // A subscriber that comes later gets the retained value at once.
    let mut late = client::connect(broker.port, "sys-late").await;
    late.subscribe("$SYS/broker/version", 0).await;
    let publish = late.next_publish("the retained $SYS/broker/version").await;
    assert!(publish.retain, "sent from the retained store");
    assert_eq!(
        String::from_utf8_lossy(&publish.payload),
        format!("hydrant version {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_interval_zero_publishes_nothing() {
    let broker = Broker::with_config("[metrics]\nsys_interval = 0\n", &[]);
    let mut watcher = client::connect(broker.port, "sys-off").await;
    watcher.subscribe("$SYS/#", 0).await;
    watcher
        .expect_no_publish(Duration::from_millis(2500), "sys_interval = 0")
        .await;
}
