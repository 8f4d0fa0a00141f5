//! What a core observes of itself, and how it leaves the core: every snapshot period each core
//! reads its gauges and slow clients from its state and sends a [`MetricsSnapshot`] to the
//! aggregating core ([`AGGREGATOR_CORE`]), which sums the cores, publishes the `$SYS` values
//! that changed as retained messages through the ordinary publish path, and serves `/metrics`
//! and `/healthz`. Every core also measures its event-loop lag and, once a second, ends the
//! drop episodes of clients that stopped losing messages (one log line each).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::Bytes;
use glommio::net::TcpListener;

use super::{ConnId, Shard, ShardMsg, CLOCK_TICK};
use crate::connection::Notify;
use crate::message::Message;
use crate::metrics::{
    prometheus, run_lag_probe, serve_http, sys_values, Counter, DropReason, DropTransition,
    DropWatch, Gauge, HttpSettings, Latency, MetricsAggregator, MetricsSnapshot, ProcessMemory,
    SlowClient, SysChangeFilter, SysValue, TopSlowClients, AGGREGATOR_CORE,
};
use crate::protocol::QoS;
use crate::router::shared_filter;
use crate::topic::TopicName;

/// Housekeeping ticks ([`CLOCK_TICK`]) between two looks at the clients that are losing
/// messages: a client that lost none for this long has stopped dropping (1 s).
pub const DROP_WATCH_TICKS: u32 = 10;

/// Longest the aggregating core waits, after its own snapshot, for the other cores' snapshots
/// of the same period before it closes the round without them.
const ROUND_GRACE: Duration = Duration::from_millis(500);

/// The whole broker's metrics on the aggregating core: the aggregator, and the wake-up of the
/// task that closes a round once every core has reported.
pub struct Aggregation {
    aggregator: RefCell<MetricsAggregator>,
    reported: Notify,
}

impl Aggregation {
    /// The aggregation of `cores` cores keeping the `slow_clients_top` worst clients; the
    /// broker's uptime counts from now.
    pub fn new(cores: usize, slow_clients_top: usize) -> Self {
        Aggregation {
            aggregator: RefCell::new(MetricsAggregator::new(
                cores,
                slow_clients_top,
                Instant::now(),
            )),
            reported: Notify::default(),
        }
    }
}

/// Per core, the drop count of each client in or after a drop episode at the previous look
/// (see [`Shard::watch_drops`]); connections that closed are forgotten.
#[derive(Default)]
pub struct DropWatches {
    watches: AHashMap<ConnId, DropWatch>,
}

impl Shard {
    /// This core's metrics now: its gauges read from its state, its counters (those bumped
    /// outside the metrics path folded in), the latency samples since the previous snapshot,
    /// and its clients with something queued or lost, worst first.
    pub fn take_snapshot(&self) -> MetricsSnapshot {
        let top = self.config.metrics.slow_clients_top;
        let mut slow = TopSlowClients::new(top);
        let now = self.clock();
        let (mut subscriptions, mut shared) = (0, 0);
        let (mut queued, mut queued_bytes, mut inflight) = (0, 0, 0);
        let state = self.state.borrow();
        for slot in state.sessions.values() {
            let session = &slot.state;
            subscriptions += session.subscriptions.len();
            shared += session
                .subscriptions
                .keys()
                .filter(|filter| shared_filter(filter).is_some())
                .count();
            let flow = &session.outgoing;
            queued += flow.queued_len();
            queued_bytes += flow.queued_bytes();
            inflight += flow.inflight_len();
            let Some(conn) = &slot.conn else {
                continue;
            };
            let (frames, bytes, oldest) = conn.queue_depth();
            let dropped = conn.dropped();
            if frames + flow.queued_len() == 0 && dropped == 0 {
                continue;
            }
            let age_ticks = oldest.map_or(0, |tick| now.wrapping_sub(tick));
            slow.offer(SlowClient {
                client_id: conn.client_id.clone(),
                core: self.id,
                queued_messages: (frames + flow.queued_len()) as u64,
                queued_bytes: (bytes + flow.queued_bytes()) as u64,
                oldest_queued: CLOCK_TICK * age_ticks,
                dropped,
            });
        }
        let metrics = &self.metrics;
        metrics.set(
            Gauge::ClientsConnected,
            self.connections.borrow().len() as u64,
        );
        metrics.set(Gauge::ClientsDisconnected, state.offline_count as u64);
        metrics.set(Gauge::Subscriptions, subscriptions as u64);
        metrics.set(Gauge::SharedSubscriptions, shared as u64);
        metrics.set(Gauge::RetainedMessages, state.retained.len() as u64);
        metrics.set(Gauge::RetainedBytes, state.retained.bytes() as u64);
        metrics.set(Gauge::QueuedMessages, queued as u64);
        metrics.set(Gauge::QueuedBytes, queued_bytes as u64);
        metrics.set(Gauge::InflightMessages, inflight as u64);
        let parked = self.parking_lot().map_or(0, |lot| lot.parked());
        metrics.set(Gauge::ClientsParked, parked as u64);
        drop(state);

        let mut snapshot = metrics.snapshot(slow);
        let counters = &self.counters;
        snapshot.counters[Counter::SocketsAccepted.index()] = counters.connections_accepted.get();
        snapshot.counters[Counter::PublishDenied.index()] = counters.publish_denied.get();
        snapshot.counters[Counter::SharedRedelivered.index()] = counters.shared_redelivered.get();
        let too_large = &mut snapshot.drops[DropReason::PacketTooLarge.index()];
        *too_large = too_large.saturating_add(counters.publish_dropped.get());
        snapshot
    }

    /// Takes a snapshot from another core (or this one, the aggregating core); wakes the
    /// round's closing once every core has reported.
    pub fn accept_snapshot(&self, snapshot: MetricsSnapshot) {
        let Some(aggregation) = &self.aggregation else {
            tracing::debug!(
                core = snapshot.core,
                "metrics snapshot sent to a core that does not aggregate"
            );
            return;
        };
        let mut aggregator = aggregation.aggregator.borrow_mut();
        aggregator.accept(snapshot);
        if aggregator.all_reported() {
            aggregation.reported.notify();
        }
    }

    /// The Prometheus text of the last completed round (empty on a core that does not
    /// aggregate).
    pub fn render_metrics(&self) -> String {
        self.aggregation
            .as_ref()
            .map(|aggregation| prometheus::render(&aggregation.aggregator.borrow()))
            .unwrap_or_default()
    }

    /// Removes the offline sessions whose time is up (see `expire_offline_sessions`) and
    /// counts them (`clients/expired`).
    pub fn expire_offline_sessions_counted(&self) {
        let before = self.state.borrow().sessions.len();
        self.expire_offline_sessions();
        let after = self.state.borrow().sessions.len();
        self.metrics
            .add(Counter::ClientsExpired, before.saturating_sub(after) as u64);
    }

    /// Looks at the clients in a drop episode (their first drop logged a warning): one that
    /// lost nothing since the previous look has stopped dropping, which is logged with the
    /// episode's count, and its next drop starts a new episode. Called every
    /// [`DROP_WATCH_TICKS`].
    pub fn watch_drops(&self, watches: &mut DropWatches) {
        let connections = self.connections.borrow();
        watches
            .watches
            .retain(|conn, _| connections.contains_key(conn));
        for conn in connections.values().filter(|conn| conn.is_dropping()) {
            let watch = watches.watches.entry(conn.id).or_default();
            if let Some(DropTransition::Stopped { dropped }) = watch.observe(conn.dropped()) {
                tracing::info!(client_id = %conn.client_id, dropped, "client stopped dropping messages");
                conn.end_drop_episode();
            }
        }
    }

    /// Every snapshot period: takes this core's snapshot and hands it to the aggregating
    /// core; there, closes the round and publishes the `$SYS` values that changed. Runs
    /// until shutdown.
    async fn run_snapshots(self: Rc<Self>, period: Duration) {
        let mut sys = self.config.metrics.sys_enabled().then(SysChangeFilter::new);
        let mut next = Instant::now();
        while !self.is_shutting_down() {
            next += period;
            glommio::timer::sleep(next.saturating_duration_since(Instant::now())).await;
            let snapshot = self.take_snapshot();
            if self.id == AGGREGATOR_CORE {
                self.accept_snapshot(snapshot);
            } else {
                self.peers
                    .post(AGGREGATOR_CORE, ShardMsg::Metrics(Box::new(snapshot)));
            }
            if let Some(aggregation) = &self.aggregation {
                self.close_round(aggregation).await;
                if let Some(filter) = &mut sys {
                    let values = sys_values(&aggregation.aggregator.borrow());
                    let changed = filter.changed(values);
                    self.publish_sys(changed).await;
                }
            }
        }
    }

    /// Waits (at most [`ROUND_GRACE`]) for every core's snapshot, then closes the round.
    async fn close_round(&self, aggregation: &Aggregation) {
        let deadline = Instant::now() + ROUND_GRACE;
        while !aggregation.aggregator.borrow().all_reported() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            futures_lite::future::or(aggregation.reported.notified(), async {
                glommio::timer::sleep(left).await;
            })
            .await;
        }
        aggregation
            .aggregator
            .borrow_mut()
            .complete_round(Instant::now(), ProcessMemory::read());
    }

    /// Publishes `$SYS` values as retained QoS 0 messages, as a client's publishes are routed.
    async fn publish_sys(&self, values: Vec<SysValue>) {
        for SysValue { topic, payload } in values {
            let topic = match TopicName::try_from(topic.as_str()) {
                Ok(topic) => topic,
                Err(error) => {
                    tracing::debug!(%topic, %error, "$SYS topic not published");
                    continue;
                }
            };
            let message = Message {
                topic,
                payload: Bytes::from(payload),
                qos: QoS::AtMostOnce,
                retain: true,
                extras: None,
            };
            self.publish_from_broker(message).await;
        }
    }
}

/// Starts what a core runs to observe itself, as its configuration asks: the event-loop lag
/// probe and the snapshot task (whenever something reads snapshots), and on the aggregating
/// core the metrics HTTP listener `http`, already bound.
pub fn spawn_observers(shard: &Rc<Shard>, http: Option<TcpListener>) {
    let config = &shard.config.metrics;
    let Some(period) = config.snapshot_period() else {
        return;
    };
    if let Some(interval) = config.lag_probe_interval() {
        let metrics = shard.metrics.clone();
        let running = shard.clone();
        glommio::spawn_local(run_lag_probe(
            interval,
            move |lag| metrics.record(Latency::EventLoopLag, lag),
            move || !running.is_shutting_down(),
        ))
        .detach();
    }
    glommio::spawn_local(shard.clone().run_snapshots(period)).detach();
    if let Some(listener) = http {
        let settings = HttpSettings::from_config(config);
        let rendering = shard.clone();
        let running = shard.clone();
        glommio::spawn_local(serve_http(
            listener,
            settings,
            move || rendering.render_metrics(),
            move || !running.is_shutting_down(),
        ))
        .detach();
    }
}
