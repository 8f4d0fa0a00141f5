//! Decoding and encoding PUBLISH packets: the per-message cost of the codec.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hydrant::protocol::{self, EncodedPublish, Packet, PacketId, Publish, QoS};
use hydrant::topic::TopicName;

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
criterion_main!(benches);
