//! Publishers: a persistent one keeps one connection and publishes at a rate or as fast as its
//! in-flight window allows; a churning one opens a new connection for every message, as the
//! firehose's services and pymqttbench's workers do.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use glommio::sync::StaticPermit;
use hydrant::protocol::{EncodedPublish, Packet, PacketId, Publish, QoS};
use hydrant::topic::TopicName;

use super::executor::{Executor, StreamSent};
use super::shared::bump;
use super::signal::Signal;
use super::subscriber::DISCONNECT_LINGER;
use crate::client::{within, ClientError, Connection};
use crate::payload::{filler_payload, gerrit_event_payload, Header, HEADER_LEN};
use crate::plan::{PayloadSpec, PublishMode, PublisherPlan};
use crate::rng::Rng;

/// Messages encoded into one write at most.
const MAX_BATCH: usize = 256;

/// Bytes encoded into one write at most.
const MAX_BATCH_BYTES: usize = 128 * 1024;

/// How long a write blocked by the broker may go on after publishing ended.
const BLOCKED_WRITE_GRACE: Duration = Duration::from_secs(1);

/// Pause after a failed churn connection, so a broker that refuses does not spin the loop.
const CHURN_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// How one stream's messages are built.
enum StreamEncoder {
    /// The PUBLISH encoded once; each message patches the header into a copy.
    Template {
        encoded: EncodedPublish,
        payload_len: usize,
    },
    /// A JSON document built per message.
    Gerrit { min: usize, max: usize },
}

/// One stream as its publisher sees it.
struct StreamState {
    id: u32,
    topic: TopicName,
    fanout: u64,
    next_seq: u64,
    encoder: StreamEncoder,
    sent: StreamSent,
}

/// Builds and counts a publisher's messages.
struct MessageFactory {
    streams: Vec<StreamState>,
    qos: QoS,
    rng: Rng,
}

impl MessageFactory {
    fn new(executor: &Executor, global: usize, plan: &PublisherPlan) -> Self {
        let streams = plan
            .streams
            .iter()
            .map(|&id| {
                let stream = &executor.plan.streams[id as usize];
                let encoder = match plan.payload {
                    PayloadSpec::Filler { size } => template(&stream.topic, size, plan.qos, true),
                    PayloadSpec::Untracked { size } => {
                        template(&stream.topic, size, plan.qos, false)
                    }
                    PayloadSpec::GerritJson { min, max } => StreamEncoder::Gerrit { min, max },
                };
                StreamState {
                    id,
                    topic: stream.topic.clone(),
                    fanout: stream.fanout,
                    next_seq: 0,
                    encoder,
                    sent: StreamSent {
                        stream: id,
                        ..StreamSent::default()
                    },
                }
            })
            .collect();
        Self {
            streams,
            qos: plan.qos,
            rng: Rng::new(executor.plan.seed ^ (global as u64).wrapping_mul(0x9E37_79B9)),
        }
    }

    /// Encodes the next message of a stream (chosen at random when there are several) into
    /// `out` and returns the stream's position in `self.streams`.
    fn encode_next(
        &mut self,
        out: &mut BytesMut,
        packet_id: Option<PacketId>,
        now_ns: u64,
    ) -> usize {
        let at = self.rng.below(self.streams.len());
        let stream = &mut self.streams[at];
        let header = Header {
            sent_at_ns: now_ns,
            stream: stream.id,
            seq: stream.next_seq,
        };
        stream.next_seq += 1;
        match &stream.encoder {
            StreamEncoder::Template {
                encoded,
                payload_len,
            } => {
                encoded.write_to(out, packet_id, false);
                let payload_at = out.len() - payload_len;
                header.write(&mut out[payload_at..]);
            }
            StreamEncoder::Gerrit { min, max } => {
                let size = self.rng.between(*min, *max);
                let mut levels = stream.topic.levels().skip(1);
                let namespace = levels.next().unwrap_or("openstack");
                let repo = levels.next().unwrap_or("nova");
                let event = levels.next().unwrap_or("comment-added");
                let mut payload = gerrit_event_payload(&mut self.rng, size, namespace, repo, event);
                header.write(&mut payload);
                let packet = Packet::Publish(Publish {
                    dup: false,
                    qos: self.qos,
                    retain: false,
                    topic: stream.topic.clone(),
                    packet_id,
                    payload: Bytes::from(payload),
                });
                hydrant::protocol::encode(&packet, out);
            }
        }
        at
    }

    /// Counts a written message of stream slot `at`, sent at `sent_ns`.
    fn count(&mut self, executor: &Executor, at: usize, sent_ns: u64) {
        let (window_start, window_end) = executor.shared.window();
        let stream = &mut self.streams[at];
        stream.sent.total += 1;
        let progress = executor.progress();
        bump(&progress.sent, 1);
        if sent_ns >= window_start && sent_ns < window_end {
            stream.sent.in_window += 1;
            bump(&progress.sent_in_window, 1);
            bump(&progress.expected_in_window, stream.fanout);
        }
    }

    /// Copies the counts into the executor's record of publisher slot `local`.
    fn save(&self, executor: &Executor, local: usize) {
        if let Some(record) = executor.publishers.borrow_mut().get_mut(local) {
            record.streams = self.streams.iter().map(|s| s.sent).collect();
        }
    }
}

fn template(topic: &TopicName, size: usize, qos: QoS, tracked: bool) -> StreamEncoder {
    let payload = if tracked {
        filler_payload(size)
    } else {
        vec![b'x'; size.min(HEADER_LEN - 1)]
    };
    let payload_len = payload.len();
    StreamEncoder::Template {
        encoded: EncodedPublish::new(topic, &Bytes::from(payload), qos, false),
        payload_len,
    }
}

/// Packet ids in use by a persistent publisher's unacknowledged messages.
struct Inflight {
    used: Vec<bool>,
    count: usize,
    last: u16,
}

impl Inflight {
    fn new() -> Self {
        Self {
            used: vec![false; usize::from(u16::MAX) + 1],
            count: 0,
            last: 0,
        }
    }

    /// A free packet id (the caller keeps `count` below 65535).
    fn allocate(&mut self) -> Option<PacketId> {
        for _ in 0..u16::MAX {
            self.last = self.last.wrapping_add(1);
            let Some(id) = PacketId::new(self.last) else {
                continue;
            };
            if !self.used[usize::from(self.last)] {
                self.used[usize::from(self.last)] = true;
                self.count += 1;
                return Some(id);
            }
        }
        None
    }

    fn release(&mut self, id: PacketId) {
        let slot = &mut self.used[usize::from(id.get())];
        if *slot {
            *slot = false;
            self.count -= 1;
        }
    }
}

/// Why a persistent publisher stops publishing.
fn publishing_done(executor: &Executor, now_ns: u64, sent: u64, limit: Option<u64>) -> bool {
    let (_, window_end) = executor.shared.window();
    now_ns >= window_end
        || limit.is_some_and(|l| sent >= l)
        || executor.publishing_over.is_raised()
        || executor.stop.is_raised()
}

/// Handles the acknowledgements in the read buffer.
fn take_acks(connection: &mut Connection, inflight: &mut Inflight) -> Result<(), ClientError> {
    while let Some(packet) = connection.next_packet()? {
        match packet {
            Packet::PubAck(id) | Packet::PubComp(id) => inflight.release(id),
            Packet::PubRec(id) => connection.queue(&Packet::PubRel(id)),
            Packet::PingResp => {}
            other => return Err(ClientError::Unexpected(other.name())),
        }
    }
    Ok(())
}

/// Runs persistent publisher `global` (slot `local` of its executor).
pub async fn run_persistent(
    executor: Rc<Executor>,
    local: usize,
    global: usize,
    permit: StaticPermit,
) {
    let who = format!("publisher {global}");
    let options = &executor.plan.target.connect;
    let opened = future::or(
        async { Some(Connection::open(options, executor.client_id("p", global)).await) },
        async {
            executor.stop.wait().await;
            None
        },
    )
    .await;
    drop(permit);
    let mut connection = match opened {
        None => return,
        Some(Err(error)) => {
            executor.client_error(&who, &error, true);
            return;
        }
        Some(Ok((connection, took))) => {
            executor.record_connect(took);
            bump(&executor.progress().publishers_ready, 1);
            connection
        }
    };
    future::or(executor.running.wait(), executor.stop.wait()).await;
    if executor.stop.is_raised() {
        return;
    }
    let plan = &executor.plan.publishers[global];
    let mut factory = MessageFactory::new(&executor, global, plan);
    let result = publish_persistent(&executor, local, plan, &mut factory, &mut connection).await;
    factory.save(&executor, local);
    let finished = executor
        .publishers
        .borrow()
        .get(local)
        .is_some_and(|record| record.finished_ns.is_some());
    if !finished {
        // The connection failed while publishing: this publisher is done all the same.
        mark_finish(&executor, local, executor.shared.clock.now_ns(), false);
        bump(&executor.progress().publishers_done, 1);
    }
    match result {
        Ok(Ending::Clean) => connection.disconnect(DISCONNECT_LINGER).await,
        Ok(Ending::Abandoned) => {}
        Err(error) => executor.client_error(&who, &error, false),
    }
}

async fn publish_persistent(
    executor: &Executor,
    local: usize,
    plan: &PublisherPlan,
    factory: &mut MessageFactory,
    connection: &mut Connection,
) -> Result<Ending, ClientError> {
    let clock = executor.shared.clock;
    let window = match plan.mode {
        PublishMode::Persistent { window } => usize::from(window),
        PublishMode::Churn => 1,
    };
    let acknowledged = plan.qos != QoS::AtMostOnce;
    let mut inflight = Inflight::new();
    let started = Instant::now();
    let interval = plan.rate.map(|rate| 1.0 / rate);
    let mut sent = 0u64;
    mark_start(executor, local, clock.ns_at(started));
    // (stream slot, end offset in the write buffer) of each message of the current batch.
    let mut batch: Vec<(usize, usize)> = Vec::with_capacity(MAX_BATCH);
    let mut abandoned = false;
    let ping_interval = executor.plan.target.connect.ping_interval();
    let mut last_write = Instant::now();
    loop {
        let now = Instant::now();
        let now_ns = clock.ns_at(now);
        if publishing_done(executor, now_ns, sent, plan.limit) {
            break;
        }
        let mut allowance = MAX_BATCH as u64;
        let mut next_due = None;
        if let Some(interval) = interval {
            let elapsed = now.duration_since(started).as_secs_f64();
            let due = (elapsed / interval) as u64 + 1;
            allowance = allowance.min(due.saturating_sub(sent));
            next_due = Some(started + Duration::from_secs_f64(interval * due as f64));
        }
        if let Some(limit) = plan.limit {
            allowance = allowance.min(limit - sent);
        }
        if acknowledged {
            allowance = allowance.min(window.saturating_sub(inflight.count) as u64);
        }
        if ping_interval.is_some_and(|interval| last_write.elapsed() >= interval) {
            connection.queue(&Packet::PingReq);
        }
        batch.clear();
        // Batch offsets count from the first unwritten byte, which may sit in the link (a
        // WebSocket frame in progress) ahead of the write buffer.
        let ahead = connection.pending_output() - connection.outbound().len();
        let out = connection.outbound();
        while (batch.len() as u64) < allowance && out.len() < MAX_BATCH_BYTES {
            let packet_id = if acknowledged {
                inflight.allocate()
            } else {
                None
            };
            if acknowledged && packet_id.is_none() {
                break;
            }
            let at = factory.encode_next(out, packet_id, now_ns);
            batch.push((at, ahead + out.len()));
        }
        let queued = connection.pending_output();
        if queued > 0 {
            last_write = Instant::now();
        }
        let flushed = future::or(async { Some(connection.flush().await) }, async {
            executor.publishing_over.wait().await;
            glommio::timer::sleep(BLOCKED_WRITE_GRACE).await;
            None
        })
        .await;
        let written = queued - connection.pending_output();
        for &(at, end) in &batch {
            if end <= written {
                factory.count(executor, at, now_ns);
                sent += 1;
            }
        }
        match flushed {
            Some(result) => result?,
            None => {
                // The broker stopped reading and publishing is over: give up the connection,
                // whose last packet is cut short.
                abandoned = true;
                break;
            }
        }
        let window_full = acknowledged && inflight.count >= window;
        let waiting_for_rate = interval.is_some() && batch.is_empty();
        if window_full || waiting_for_rate {
            let end = clock.instant_at(executor.shared.window().1);
            let mut until = next_due.map_or(end, |due| due.min(end));
            if let Some(interval) = ping_interval {
                until = until.min(last_write + interval);
            }
            wait_for_acks(
                connection,
                &mut inflight,
                Some(until),
                &executor.publishing_over,
            )
            .await?;
        }
        glommio::yield_if_needed().await;
    }
    mark_finish(
        executor,
        local,
        clock.now_ns(),
        plan.limit.is_none_or(|l| sent >= l),
    );
    factory.save(executor, local);
    bump(&executor.progress().publishers_done, 1);
    if abandoned {
        return Ok(Ending::Abandoned);
    }
    while acknowledged && inflight.count > 0 && !executor.stop.is_raised() {
        wait_for_acks(connection, &mut inflight, None, &executor.stop).await?;
    }
    Ok(Ending::Clean)
}

/// How a persistent publisher's connection ends.
enum Ending {
    /// Every write completed: say DISCONNECT.
    Clean,
    /// A write was cut short: just close.
    Abandoned,
}

/// Waits until acknowledgements arrive (while some are due), `until` passes, or `interrupt` is
/// raised, writing pending output meanwhile; then handles what arrived. `until = None` waits
/// for acknowledgements or the interrupt only.
async fn wait_for_acks(
    connection: &mut Connection,
    inflight: &mut Inflight,
    until: Option<Instant>,
    interrupt: &Signal,
) -> Result<(), ClientError> {
    let wake = async {
        match until {
            Some(at) => {
                let now = Instant::now();
                if at > now {
                    future::or(glommio::timer::sleep(at - now), interrupt.wait()).await;
                }
            }
            None => interrupt.wait().await,
        }
        Ok(0)
    };
    if inflight.count > 0 || connection.pending_output() > 0 {
        future::or(connection.fill(), wake).await?;
    } else {
        wake.await?;
    }
    take_acks(connection, inflight)
}

fn mark_start(executor: &Executor, local: usize, now_ns: u64) {
    if let Some(record) = executor.publishers.borrow_mut().get_mut(local) {
        record.started_ns = Some(now_ns);
    }
}

fn mark_finish(executor: &Executor, local: usize, now_ns: u64, completed: bool) {
    if let Some(record) = executor.publishers.borrow_mut().get_mut(local) {
        record.finished_ns = Some(now_ns);
        record.completed = completed;
    }
}

/// Runs churning publisher `global` (slot `local` of its executor): one connection per
/// message.
pub async fn run_churn(executor: Rc<Executor>, local: usize, global: usize) {
    future::or(executor.running.wait(), executor.stop.wait()).await;
    if executor.stop.is_raised() {
        return;
    }
    let who = format!("publisher {global}");
    let plan = &executor.plan.publishers[global];
    let clock = executor.shared.clock;
    let mut factory = MessageFactory::new(&executor, global, plan);
    let started = Instant::now();
    mark_start(&executor, local, clock.ns_at(started));
    let interval = plan.rate.map(|rate| Duration::from_secs_f64(1.0 / rate));
    let mut sent = 0u64;
    let mut attempt = 0u32;
    loop {
        if publishing_done(&executor, clock.now_ns(), sent, plan.limit) {
            break;
        }
        if let Some(interval) = interval {
            let due = started + interval.saturating_mul(attempt);
            let now = Instant::now();
            if due > now {
                future::or(
                    glommio::timer::sleep(due - now),
                    executor.publishing_over.wait(),
                )
                .await;
                continue;
            }
        }
        attempt = attempt.saturating_add(1);
        let client_id = executor.client_id(&format!("p{global}-"), attempt as usize);
        let outcome = future::or(
            async { Some(publish_once(&executor, &mut factory, client_id).await) },
            async {
                executor.stop.wait().await;
                None
            },
        )
        .await;
        match outcome {
            None => break,
            Some(Ok(())) => sent += 1,
            Some(Err(error)) => {
                executor.client_error(&who, &error, false);
                glommio::timer::sleep(CHURN_RETRY_PAUSE).await;
            }
        }
    }
    mark_finish(
        &executor,
        local,
        clock.now_ns(),
        plan.limit.is_none_or(|l| sent >= l),
    );
    factory.save(&executor, local);
    bump(&executor.progress().publishers_done, 1);
}

/// One churn iteration: connect, publish one message with its QoS handshake, disconnect.
async fn publish_once(
    executor: &Executor,
    factory: &mut MessageFactory,
    client_id: String,
) -> Result<(), ClientError> {
    let options = &executor.plan.target.connect;
    let (mut connection, took) = Connection::open(options, client_id).await?;
    executor.record_connect(took);
    let packet_id = PacketId::MIN;
    let qos = factory.qos;
    let id = (qos != QoS::AtMostOnce).then_some(packet_id);
    let now_ns = executor.shared.clock.now_ns();
    let at = factory.encode_next(connection.outbound(), id, now_ns);
    connection.flush().await?;
    factory.count(executor, at, now_ns);
    match qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce => {
            within(options.timeout, "PUBACK", async {
                loop {
                    match connection.read_packet().await? {
                        Packet::PubAck(ack) if ack == packet_id => return Ok(()),
                        Packet::PingResp => {}
                        other => return Err(ClientError::Unexpected(other.name())),
                    }
                }
            })
            .await?
        }
        QoS::ExactlyOnce => {
            within(options.timeout, "PUBREC and PUBCOMP", async {
                loop {
                    match connection.read_packet().await? {
                        Packet::PubRec(ack) if ack == packet_id => {
                            connection.queue(&Packet::PubRel(packet_id));
                            connection.flush().await?;
                        }
                        Packet::PubComp(ack) if ack == packet_id => return Ok(()),
                        Packet::PingResp => {}
                        other => return Err(ClientError::Unexpected(other.name())),
                    }
                }
            })
            .await?
        }
    }
    connection.disconnect(DISCONNECT_LINGER).await;
    Ok(())
}
