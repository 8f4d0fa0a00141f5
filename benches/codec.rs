//! Decoding and encoding PUBLISH packets: the per-message cost of the codec.
//!
//! With `CODEC_FIXED_RUN` set in the environment the binary skips criterion and runs each
//! step of the fan-in path a fixed number of times instead, one `measure_*` function per step,
//! so that `valgrind --tool=callgrind` counts exact instructions per message (the inclusive
//! cost of a `measure_*` function divided by [`FIXED_RUN_MESSAGES`]): see BENCHMARKS.md.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use hydrant::protocol::{
    self, DeliveryProperties, EncodedPublish, MessageProperties, Packet, PacketId, ProtocolVersion,
    Publish, PublishTopic, QoS,
};
use hydrant::topic::{SubscriptionTrie, TopicFilter, TopicName};

/// Payload sizes of the firehose: tiny worker events up to large review comments.
const SIZES: [usize; 3] = [64, 1024, 10 * 1024];

fn publish(size: usize, qos: QoS) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: TopicName::try_from("gerrit/openstack/nova/comment-added").expect("valid topic"),
        packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(42).expect("non-zero")),
        payload: Bytes::from(vec![b'x'; size]),
    }
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_publish");
    for size in SIZES {
        let mut wire = BytesMut::new();
        protocol::encode(&Packet::Publish(publish(size, QoS::AtLeastOnce)), &mut wire);
        // A read buffer holding 64 packets back to back, as a busy publisher's socket delivers.
        let batch: Vec<u8> = wire.iter().copied().cycle().take(wire.len() * 64).collect();
        group.throughput(Throughput::Elements(64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &batch, |b, batch| {
            b.iter(|| {
                let mut buf = BytesMut::from(&batch[..]);
                let mut count = 0;
                while let Ok(Some(packet)) = protocol::decode(&mut buf, 1 << 20) {
                    black_box(&packet);
                    count += 1;
                }
                assert_eq!(count, 64);
            });
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_publish");
    for size in SIZES {
        let packet = publish(size, QoS::AtLeastOnce);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("full", size), &packet, |b, packet| {
            let mut out = BytesMut::with_capacity(size + 64);
            b.iter(|| {
                out.clear();
                packet.encode(&mut out);
                black_box(&out);
            });
        });
        let shared = EncodedPublish::new(&packet.topic, &packet.payload, QoS::AtLeastOnce, false);
        group.bench_with_input(
            BenchmarkId::new("shared_write", size),
            &shared,
            |b, shared| {
                let mut out = BytesMut::with_capacity(size + 64);
                let id = PacketId::new(7).expect("non-zero");
                b.iter(|| {
                    out.clear();
                    shared.write_to(&mut out, Some(id), false);
                    black_box(&out);
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, decode, encode);

/// Messages each step of a fixed run handles.
const FIXED_RUN_MESSAGES: usize = 100_000;

/// Payload size of the fan-in goal of issue 3.
const FAN_IN_PAYLOAD: usize = 64;

/// Publishers of the fan-in scenario, each on its own topic (`loadtest/fanin/<i>`).
const FAN_IN_PUBLISHERS: usize = 100;

/// The properties of a message published without any, as the broker keeps them.
static NO_PROPERTIES: MessageProperties = MessageProperties {
    payload_format: None,
    message_expiry_interval: None,
    content_type: None,
    response_topic: None,
    correlation_data: None,
    user_properties: Vec::new(),
};

/// The fan-in topics, one per publisher, as the load generator names them.
fn fan_in_topics() -> Vec<TopicName> {
    (0..FAN_IN_PUBLISHERS)
        .map(|i| TopicName::try_from(format!("loadtest/fanin/{i}").as_str()).expect("valid topic"))
        .collect()
}

/// A read buffer holding `FIXED_RUN_MESSAGES` QoS 0 publishes of the fan-in topics in turn.
fn fan_in_wire(version: ProtocolVersion) -> BytesMut {
    let payload = Bytes::from(vec![b'x'; FAN_IN_PAYLOAD]);
    let topics = fan_in_topics();
    let mut wire = BytesMut::new();
    for topic in topics.iter().cycle().take(FIXED_RUN_MESSAGES) {
        let encoded = encode_for(version, topic, &payload);
        encoded.write_to(&mut wire, None, false);
    }
    wire
}

/// The shared encoding of a QoS 0 message for a subscriber speaking `version`.
fn encode_for(version: ProtocolVersion, topic: &TopicName, payload: &Bytes) -> EncodedPublish {
    match version {
        ProtocolVersion::V5 => EncodedPublish::new_v5(
            &PublishTopic::Name(topic.clone()),
            payload,
            QoS::AtMostOnce,
            false,
            DeliveryProperties {
                message: &NO_PROPERTIES,
                message_expiry_interval: None,
                subscription_ids: &[],
            },
        ),
        ProtocolVersion::V3_1 | ProtocolVersion::V3_1_1 => {
            EncodedPublish::new(topic, payload, QoS::AtMostOnce, false)
        }
    }
}

/// Decodes (and drops) every packet of `wire`, as a connection's reader does.
#[inline(always)]
fn decode_all(wire: &mut BytesMut, version: ProtocolVersion) -> usize {
    let mut count = 0;
    while let Ok(Some(packet)) = protocol::decode_with(wire, 1 << 20, Some(version)) {
        black_box(&packet);
        count += 1;
    }
    count
}

/// Encodes each message for its subscriber, queues a copy of the encoding (a frame) and
/// writes it to the connection's write buffer, as the fan-in's subscriber core does.
#[inline(always)]
fn encode_all(topics: &[TopicName], payload: &Bytes, version: ProtocolVersion, out: &mut BytesMut) {
    for topic in topics.iter().cycle().take(FIXED_RUN_MESSAGES) {
        let shared = encode_for(version, topic, payload);
        let frame = black_box(shared.clone());
        drop(shared);
        if out.len() > (1 << 16) {
            out.clear();
        }
        frame.write_to(out, None, false);
    }
}

/// [`decode_all`] of MQTT 3.1.1 publishes.
#[inline(never)]
fn measure_decode_v3(wire: &mut BytesMut) -> usize {
    decode_all(wire, ProtocolVersion::V3_1_1)
}

/// [`decode_all`] of MQTT 5 publishes.
#[inline(never)]
fn measure_decode_v5(wire: &mut BytesMut) -> usize {
    decode_all(wire, ProtocolVersion::V5)
}

/// [`encode_all`] for an MQTT 3.1.1 subscriber.
#[inline(never)]
fn measure_encode_v3(topics: &[TopicName], payload: &Bytes, out: &mut BytesMut) {
    encode_all(topics, payload, ProtocolVersion::V3_1_1, out);
}

/// [`encode_all`] for an MQTT 5 subscriber.
#[inline(never)]
fn measure_encode_v5(topics: &[TopicName], payload: &Bytes, out: &mut BytesMut) {
    encode_all(topics, payload, ProtocolVersion::V5, out);
}

/// Matches each fan-in topic against the subscriber's `loadtest/fanin/+`.
#[inline(never)]
fn measure_match(topics: &[TopicName], trie: &SubscriptionTrie<u64, QoS>) -> usize {
    let mut matched = 0;
    for topic in topics.iter().cycle().take(FIXED_RUN_MESSAGES) {
        trie.for_each_match(black_box(topic), |_, _| matched += 1);
    }
    matched
}

/// Runs each step of the fan-in path `FIXED_RUN_MESSAGES` times, for callgrind.
fn fixed_run() {
    let mut wire = fan_in_wire(ProtocolVersion::V3_1_1);
    assert_eq!(measure_decode_v3(&mut wire), FIXED_RUN_MESSAGES);
    let mut wire = fan_in_wire(ProtocolVersion::V5);
    assert_eq!(measure_decode_v5(&mut wire), FIXED_RUN_MESSAGES);
    let topics = fan_in_topics();
    let payload = Bytes::from(vec![b'x'; FAN_IN_PAYLOAD]);
    let mut out = BytesMut::with_capacity(1 << 17);
    measure_encode_v3(&topics, &payload, &mut out);
    measure_encode_v5(&topics, &payload, &mut out);
    let mut trie = SubscriptionTrie::new();
    let filter = TopicFilter::try_from("loadtest/fanin/+").expect("valid filter");
    trie.insert(&filter, 1, QoS::AtMostOnce);
    assert_eq!(measure_match(&topics, &trie), FIXED_RUN_MESSAGES);
}

fn main() {
    if std::env::var_os("CODEC_FIXED_RUN").is_some() {
        fixed_run();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
