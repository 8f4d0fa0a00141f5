//! Publisher and subscriber on different cores (proven by the broker's connect lines):
//! every message crosses the shard boundary, arrives once, and in order.

mod common;

use std::time::Duration;

use common::client::{self, level, Client};
use common::{Broker, LOG_TIMEOUT, QUIET};

/// Messages sent per test.
const MESSAGES: u32 = 2000;

/// Attempts at placing the publisher on another core than the subscriber.
const PLACEMENT_ATTEMPTS: usize = 16;

/// Hard bound on one whole transfer (a hang guard, not a performance assertion).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);

/// Connects a subscriber, then publishers until one lands on another core.
async fn split_pair(broker: &Broker, tag: &str) -> (Client, Client, usize, usize) {
    let sub_id = format!("{tag}-sub");
    let sub = client::connect(broker.port, &sub_id).await;
    let sub_core = broker.core_of(&sub_id, LOG_TIMEOUT);
    let mut tried = Vec::new();
    for attempt in 0..PLACEMENT_ATTEMPTS {
        let pub_id = format!("{tag}-pub-{attempt}");
        let publisher = client::connect(broker.port, &pub_id).await;
        let pub_core = broker.core_of(&pub_id, LOG_TIMEOUT);
        if pub_core != sub_core {
            println!("{tag}: subscriber on core {sub_core}, publisher on core {pub_core}");
            return (sub, publisher, sub_core, pub_core);
        }
        tried.push(pub_core);
        publisher.disconnect().await;
    }
    panic!(
        "{tag}: subscriber on core {sub_core}; every publisher landed on the same core: {tried:?}"
    );
}

async fn transfer_in_order(qos_level: u8, tag: &str) {
    let broker = Broker::start(&[]);
    let (mut sub, mut publisher, sub_core, pub_core) = split_pair(&broker, tag).await;
    assert_ne!(sub_core, pub_core);
    let topic = format!("xcore/{tag}");
    assert_eq!(sub.subscribe(&topic, qos_level).await, qos_level);

    let sending = tokio::spawn(async move {
        for seq in 0..MESSAGES {
            publisher
                .publish_no_wait(&topic, qos_level, false, seq.to_be_bytes().to_vec())
                .await;
        }
        publisher.wait_acks(qos_level, MESSAGES as usize).await;
        publisher
    });

    let receiving = async {
        for expected in 0..MESSAGES {
            let p = sub
                .try_next_publish(Duration::from_secs(10))
                .await
                .unwrap_or_else(|| {
                    panic!("{tag}: message #{expected} of {MESSAGES} not received (cores {pub_core}->{sub_core})")
                });
            let seq = <[u8; 4]>::try_from(&p.payload[..])
                .map(u32::from_be_bytes)
                .unwrap_or_else(|_| panic!("{tag}: corrupted payload {:?}", p.payload));
            assert_eq!(
                seq, expected,
                "{tag}: messages must arrive exactly once and in order (cores {pub_core}->{sub_core})"
            );
            assert_eq!(level(p.qos), qos_level);
            assert!(!p.dup, "{tag}: no DUP without a reconnect");
        }
    };
    tokio::time::timeout(TRANSFER_TIMEOUT, receiving)
        .await
        .unwrap_or_else(|_| panic!("{tag}: transfer did not finish within {TRANSFER_TIMEOUT:?}"));
    let _publisher = tokio::time::timeout(TRANSFER_TIMEOUT, sending)
        .await
        .expect("publisher acknowledgements")
        .expect("publisher task");
    sub.expect_no_publish(QUIET, "no duplicates after the last message")
        .await;
    println!("{tag}: {MESSAGES} QoS {qos_level} messages from core {pub_core} to core {sub_core}, exactly once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_messages_cross_cores_exactly_once_in_order() {
    transfer_in_order(2, "xq2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_messages_cross_cores_in_order_without_loss() {
    transfer_in_order(1, "xq1").await;
}
