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

/// Queues big enough for every message of a test: the contract lets a broker drop QoS 1/2
/// messages past `max_queued_messages` (1000 by default) when the subscriber falls behind a
/// full-speed publisher; these tests are about crossing cores, not about that limit.
const ROOMY_QUEUES: &str = "[limits]\nmax_queued_messages = 10000\n";

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

/// Describes what is wrong with a received sequence (empty when it is 0..MESSAGES in order).
fn sequence_report(seqs: &[u32]) -> String {
    let mut seen = vec![0u32; MESSAGES as usize];
    let mut problems = Vec::new();
    for &seq in seqs {
        match seen.get_mut(seq as usize) {
            Some(count) => *count += 1,
            None => problems.push(format!("unknown sequence number {seq}")),
        }
    }
    let missing: Vec<u32> = (0..MESSAGES).filter(|&s| seen[s as usize] == 0).collect();
    let duplicated: Vec<u32> = (0..MESSAGES).filter(|&s| seen[s as usize] > 1).collect();
    let out_of_order: Vec<(usize, u32, u32)> = seqs
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1] <= w[0])
        .map(|(i, w)| (i + 1, w[0], w[1]))
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{} missing: {:?}",
            missing.len(),
            &missing[..missing.len().min(40)]
        ));
    }
    if !duplicated.is_empty() {
        problems.push(format!(
            "{} duplicated: {:?}",
            duplicated.len(),
            &duplicated[..duplicated.len().min(40)]
        ));
    }
    if !out_of_order.is_empty() {
        problems.push(format!(
            "{} out of order (position, previous, this): {:?}",
            out_of_order.len(),
            &out_of_order[..out_of_order.len().min(20)]
        ));
    }
    problems.join("; ")
}

async fn transfer_in_order(qos_level: u8, tag: &str) {
    let broker = Broker::with_config(ROOMY_QUEUES, &[]);
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
        let mut seqs = Vec::with_capacity(MESSAGES as usize);
        while seqs.len() < MESSAGES as usize {
            let Some(p) = sub.try_next_publish(Duration::from_secs(10)).await else {
                break;
            };
            let seq = <[u8; 4]>::try_from(&p.payload[..])
                .map(u32::from_be_bytes)
                .unwrap_or_else(|_| panic!("{tag}: corrupted payload {:?}", p.payload));
            assert_eq!(level(p.qos), qos_level, "{tag}: delivered QoS");
            assert!(!p.dup, "{tag}: DUP on message {seq} without a reconnect");
            seqs.push(seq);
        }
        seqs
    };
    let seqs = tokio::time::timeout(TRANSFER_TIMEOUT, receiving)
        .await
        .unwrap_or_else(|_| panic!("{tag}: transfer did not finish within {TRANSFER_TIMEOUT:?}"));
    let report = sequence_report(&seqs);
    if !report.is_empty() {
        let publisher_state = match tokio::time::timeout(Duration::from_secs(10), sending).await {
            Ok(Ok(_)) => "the publisher got all its acknowledgements".to_string(),
            Ok(Err(e)) => match e.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "publisher task panicked".into()),
                Err(e) => format!("publisher task: {e}"),
            },
            Err(_) => "the publisher is still blocked".to_string(),
        };
        panic!(
            "{tag}: {MESSAGES} QoS {qos_level} messages from core {pub_core} to core {sub_core} must arrive exactly once and in order; received {}: {report}; publisher: {publisher_state}",
            seqs.len()
        );
    }
    assert!(
        report.is_empty(),
        "{tag}: {MESSAGES} QoS {qos_level} messages from core {pub_core} to core {sub_core} must arrive exactly once and in order; received {}: {report}",
        seqs.len()
    );
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
