//! Black-box tests for defects found in a review of the broker runtime (sessions, takeover,
//! cross-core routing). Each test names the behaviour the MQTT 3.1.1 specification or the
//! broker contract requires; a failure message lists every deviation it saw.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::client::{self, connect_persistent, options};
use common::raw::{self, Connect, Incoming, RawClient, RecvError};
use common::{Broker, LOG_TIMEOUT, QUIET};
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

/// Longer than several housekeeping periods of a shard (100 ms each).
const HOUSEKEEPING_WAIT: Duration = Duration::from_millis(600);

fn fail_if_any(test: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{test}: {} problem(s):\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}

/// With `persistent_client_expiration = 0` (the default: keep forever), an offline persistent
/// session must stay until its client returns. The shard's queue of offline sessions keeps
/// stale entries for sessions that came back; `expire_offline_sessions` treats a stale entry at
/// the front as "expired" and calls `pop_offline`, which skips the stale entry and removes the
/// next *current* offline session, whatever its age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_session_is_kept_when_an_older_offline_client_returns() {
    let broker = Broker::start(&["--cores", "1"]);
    let port = broker.port;
    let mut problems = Vec::new();

    // X goes offline first (front of the offline queue), then Y.
    let (x, _) = connect_persistent(port, "stale-x", false).await;
    x.disconnect().await;
    broker
        .wait_disconnected_nth("stale-x", 0, LOG_TIMEOUT)
        .expect("stale-x disconnected");
    let (mut y, _) = connect_persistent(port, "stale-y", false).await;
    y.subscribe("stale/y", 1).await;
    y.disconnect().await;
    broker
        .wait_disconnected_nth("stale-y", 0, LOG_TIMEOUT)
        .expect("stale-y disconnected");

    // X returns: its offline entry, still ahead of Y's, is now stale.
    let (_x_again, present) = connect_persistent(port, "stale-x", false).await;
    assert!(present, "stale-x resumes its session");
    sleep(HOUSEKEEPING_WAIT).await;

    let mut publisher = client::connect(port, "stale-pub").await;
    publisher.publish("stale/y", 1, false, "queued for y").await;

    let (mut y, present) = connect_persistent(port, "stale-y", false).await;
    if !present {
        problems.push(
            "stale-y reconnected with session_present=0: its offline session was discarded \
             although persistent_client_expiration = 0"
                .to_string(),
        );
    }
    match y.try_next_publish(Duration::from_secs(2)).await {
        Some(p) if &p.payload[..] == b"queued for y" => {}
        Some(p) => problems.push(format!("stale-y got an unexpected message: {p:?}")),
        None => problems
            .push("the QoS 1 message published while stale-y was offline was lost".to_string()),
    }
    if let Some(line) = broker.wait_for_log_where(
        |l| l.contains("offline session expired") && l.contains("stale-y"),
        Duration::ZERO,
    ) {
        problems.push(format!("the broker logged: {line}"));
    }
    fail_if_any("offline session kept", &problems);
}

/// A clean session ends with its network connection [MQTT-3.1.2-6]. When a clean_session=0
/// connection takes over a client id whose current connection has clean_session=1, the old
/// session must not be resumed: session_present=0, none of its subscriptions, and the new
/// session must be persistent. hydrant hands the old (clean) `SessionState` over unchanged, so
/// the new connection gets session_present=1, inherits the subscriptions, and its session is
/// then discarded at disconnect because the state still says `clean_session: true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_connection_taking_over_a_clean_session_gets_a_fresh_persistent_session() {
    let broker = Broker::start(&["--cores", "1"]);
    let port = broker.port;
    let mut problems = Vec::new();
    let mut publisher = client::connect(port, "c2p-pub").await;

    let mut clean = client::connect(port, "c2p").await;
    clean.subscribe("c2p/old", 1).await;

    let (mut persistent, present) = connect_persistent(port, "c2p", false).await;
    if present {
        problems.push(
            "CONNACK session_present=1 although the previous connection had clean_session=1"
                .to_string(),
        );
    }
    clean.wait_closed(LOG_TIMEOUT).await;
    publisher.publish("c2p/old", 1, false, "old").await;
    if let Some(p) = persistent.try_next_publish(QUIET).await {
        problems.push(format!(
            "the new session inherited the clean session's subscription to c2p/old: got {p:?}"
        ));
    }

    persistent.subscribe("c2p/new", 1).await;
    persistent.disconnect().await;
    broker
        .wait_disconnected_nth("c2p", 1, LOG_TIMEOUT)
        .expect("second disconnect line of c2p");
    publisher
        .publish("c2p/new", 1, false, "queued while away")
        .await;

    let (mut back, present) = connect_persistent(port, "c2p", false).await;
    if !present {
        problems.push(
            "the clean_session=0 connection's session was discarded at its disconnect \
             (session_present=0 on return)"
                .to_string(),
        );
    }
    match back.try_next_publish(Duration::from_secs(2)).await {
        Some(p) if &p.payload[..] == b"queued while away" => {}
        Some(p) => problems.push(format!("unexpected message on return: {p:?}")),
        None => problems.push("the QoS 1 message queued while away was lost".to_string()),
    }
    fail_if_any("clean -> persistent takeover", &problems);
}

/// Sequence numbers a raw subscriber connection has read.
type Seen = Arc<Mutex<Vec<u32>>>;

/// Reads PUBLISHes on `conn` until the broker closes it or `stop` is set, recording each
/// sequence number before acknowledging it (so a recorded number was really delivered).
fn spawn_recorder(mut conn: RawClient, seen: Seen, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match conn.recv(Duration::from_millis(100)).await {
                Ok(Incoming::Publish(p)) => {
                    if let Ok(seq) = std::str::from_utf8(&p.payload).unwrap_or("").parse::<u32>() {
                        seen.lock().unwrap_or_else(|e| e.into_inner()).push(seq);
                    }
                    if let Some(id) = p.packet_id {
                        let ack = if p.qos == 2 {
                            raw::pubrec(id)
                        } else {
                            raw::puback(id)
                        };
                        if conn.send(&ack).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(Incoming::PubRel(id)) => {
                    if conn.send(&raw::pubcomp(id)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Timeout) => {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    })
}

/// A persistent session subscribed at QoS 1 must receive every QoS 1 message published after
/// its SUBACK at least once, however often its client reconnects (here: takes the session over
/// with a new connection while the old one is still open), and whichever core each connection
/// lands on. `take_session` removes the session and its trie entries on the old core at once,
/// but the session is installed only when the new connection's task runs on the new core, and
/// the publisher's core learns of the new core's interest later still (`attach_subscriptions`
/// announces without waiting, and the CONNACK goes out at once). Messages routed in that window
/// go to a core where no session matches any more, or nowhere, and are lost. (With one core
/// the claim completes within one poll and nothing is lost.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_messages_are_not_lost_while_a_persistent_client_reconnects_on_another_core() {
    const MESSAGES: u32 = 6000;
    const MAX_TAKEOVERS: usize = 200;
    let broker = Broker::with_config(
        "[limits]\nmax_queued_messages = 100000\nmax_inflight_messages = 1000\n",
        &["--cores", "2"],
    );
    let port = broker.port;
    let id = "mover";
    let connect = Connect::v311(id).clean(false);
    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));

    let mut first = RawClient::connected(port, &connect).await;
    let codes = first.subscribe(1, &[("mover/t", 1)]).await;
    assert_eq!(codes, [1], "SUBACK");
    let mut readers = vec![spawn_recorder(first, seen.clone(), stop.clone())];

    let mut opts = options(port, "mover-pub");
    opts.set_inflight(100);
    let (mut publisher, _) = client::connect_with(opts).await;
    let publishing = tokio::spawn(async move {
        for seq in 0..MESSAGES {
            publisher
                .publish_no_wait("mover/t", 1, false, seq.to_string())
                .await;
        }
        publisher.wait_acks(1, MESSAGES as usize).await;
        publisher
    });

    let mut takeovers = 0;
    let mut not_present = 0;
    while !publishing.is_finished() && takeovers < MAX_TAKEOVERS {
        sleep(Duration::from_millis(10)).await;
        let (conn, present, code) = RawClient::handshake(port, &connect).await;
        assert_eq!(code, 0, "CONNACK code of takeover {takeovers}");
        not_present += usize::from(!present);
        takeovers += 1;
        readers.push(spawn_recorder(conn, seen.clone(), stop.clone()));
    }
    let _publisher = publishing.await.expect("publisher task");

    // Let the last connection receive everything still queued for the session.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_count = usize::MAX;
    loop {
        sleep(Duration::from_millis(1500)).await;
        let count = seen.lock().unwrap_or_else(|e| e.into_inner()).len();
        if count == last_count || Instant::now() > deadline {
            break;
        }
        last_count = count;
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let _ = reader.await;
    }

    let cores: Vec<usize> = (0..=takeovers)
        .map(|n| broker.core_of_nth(id, n, LOG_TIMEOUT))
        .collect();
    let moves = cores.windows(2).filter(|w| w[0] != w[1]).count();
    let publisher_core = broker.core_of("mover-pub", LOG_TIMEOUT);
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut delivered = vec![false; MESSAGES as usize];
    for &seq in &seen {
        if let Some(slot) = delivered.get_mut(seq as usize) {
            *slot = true;
        }
    }
    let missing: Vec<u32> = (0..MESSAGES).filter(|&s| !delivered[s as usize]).collect();
    println!(
        "publisher on core {publisher_core}; {takeovers} takeovers, {moves} of them moved the \
         session between cores; {} deliveries, {} missing",
        seen.len(),
        missing.len()
    );
    let mut problems = Vec::new();
    if not_present > 0 {
        problems.push(format!(
            "{not_present} takeover(s) answered session_present=0 for a live persistent session"
        ));
    }
    if !missing.is_empty() {
        problems.push(format!(
            "{} of {MESSAGES} PUBACKed QoS 1 messages never reached the persistent session \
             (sequence numbers {}); cores of the successive connections: {cores:?}",
            missing.len(),
            ranges(&missing)
        ));
    }
    if let Some(line) = broker.wait_for_log("cross-core backlog full", Duration::ZERO) {
        problems.push(format!("(also saw: {line})"));
    }
    fail_if_any("QoS 1 across session moves", &problems);
}

/// `[1, 2, 3, 7]` as "1-3, 7".
fn ranges(values: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = values.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(", ")
}

/// Cores of the given client ids, from their `client connected` lines (those not found yet
/// are left out).
fn cores_of(broker: &Broker, ids: &[String]) -> std::collections::HashMap<String, usize> {
    let mut found = std::collections::HashMap::new();
    for line in broker.log_lines() {
        if !line.contains("client connected") {
            continue;
        }
        let (Some(id), Some(core)) = (
            common::broker::field(&line, "client_id"),
            common::broker::field(&line, "core").and_then(|c| c.parse().ok()),
        ) else {
            continue;
        };
        if ids.contains(&id) {
            found.insert(id, core);
        }
    }
    found
}

/// Connects raw clients `{prefix}{n}` in parallel and returns each with its core.
async fn connect_many(
    broker: &Broker,
    prefix: &str,
    range: std::ops::Range<usize>,
    clean: bool,
) -> Vec<(RawClient, String, usize)> {
    let ids: Vec<String> = range.map(|n| format!("{prefix}{n}")).collect();
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let connect = Connect::v311(id).clean(clean);
            let port = broker.port;
            tokio::spawn(async move { RawClient::connected(port, &connect).await })
        })
        .collect();
    let mut conns = Vec::new();
    for task in tasks {
        conns.push(task.await.expect("connect task"));
    }
    let deadline = Instant::now() + LOG_TIMEOUT;
    let mut cores = cores_of(broker, &ids);
    while cores.len() < ids.len() && Instant::now() < deadline {
        sleep(Duration::from_millis(20)).await;
        cores = cores_of(broker, &ids);
    }
    conns
        .into_iter()
        .zip(ids)
        .map(|(conn, id)| {
            let core = *cores
                .get(&id)
                .unwrap_or_else(|| panic!("no `client connected` line for {id}"));
            (conn, id, core)
        })
        .collect()
}

/// `count` QoS 0 publishes on `load/x`, back to back: work queued for the core that serves
/// the `load/#` offline sessions.
fn load_burst(count: u32) -> Vec<u8> {
    let mut burst = Vec::new();
    for n in 0..count {
        burst.extend(raw::publish(
            b"load/x",
            n.to_string().as_bytes(),
            0,
            false,
            false,
            0,
        ));
    }
    burst
}

/// Creates `count` offline persistent sessions on `core`, each subscribed to `filter` at QoS 0:
/// every message matching `filter` then costs that core a trie match and a session lookup
/// per session, which makes it slower than the others.
async fn offline_sessions_on(
    broker: &Broker,
    core: usize,
    count: usize,
    prefix: &str,
    filter: &str,
) {
    let mut made = 0;
    let mut next = 0;
    while made < count && next < 6 * count {
        let batch = connect_many(broker, prefix, next..next + 200, false).await;
        next += 200;
        for (mut conn, _, at) in batch {
            if at == core && made < count {
                assert_eq!(conn.subscribe(1, &[(filter, 0)]).await, [0]);
                made += 1;
            }
            let _ = conn.send(&raw::disconnect()).await;
        }
    }
    assert_eq!(made, count, "offline sessions on core {core}");
}

/// A raw clean-session client `{prefix}{n}` on another core than `core`.
async fn client_on_other_core(broker: &Broker, core: usize, prefix: &str) -> RawClient {
    for attempt in 0..32 {
        let id = format!("{prefix}{attempt}");
        let conn = RawClient::connected(broker.port, &Connect::v311(&id)).await;
        if broker.core_of(&id, LOG_TIMEOUT) != core {
            return conn;
        }
    }
    panic!("no {prefix}* client landed on another core than {core}");
}

/// A raw clean-session client `{prefix}{n}` on `core`.
async fn client_on_core(broker: &Broker, core: usize, prefix: &str) -> RawClient {
    for attempt in 0..64 {
        let id = format!("{prefix}{attempt}");
        let conn = RawClient::connected(broker.port, &Connect::v311(&id)).await;
        if broker.core_of(&id, LOG_TIMEOUT) == core {
            return conn;
        }
    }
    panic!("no {prefix}* client landed on core {core}");
}

/// A fast publisher of retained QoS 1 messages towards a core made slower than its own (by
/// many offline QoS 0 sessions subscribed there, each costing that core a trie match and a
/// session lookup per message) is flow-controlled: its PUBACKs wait for the other core, and
/// every acknowledged message reaches the QoS 1 subscriber there. (Before the fix, publishes
/// bypassed the wait as soon as retained replicas sat in the peer's backlog, and messages were
/// dropped after their PUBACK.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_publisher_towards_a_slower_core_is_flow_controlled_not_dropped() {
    const OFFLINE_SESSIONS: usize = 600;
    const MESSAGES: u32 = 30_000;
    const TOPICS: u32 = 8;
    let broker = Broker::with_config(
        "[limits]\nmax_queued_messages = 200000\nmax_queued_bytes = 0\n\
         max_inflight_messages = 1000\n",
        &["--cores", "2"],
    );
    let port = broker.port;

    let mut sub = RawClient::connected(port, &Connect::v311("bp-sub")).await;
    let sub_core = broker.core_of("bp-sub", LOG_TIMEOUT);
    assert_eq!(sub.subscribe(1, &[("bp/#", 1)]).await, [1], "SUBACK");

    offline_sessions_on(&broker, sub_core, OFFLINE_SESSIONS, "bp-off-", "bp/#").await;
    let publisher = client_on_other_core(&broker, sub_core, "bp-pub-").await;
    println!("subscriber core {sub_core}; {OFFLINE_SESSIONS} offline sessions there");

    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let recorder = spawn_recorder(sub, seen.clone(), stop.clone());

    let (mut from_broker, mut to_broker) = publisher.stream.into_split();
    let acks = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut bytes = 0usize;
        let mut chunk = vec![0u8; 64 * 1024];
        let deadline = Instant::now() + Duration::from_secs(120);
        while bytes / 4 < MESSAGES as usize && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), from_broker.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => bytes += n,
                _ => break,
            }
        }
        bytes / 4
    });
    {
        use tokio::io::AsyncWriteExt;
        let mut batch = Vec::new();
        for seq in 0..MESSAGES {
            let topic = format!("bp/{}", seq % TOPICS);
            let id = (seq % 65_535 + 1) as u16;
            batch.extend(raw::publish(
                topic.as_bytes(),
                seq.to_string().as_bytes(),
                1,
                true,
                false,
                id,
            ));
            if batch.len() > 32 * 1024 {
                to_broker.write_all(&batch).await.expect("publish");
                batch.clear();
            }
        }
        to_broker.write_all(&batch).await.expect("publish");
    }
    let acked = acks.await.expect("ack reader");

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = usize::MAX;
    loop {
        sleep(Duration::from_secs(2)).await;
        let count = seen.lock().unwrap_or_else(|e| e.into_inner()).len();
        if count == last || Instant::now() > deadline {
            break;
        }
        last = count;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = recorder.await;

    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut delivered = vec![false; MESSAGES as usize];
    for &seq in &seen {
        if let Some(slot) = delivered.get_mut(seq as usize) {
            *slot = true;
        }
    }
    let missing: Vec<u32> = (0..MESSAGES).filter(|&s| !delivered[s as usize]).collect();
    println!(
        "{acked} PUBACKs, {} deliveries, {} missing",
        seen.len(),
        missing.len()
    );
    let mut problems = Vec::new();
    if let Some(line) = broker.wait_for_log("cross-core backlog full", Duration::ZERO) {
        problems.push(format!("the broker dropped cross-core messages: {line}"));
    }
    if !missing.is_empty() {
        problems.push(format!(
            "{} of {MESSAGES} QoS 1 messages ({acked} PUBACKed) never reached the QoS 1 \
             subscriber on the other core (sequence numbers {})",
            missing.len(),
            ranges(&missing)
        ));
    }
    fail_if_any("flow control across cores", &problems);
}

/// A retained message whose PUBLISH has been acknowledged must be sent to a subscription made
/// after that acknowledgement [MQTT-3.3.1-6]. The publisher gets its PUBACK as soon as the
/// update is handed to the topic's owner core; each core answers a SUBSCRIBE from its own
/// replica, updated only when the owner's `RetainApply` (or, on the owner, the
/// `RetainRequest`) comes out of the cross-core channel. A SUBSCRIBE whose filter is already
/// subscribed on its core (here by `rr-helper-*`) is answered at once from that replica. Here
/// the subscriber's core is kept busy by a burst of ordinary messages queued ahead of the
/// retained updates, so its replica lags by much more than a round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_is_visible_to_a_subscription_made_after_its_puback() {
    const OFFLINE_SESSIONS: usize = 1000;
    const BURST: u32 = 4000;
    const TOPICS: usize = 8;
    let broker = Broker::start(&["--cores", "2"]);

    let mut subscriber = RawClient::connected(broker.port, &Connect::v311("rr-sub")).await;
    let sub_core = broker.core_of("rr-sub", LOG_TIMEOUT);
    let mut helper = client_on_core(&broker, sub_core, "rr-helper-").await;
    assert_eq!(helper.subscribe(1, &[("rr/+", 0)]).await, [0]);
    offline_sessions_on(&broker, sub_core, OFFLINE_SESSIONS, "rr-off-", "load/#").await;
    let mut publisher = client_on_other_core(&broker, sub_core, "rr-pub-").await;

    // Work for the subscriber's core, queued in the channel ahead of the retained updates.
    let burst = load_burst(BURST);
    publisher.send(&burst).await.expect("burst");
    for n in 0..TOPICS {
        let topic = format!("rr/{n}");
        let id = (n + 1) as u16;
        publisher
            .send(&raw::publish(topic.as_bytes(), b"kept", 1, true, false, id))
            .await
            .expect("PUBLISH");
        // The PUBACK waits until the topic's owner core has stored and replicated the update;
        // the burst ahead of it makes that take a while in a debug build.
        loop {
            match publisher.recv(Duration::from_secs(60)).await {
                Ok(Incoming::PubAck(acked)) if acked == id => break,
                Ok(_) => {}
                Err(e) => panic!("no PUBACK for {topic}: {e:?}"),
            }
        }
    }

    assert_eq!(subscriber.subscribe(1, &[("rr/+", 0)]).await, [0]);
    let mut got = std::collections::BTreeSet::new();
    while let Some(p) = subscriber.next_publish(Duration::from_millis(300)).await {
        got.insert(String::from_utf8_lossy(&p.topic).into_owned());
    }
    let missing: Vec<String> = (0..TOPICS)
        .map(|n| format!("rr/{n}"))
        .filter(|t| !got.contains(t))
        .collect();
    let mut later = String::from("and no later SUBSCRIBE within 20 s got them either");
    if !missing.is_empty() {
        let start = Instant::now();
        for round in 2..200u16 {
            sleep(Duration::from_millis(200)).await;
            subscriber.subscribe(round, &[("rr/+", 0)]).await;
            let mut again = std::collections::BTreeSet::new();
            while let Some(p) = subscriber.next_publish(Duration::from_millis(100)).await {
                again.insert(String::from_utf8_lossy(&p.topic).into_owned());
            }
            if again.len() == TOPICS {
                later = format!(
                    "a SUBSCRIBE {:?} later got all of them: the replica lagged",
                    start.elapsed()
                );
                break;
            }
            if start.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
    }
    assert!(
        missing.is_empty(),
        "a SUBSCRIBE sent after the PUBACKs of {TOPICS} retained messages got only {got:?}; \
         missing {missing:?}; {later}"
    );
}

/// Outcome of one CONNECT of a racing pair: the CONNACK (if any) and whether the broker
/// later closed the connection.
#[derive(Debug)]
struct RaceOutcome {
    connack: Option<(bool, u8)>,
    closed: bool,
    publishes: usize,
}

/// Sends CONNECT on a new connection, then reads (acknowledging QoS 1) until `until`.
async fn race_connect(port: u16, connect: Connect, until: Instant) -> RaceOutcome {
    let mut conn = RawClient::connect_tcp(port).await;
    conn.send(&connect.encode()).await.expect("CONNECT");
    let mut outcome = RaceOutcome {
        connack: None,
        closed: false,
        publishes: 0,
    };
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return outcome;
        }
        match conn.recv(left).await {
            Ok(Incoming::ConnAck {
                session_present,
                code,
            }) => outcome.connack = Some((session_present, code)),
            Ok(Incoming::Publish(p)) => {
                outcome.publishes += 1;
                if let Some(id) = p.packet_id {
                    let _ = conn.send(&raw::puback(id)).await;
                }
            }
            Ok(_) => {}
            Err(RecvError::Timeout) => return outcome,
            Err(_) => {
                outcome.closed = true;
                return outcome;
            }
        }
    }
}

/// Two connections with the same client id at nearly the same time, on whichever cores: the
/// broker must end with exactly one of them connected, holding the persistent session
/// (session_present=1, its subscription intact), and must answer both promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_connections_with_one_client_id_leave_one_owner_of_the_session() {
    const ROUNDS: usize = 20;
    let broker = Broker::start(&["--cores", "2"]);
    let port = broker.port;
    let mut publisher = client::connect(port, "race-pub").await;
    let mut problems = Vec::new();
    for round in 0..ROUNDS {
        let id = format!("race-{round}");
        let topic = format!("race/{round}");
        let connect = Connect::v311(&id).clean(false);
        let mut setup = RawClient::connected(port, &connect).await;
        assert_eq!(setup.subscribe(1, &[(topic.as_str(), 1)]).await, [1]);
        setup.send(&raw::disconnect()).await.expect("DISCONNECT");
        drop(setup);
        broker
            .wait_disconnected_nth(&id, 0, LOG_TIMEOUT)
            .expect("setup connection ended");

        let until = Instant::now() + Duration::from_millis(1200);
        let first = tokio::spawn(race_connect(port, connect.clone(), until));
        let second = tokio::spawn(race_connect(port, connect.clone(), until));
        sleep(Duration::from_millis(500)).await;
        publisher
            .publish(&topic, 1, false, "for the survivor")
            .await;
        let outcomes = [first.await.expect("first"), second.await.expect("second")];
        let open: Vec<&RaceOutcome> = outcomes.iter().filter(|o| !o.closed).collect();
        let describe = || format!("round {round}: {outcomes:?}");
        if open.len() != 1 {
            problems.push(format!(
                "{} connections left open; {}",
                open.len(),
                describe()
            ));
            continue;
        }
        let survivor = open[0];
        if survivor.connack != Some((true, 0)) {
            problems.push(format!(
                "the surviving connection's CONNACK is {:?}, expected session_present=1 code 0; {}",
                survivor.connack,
                describe()
            ));
        }
        if outcomes.iter().map(|o| o.publishes).sum::<usize>() == 0 {
            problems.push(format!(
                "the message published after both connected reached neither; {}",
                describe()
            ));
        }
    }
    fail_if_any("simultaneous takeovers", &problems);
}

/// SIGTERM must stop the broker promptly (exit status 0) even while one core is saturated by
/// cross-core traffic: here a burst of messages for a core made slow by many offline sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_broker_while_a_core_is_saturated() {
    const OFFLINE_SESSIONS: usize = 1000;
    const BURST: u32 = 60_000;
    let mut broker = Broker::start(&["--cores", "2"]);
    let sub = RawClient::connected(broker.port, &Connect::v311("st-sub")).await;
    let sub_core = broker.core_of("st-sub", LOG_TIMEOUT);
    offline_sessions_on(&broker, sub_core, OFFLINE_SESSIONS, "st-off-", "st/#").await;
    let mut publisher = client_on_other_core(&broker, sub_core, "st-pub-").await;
    let mut burst = Vec::new();
    for n in 0..BURST {
        let id = (n % 65_535 + 1) as u16;
        burst.extend(raw::publish(
            b"st/x",
            n.to_string().as_bytes(),
            1,
            n % 2 == 0,
            false,
            id,
        ));
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), publisher.stream_write(&burst)).await;
    sleep(Duration::from_millis(500)).await;
    broker.sigterm();
    let status = broker.wait_exit(Duration::from_secs(15));
    drop(sub);
    assert!(
        status.is_some_and(|s| s.success()),
        "after SIGTERM the broker exited with {status:?} within 15 s"
    );
}

/// After its SUBACK, a subscription must receive every matching message published afterwards,
/// on whichever core the publisher is. `subscribe` waits for the other cores to record a filter
/// only when the filter is new to the subscriber's core; a second subscriber to a filter whose
/// announcement is still on its way is answered at once. Here the announcement is delayed by
/// a burst of messages queued ahead of it for a core made slow by many offline sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_receives_messages_published_on_another_core_after_its_suback() {
    const OFFLINE_SESSIONS: usize = 1000;
    const BURST: u32 = 4000;
    let broker = Broker::start(&["--cores", "2"]);

    let mut publisher = RawClient::connected(broker.port, &Connect::v311("sw-pub")).await;
    let pub_core = broker.core_of("sw-pub", LOG_TIMEOUT);
    offline_sessions_on(&broker, pub_core, OFFLINE_SESSIONS, "sw-off-", "load/#").await;
    let mut flood = client_on_other_core(&broker, pub_core, "sw-flood-").await;
    let sub_core = 1 - pub_core;
    let mut first = client_on_core(&broker, sub_core, "sw-first-").await;
    let mut second = client_on_core(&broker, sub_core, "sw-second-").await;

    // Work for the publisher's core, queued ahead of the subscriber core's announcements.
    let burst = load_burst(BURST);
    flood.send(&burst).await.expect("burst");
    first
        .send(&raw::subscribe(1, &[("sw/t", 1)]))
        .await
        .expect("first SUBSCRIBE");
    sleep(Duration::from_millis(50)).await;
    // The SUBACK waits for the publisher's core, which has the whole burst to fan out first
    // (slow in a debug build on a loaded machine): what matters here is what follows it.
    assert_eq!(
        second
            .subscribe_within(1, &[("sw/t", 1)], Duration::from_secs(30))
            .await,
        [1],
        "SUBACK"
    );

    publisher
        .send(&raw::publish(b"sw/t", b"after suback", 1, false, false, 1))
        .await
        .expect("PUBLISH");
    loop {
        match publisher.recv(raw::PACKET_TIMEOUT).await {
            Ok(Incoming::PubAck(1)) => break,
            Ok(_) => {}
            Err(e) => panic!("no PUBACK: {e:?}"),
        }
    }
    let got = second.next_publish(Duration::from_secs(5)).await;
    let mut later = "";
    if got.is_none() {
        publisher
            .send(&raw::publish(b"sw/t", b"later", 1, false, false, 2))
            .await
            .expect("PUBLISH");
        if second.next_publish(Duration::from_secs(5)).await.is_some() {
            later = "; a second message, published 5 s later, did arrive";
        }
    }
    assert!(
        got.is_some(),
        "a message published (core {pub_core}) after the SUBACK of a subscription (core \
         {sub_core}) never arrived{later}"
    );
}
