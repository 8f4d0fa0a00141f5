//! Many publishers at once into one subscriber that keeps up: the broker holds its readers
//! back while the subscriber waits for its turn to write, so nothing is dropped, although one
//! round of the publishers brings far more than the subscriber's queue holds.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::client;
use common::raw::{self, Connect, RawClient};
use common::Broker;
use tokio::sync::Barrier;

/// A queue of 100 messages: the 40 publishers below bring 2,000 at once.
const SMALL_QUEUES: &str = "[limits]\nmax_queued_messages = 100\n";

const PUBLISHERS: usize = 40;

/// Each publisher's burst, sent in one write: less than the queue, so that one publisher's
/// read never fills it on its own.
const BURST: usize = 50;

/// Hard bound on the whole transfer (a hang guard, not a performance assertion).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_keeps_up_loses_nothing_to_many_publishers_at_once() {
    let broker = Broker::with_config(SMALL_QUEUES, &[]);
    let mut subscriber = client::connect(broker.port, "fan-in-sub").await;
    assert_eq!(subscriber.subscribe("fan/#", 0).await, 0);

    let mut publishers = Vec::new();
    for index in 0..PUBLISHERS {
        let id = format!("fan-in-pub-{index}");
        publishers.push(RawClient::connected(broker.port, &Connect::v311(&id)).await);
    }
    // Every publisher writes its burst at the same moment. The whole flood is about 40 KiB,
    // far less than the subscriber's socket buffers, so the broker's writes to it are never
    // refused: whatever the subscriber lacks was dropped by the broker, not by its socket.
    let start = Arc::new(Barrier::new(PUBLISHERS));
    let mut sending = Vec::new();
    for (index, mut publisher) in publishers.into_iter().enumerate() {
        let start = start.clone();
        sending.push(tokio::spawn(async move {
            let topic = format!("fan/{index}");
            let burst: Vec<u8> = (0..BURST)
                .flat_map(|seq| {
                    raw::publish(topic.as_bytes(), &seq.to_be_bytes(), 0, false, false, 0)
                })
                .collect();
            start.wait().await;
            publisher.stream_write(&burst).await.expect("write burst");
            publisher
        }));
    }
    let mut publishers = Vec::new();
    for sent in sending {
        publishers.push(sent.await.expect("publisher task"));
    }

    let expected = PUBLISHERS * BURST;
    let received = tokio::time::timeout(TRANSFER_TIMEOUT, subscriber.collect_publishes(expected))
        .await
        .expect("the flood is delivered or stops");
    let mut per_publisher: HashMap<String, Vec<usize>> = HashMap::new();
    for publish in &received {
        let seq = usize::from_be_bytes(
            publish.payload[..]
                .try_into()
                .expect("a sequence number payload"),
        );
        per_publisher
            .entry(publish.topic.clone())
            .or_default()
            .push(seq);
    }
    let whole: Vec<usize> = (0..BURST).collect();
    let short: Vec<(&String, usize)> = per_publisher
        .iter()
        .filter(|(_, seqs)| **seqs != whole)
        .map(|(topic, seqs)| (topic, seqs.len()))
        .collect();
    assert!(
        short.is_empty() && per_publisher.len() == PUBLISHERS,
        "every publisher's {BURST} messages arrive, in order: {} of {expected} arrived, from {} \
         publishers; incomplete or out of order (topic, count): {short:?}",
        received.len(),
        per_publisher.len()
    );
    drop(publishers);
}
