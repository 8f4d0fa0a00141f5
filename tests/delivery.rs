//! Message delivery: QoS downgrade, retained messages, wildcard matching, `$` topics and
//! overlapping subscriptions.

mod common;

use std::collections::BTreeMap;

use common::client::{self, level};
use common::{Broker, QUIET, SETTLED};

/// A payload that is not valid UTF-8 and contains every byte value, so corruption shows.
fn binary_payload(tag: &str) -> Vec<u8> {
    let mut payload = tag.as_bytes().to_vec();
    payload.push(0);
    payload.extend(0..=255u8);
    payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_publish_qos_and_granted_qos_delivers_the_minimum() {
    let broker = Broker::start(&[]);
    let mut sub = client::connect(broker.port, "matrix-sub").await;
    let mut publisher = client::connect(broker.port, "matrix-pub").await;
    for granted in 0..=2u8 {
        let got = sub.subscribe(&format!("matrix/g{granted}"), granted).await;
        assert_eq!(got, granted, "granted QoS for a QoS {granted} subscription");
    }

    let mut expected = BTreeMap::new();
    for granted in 0..=2u8 {
        for published in 0..=2u8 {
            let topic = format!("matrix/g{granted}");
            let payload = binary_payload(&format!("p{published}-g{granted}"));
            publisher
                .publish(&topic, published, false, payload.clone())
                .await;
            expected.insert(payload, (topic, published.min(granted)));
        }
    }

    let mut seen = BTreeMap::new();
    for _ in 0..expected.len() {
        let p = sub.next_publish("one of the 9 QoS matrix messages").await;
        let key = p.payload.to_vec();
        let Some((topic, qos)) = expected.get(&key) else {
            panic!(
                "unexpected or corrupted payload {:?} on {}",
                p.payload, p.topic
            );
        };
        assert_eq!(
            &p.topic,
            topic,
            "topic of {:?}",
            String::from_utf8_lossy(&key[..5])
        );
        assert_eq!(
            level(p.qos),
            *qos,
            "delivered QoS = min(publish, granted) for {topic}"
        );
        assert!(!p.retain, "live forwarding must clear the retain flag");
        assert!(!p.dup, "first delivery must not be DUP");
        assert!(
            seen.insert(key, ()).is_none(),
            "message delivered twice on {topic}"
        );
    }
    sub.expect_no_publish(QUIET, "all 9 messages already received")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_forwarding_clears_retain_flag_of_retained_publish() {
    let broker = Broker::start(&[]);
    let mut sub = client::connect(broker.port, "live-sub").await;
    sub.subscribe("live/retained", 1).await;
    let mut publisher = client::connect(broker.port, "live-pub").await;
    publisher.publish("live/retained", 1, true, "kept").await;
    let p = sub.next_publish("retained publish forwarded live").await;
    assert_eq!(&p.payload[..], b"kept");
    assert!(
        !p.retain,
        "a live subscriber gets retain=false (MQTT-3.3.1-9)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_stored_replaced_and_cleared() {
    let broker = Broker::start(&[]);
    let mut publisher = client::connect(broker.port, "ret-pub").await;

    publisher.publish("ret/a", 1, true, "first").await;
    let mut first = client::connect(broker.port, "ret-sub-1").await;
    first.subscribe("ret/a", 1).await;
    let p = first
        .next_publish("stored retained message on subscribe")
        .await;
    assert_eq!(p.topic, "ret/a");
    assert_eq!(&p.payload[..], b"first");
    assert!(
        p.retain,
        "a retained message sent on subscribe has retain=true"
    );
    assert_eq!(level(p.qos), 1);
    first
        .expect_no_publish(QUIET, "only one retained message")
        .await;

    publisher.publish("ret/a", 1, true, "second").await;
    let live = first.next_publish("replacement forwarded live").await;
    assert_eq!(&live.payload[..], b"second");
    assert!(!live.retain);

    let mut second = client::connect(broker.port, "ret-sub-2").await;
    second.subscribe("ret/+", 2).await;
    let p = second.next_publish("replaced retained message").await;
    assert_eq!(
        &p.payload[..],
        b"second",
        "the newer retained message replaces the older"
    );
    assert!(p.retain);
    assert_eq!(
        level(p.qos),
        1,
        "retained delivered at min(stored QoS 1, granted 2)"
    );
    second
        .expect_no_publish(QUIET, "exactly one retained message per topic")
        .await;

    publisher.publish("ret/a", 1, true, Vec::new()).await;
    let cleared = first
        .next_publish("empty retained publish forwarded live")
        .await;
    assert!(cleared.payload.is_empty());

    let mut third = client::connect(broker.port, "ret-sub-3").await;
    third.subscribe("ret/#", 1).await;
    third
        .expect_no_publish(
            QUIET,
            "an empty retained payload clears the retained message",
        )
        .await;
}

/// Which of `topics` each filter must receive.
const WILDCARD_TABLE: &[(&str, &[&str])] = &[
    (
        "sport/#",
        &["sport", "sport/tennis", "sport/tennis/player1", "sport/"],
    ),
    ("sport/+", &["sport/tennis", "sport/"]),
    ("sport/tennis/+", &["sport/tennis/player1"]),
    ("+", &["sport", "sports"]),
    ("+/+", &["sport/tennis", "/finance", "sport/"]),
    ("/+", &["/finance"]),
    ("+/tennis/#", &["sport/tennis", "sport/tennis/player1"]),
    (
        "#",
        &[
            "sport",
            "sport/tennis",
            "sport/tennis/player1",
            "sports",
            "/finance",
            "sport/",
        ],
    ),
];

const WILDCARD_TOPICS: &[&str] = &[
    "sport",
    "sport/tennis",
    "sport/tennis/player1",
    "sports",
    "/finance",
    "sport/",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plus_and_hash_wildcards_match_the_right_levels() {
    let broker = Broker::start(&[]);
    let mut subscribers = Vec::new();
    for (n, (filter, _)) in WILDCARD_TABLE.iter().enumerate() {
        let mut sub = client::connect(broker.port, &format!("wild-{n}")).await;
        sub.subscribe(filter, 1).await;
        subscribers.push(sub);
    }
    let mut publisher = client::connect(broker.port, "wild-pub").await;
    for topic in WILDCARD_TOPICS {
        publisher
            .publish(topic, 1, false, topic.as_bytes().to_vec())
            .await;
    }
    let total: usize = WILDCARD_TABLE.iter().map(|(_, want)| want.len()).sum();
    let mut received = Vec::new();
    for ((_, expected), sub) in WILDCARD_TABLE.iter().zip(subscribers.iter_mut()) {
        received.push(sub.collect_publishes(expected.len()).await);
    }
    tokio::time::sleep(QUIET).await;
    for (got, sub) in received.iter_mut().zip(subscribers.iter_mut()) {
        got.extend(sub.drain_publishes(SETTLED).await);
    }
    let mut failures = Vec::new();
    for ((filter, expected), got) in WILDCARD_TABLE.iter().zip(received) {
        for p in &got {
            assert_eq!(p.topic.as_bytes(), &p.payload[..], "topic intact");
        }
        let mut got: Vec<String> = got.into_iter().map(|p| p.topic).collect();
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|t| t.to_string()).collect();
        want.sort();
        if got != want {
            failures.push(format!("filter {filter:?}: expected {want:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "wrong deliveries ({} expected in total):\n{}",
        total,
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dollar_topics_are_not_matched_by_leading_wildcards() {
    let broker = Broker::start(&[]);
    let filters = ["#", "+/x", "+/#", "$test/#", "$test/+"];
    let mut subs = Vec::new();
    for (n, filter) in filters.iter().enumerate() {
        let mut sub = client::connect(broker.port, &format!("dollar-{n}")).await;
        sub.subscribe(filter, 1).await;
        subs.push(sub);
    }
    let mut publisher = client::connect(broker.port, "dollar-pub").await;
    publisher.publish("$test/x", 1, false, "dollar").await;
    publisher.publish("plain/x", 1, false, "plain").await;

    let mut received = Vec::new();
    for sub in subs.iter_mut() {
        received.push(sub.collect_publishes(1).await);
    }
    tokio::time::sleep(QUIET).await;
    let mut failures = Vec::new();
    for ((filter, sub), mut got) in filters.iter().zip(subs.iter_mut()).zip(received) {
        got.extend(sub.drain_publishes(SETTLED).await);
        let got: Vec<String> = got.into_iter().map(|p| p.topic).collect();
        let want = if filter.starts_with('$') {
            vec!["$test/x".to_string()]
        } else {
            vec!["plain/x".to_string()]
        };
        if got != want {
            failures.push(format!("filter {filter:?}: expected {want:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "`#`/`+` must not match topics starting with `$` (MQTT-4.7.2-1):\n{}",
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_deliver_once_at_the_highest_qos() {
    let broker = Broker::start(&[]);
    let mut sub = client::connect(broker.port, "overlap-sub").await;
    assert_eq!(sub.subscribe("ov/#", 0).await, 0);
    assert_eq!(sub.subscribe("ov/+", 2).await, 2);
    assert_eq!(sub.subscribe("ov/a", 1).await, 1);
    let mut publisher = client::connect(broker.port, "overlap-pub").await;

    publisher.publish("ov/a", 2, false, "q2").await;
    let p = sub
        .next_publish("overlapping delivery of a QoS 2 message")
        .await;
    assert_eq!(&p.payload[..], b"q2");
    assert_eq!(level(p.qos), 2, "delivered at the maximum granted QoS");
    sub.expect_no_publish(QUIET, "overlapping subscriptions deliver once")
        .await;

    publisher.publish("ov/a", 1, false, "q1").await;
    let p = sub
        .next_publish("overlapping delivery of a QoS 1 message")
        .await;
    assert_eq!(&p.payload[..], b"q1");
    assert_eq!(level(p.qos), 1, "min(publish 1, max granted 2)");
    sub.expect_no_publish(QUIET, "overlapping subscriptions deliver once")
        .await;

    publisher.publish("ov/b/c", 2, false, "deep").await;
    let p = sub.next_publish("only ov/# matches ov/b/c").await;
    assert_eq!(
        level(p.qos),
        0,
        "ov/b/c matches only the QoS 0 subscription"
    );
    sub.expect_no_publish(QUIET, "one delivery").await;
}
