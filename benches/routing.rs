//! Subscription matching on a trie holding many filters, and the fan-out of one message to
//! many subscribers (one shared encoding, one frame per subscriber queue).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hydrant::connection::{Frame, OutboundQueue};
use hydrant::protocol::{EncodedPublish, QoS};
use hydrant::topic::{SubscriptionTrie, TopicFilter, TopicName};

const EVENTS: [&str; 4] = [
    "comment-added",
    "patchset-created",
    "change-merged",
    "ref-updated",
];

/// A firehose-shaped trie: per-repository filters, per-event wildcards and a few `#`.
fn firehose_trie(repos: usize) -> SubscriptionTrie<u64, QoS> {
    let mut trie = SubscriptionTrie::new();
    let mut key = 0;
    for repo in 0..repos {
        for filter in [
            format!("gerrit/openstack/repo{repo}/#"),
            format!("gerrit/openstack/repo{repo}/+"),
            format!("gearman-subunit/+/openstack/repo{repo}/+"),
        ] {
            let filter = TopicFilter::try_from(filter.as_str()).expect("valid filter");
            trie.insert(&filter, key, QoS::AtMostOnce);
            key += 1;
        }
    }
    for event in EVENTS {
        let filter =
            TopicFilter::try_from(format!("gerrit/+/+/{event}").as_str()).expect("valid filter");
        trie.insert(&filter, key, QoS::AtLeastOnce);
        key += 1;
    }
    for _ in 0..10 {
        trie.insert(
            &TopicFilter::try_from("#").expect("valid filter"),
            key,
            QoS::AtMostOnce,
        );
        key += 1;
    }
    trie
}

fn matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("trie_match");
    for repos in [100, 10_000] {
        let trie = firehose_trie(repos);
        let topic = TopicName::try_from(
            format!("gerrit/openstack/repo{}/comment-added", repos / 2).as_str(),
        )
        .expect("valid topic");
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{}_filters", trie.len())),
            &(trie, topic),
            |b, (trie, topic)| {
                b.iter(|| {
                    let mut visited = 0;
                    trie.for_each_match(topic, |key, qos| {
                        black_box((key, qos));
                        visited += 1;
                    });
                    visited
                });
            },
        );
    }
    group.finish();
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_encode");
    let topic = TopicName::try_from("gerrit/openstack/nova/comment-added").expect("valid topic");
    let payload = Bytes::from(vec![b'x'; 1024]);
    for subscribers in [100, 1000] {
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_function(BenchmarkId::from_parameter(subscribers), |b| {
            let mut queues: Vec<OutboundQueue> = (0..subscribers)
                .map(|_| OutboundQueue::new(10, 0))
                .collect();
            let mut batch = bytes::BytesMut::new();
            b.iter(|| {
                // Encode once, queue the shared encoding for every subscriber, then drain
                // every queue as the writers would.
                let shared = EncodedPublish::new(&topic, &payload, QoS::AtMostOnce, false);
                for queue in &mut queues {
                    let frame = Frame::Publish {
                        packet: shared.clone(),
                        packet_id: None,
                        dup: false,
                    };
                    black_box(queue.push_droppable(frame).is_ok());
                }
                for queue in &mut queues {
                    batch.clear();
                    queue.drain_into(&mut batch);
                    black_box(&batch);
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, matching, fanout);
criterion_main!(benches);
