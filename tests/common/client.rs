//! A rumqttc client whose event loop runs in a background task: its events are collected so a
//! test can wait for "the next PUBLISH" or "the connection was closed" with a timeout.

use std::collections::VecDeque;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, Incoming, MqttOptions, Outgoing, Publish,
    QoS, SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

/// The default wait for one expected event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the background task reports.
enum Report {
    Event(Event),
    /// The event loop failed (the connection is gone); the task has stopped.
    Closed(String),
}

/// A connected rumqttc client.
pub struct Client {
    pub client: AsyncClient,
    pub id: String,
    reports: mpsc::UnboundedReceiver<Report>,
    /// Events received while waiting for a different kind of event.
    backlog: VecDeque<Event>,
    closed: Option<String>,
    task: JoinHandle<()>,
}

/// rumqttc `QoS` from 0, 1, 2.
pub fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        _ => panic!("no QoS {level}"),
    }
}

/// 0, 1, 2 from a rumqttc `QoS`.
pub fn level(qos: QoS) -> u8 {
    match qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

/// Options for `id` on 127.0.0.1:`port` (rumqttc defaults: 3.1.1, clean session, keep-alive 60).
pub fn options(port: u16, id: &str) -> MqttOptions {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    opts
}

/// Connects with `opts`; Ok((client, session_present)) or Err(the CONNACK code / error text).
pub async fn try_connect(opts: MqttOptions) -> Result<(Client, bool), String> {
    let id = opts.client_id();
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let first = timeout(EVENT_TIMEOUT, eventloop.poll())
        .await
        .map_err(|_| format!("{id}: no CONNACK within {EVENT_TIMEOUT:?}"))?;
    let session_present = match first {
        Ok(Event::Incoming(Incoming::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => {
            ack.session_present
        }
        Ok(other) => return Err(format!("{id}: expected CONNACK, got {other:?}")),
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
            return Err(format!("refused: {code:?}"))
        }
        Err(e) => return Err(format!("{id}: connect failed: {e}")),
    };
    let (tx, reports) = mpsc::unbounded_channel();
    let task = tokio::spawn(drive(eventloop, tx));
    Ok((
        Client {
            client,
            id,
            reports,
            backlog: VecDeque::new(),
            closed: None,
            task,
        },
        session_present,
    ))
}

/// Connects with `opts` and panics unless accepted; returns the client and session_present.
pub async fn connect_with(opts: MqttOptions) -> (Client, bool) {
    match try_connect(opts).await {
        Ok(ok) => ok,
        Err(e) => panic!("connect: {e}"),
    }
}

/// Connects a clean-session client `id`.
pub async fn connect(port: u16, id: &str) -> Client {
    connect_with(options(port, id)).await.0
}

/// Connects a persistent-session (clean_session = false) client; returns session_present too.
pub async fn connect_persistent(port: u16, id: &str, manual_acks: bool) -> (Client, bool) {
    let mut opts = options(port, id);
    opts.set_clean_session(false);
    opts.set_manual_acks(manual_acks);
    connect_with(opts).await
}

async fn drive(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Report>) {
    loop {
        match eventloop.poll().await {
            Ok(event) => {
                if tx.send(Report::Event(event)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Report::Closed(e.to_string()));
                return;
            }
        }
    }
}

impl Client {
    /// The next event accepted by `pred` (earlier non-matching events are kept for later);
    /// None on timeout or when the connection is closed.
    pub async fn next_matching(
        &mut self,
        mut pred: impl FnMut(&Event) -> bool,
        wait: Duration,
    ) -> Option<Event> {
        if let Some(at) = self.backlog.iter().position(&mut pred) {
            return self.backlog.remove(at);
        }
        let deadline = Instant::now() + wait;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.reports.recv()).await {
                Err(_) => return None,
                Ok(None) => self.closed = Some("event task ended".into()),
                Ok(Some(Report::Closed(reason))) => self.closed = Some(reason),
                Ok(Some(Report::Event(event))) => {
                    if pred(&event) {
                        return Some(event);
                    }
                    self.backlog.push_back(event);
                }
            }
        }
        None
    }

    /// The next PUBLISH received, or None after `wait`.
    pub async fn try_next_publish(&mut self, wait: Duration) -> Option<Publish> {
        match self
            .next_matching(|e| matches!(e, Event::Incoming(Incoming::Publish(_))), wait)
            .await
        {
            Some(Event::Incoming(Incoming::Publish(p))) => Some(p),
            _ => None,
        }
    }

    /// The next PUBLISH; panics (saying `what` was expected) if none arrives in time.
    pub async fn next_publish(&mut self, what: &str) -> Publish {
        match self.try_next_publish(EVENT_TIMEOUT).await {
            Some(p) => p,
            None => panic!(
                "{}: expected a PUBLISH ({what}) within {EVENT_TIMEOUT:?}; connection closed: {:?}",
                self.id, self.closed
            ),
        }
    }

    /// Asserts that no PUBLISH arrives during `wait`.
    pub async fn expect_no_publish(&mut self, wait: Duration, why: &str) {
        if let Some(p) = self.try_next_publish(wait).await {
            panic!("{}: expected no PUBLISH ({why}), got {p:?}", self.id);
        }
    }

    /// Every PUBLISH that arrives until none has arrived for `idle`.
    pub async fn drain_publishes(&mut self, idle: Duration) -> Vec<Publish> {
        let mut all = Vec::new();
        while let Some(p) = self.try_next_publish(idle).await {
            all.push(p);
        }
        all
    }

    /// Up to `count` PUBLISHes, each waited for at most `EVENT_TIMEOUT`; fewer if they stop.
    pub async fn collect_publishes(&mut self, count: usize) -> Vec<Publish> {
        let mut all = Vec::new();
        while all.len() < count {
            match self.try_next_publish(EVENT_TIMEOUT).await {
                Some(p) => all.push(p),
                None => break,
            }
        }
        all
    }

    /// Subscribes and returns the granted QoS (panics on failure or timeout).
    pub async fn subscribe(&mut self, filter: &str, max_qos: u8) -> u8 {
        self.client
            .subscribe(filter, qos(max_qos))
            .await
            .expect("queue SUBSCRIBE");
        match self
            .next_matching(
                |e| matches!(e, Event::Incoming(Incoming::SubAck(_))),
                EVENT_TIMEOUT,
            )
            .await
        {
            Some(Event::Incoming(Incoming::SubAck(ack))) => match ack.return_codes.as_slice() {
                [SubscribeReasonCode::Success(granted)] => level(*granted),
                other => panic!("{}: SUBACK for {filter}: {other:?}", self.id),
            },
            _ => panic!(
                "{}: no SUBACK for {filter} within {EVENT_TIMEOUT:?}; closed: {:?}",
                self.id, self.closed
            ),
        }
    }

    /// Publishes and waits until the broker has acknowledged it (PUBACK for QoS 1, PUBCOMP for
    /// QoS 2) or, for QoS 0, until rumqttc has written it.
    pub async fn publish(
        &mut self,
        topic: &str,
        qos_level: u8,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) {
        self.publish_no_wait(topic, qos_level, retain, payload)
            .await;
        self.wait_acks(qos_level, 1).await;
    }

    /// Waits until every core has handled what the broker's cores sent each other before:
    /// hydrant answers a SUBSCRIBE only after a round trip with every other core (FIFO behind
    /// earlier messages), and a PUBACK only says a message was routed, not that it reached a
    /// session on another core. The filter is one nothing is published to.
    pub async fn sync_cores(&mut self) {
        self.subscribe("test/sync-cores", 0).await;
    }

    /// Queues a publish without waiting for its acknowledgement.
    pub async fn publish_no_wait(
        &mut self,
        topic: &str,
        qos_level: u8,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) {
        self.client
            .publish(topic, qos(qos_level), retain, payload.into())
            .await
            .expect("queue PUBLISH");
    }

    /// Waits for `count` completions of outgoing publishes of `qos_level` (see `publish`).
    pub async fn wait_acks(&mut self, qos_level: u8, count: usize) {
        for n in 0..count {
            let got = self
                .next_matching(
                    |e| match qos_level {
                        0 => matches!(e, Event::Outgoing(Outgoing::Publish(_))),
                        1 => matches!(e, Event::Incoming(Incoming::PubAck(_))),
                        _ => matches!(e, Event::Incoming(Incoming::PubComp(_))),
                    },
                    EVENT_TIMEOUT,
                )
                .await;
            assert!(
                got.is_some(),
                "{}: acknowledgement {n} of {count} (QoS {qos_level}) not received within {EVENT_TIMEOUT:?}; closed: {:?}",
                self.id,
                self.closed
            );
        }
    }

    /// Acknowledges a PUBLISH received with manual acks.
    pub async fn ack(&mut self, publish: &Publish) {
        self.client.ack(publish).await.expect("queue ack");
    }

    /// Waits until the broker has closed the connection; returns rumqttc's error text.
    pub async fn wait_closed(&mut self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.reports.recv()).await {
                Err(_) => return None,
                Ok(None) => self.closed = Some("event task ended".into()),
                Ok(Some(Report::Closed(reason))) => self.closed = Some(reason),
                Ok(Some(Report::Event(event))) => self.backlog.push_back(event),
            }
        }
        self.closed.clone()
    }

    /// Whether the connection has been seen closed.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Sends DISCONNECT and waits for the connection to end.
    pub async fn disconnect(mut self) {
        let _ = self.client.disconnect().await;
        let _ = self.wait_closed(EVENT_TIMEOUT).await;
        self.task.abort();
    }

    /// Drops the TCP connection without DISCONNECT (and without acknowledging anything).
    pub async fn drop_connection(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}
