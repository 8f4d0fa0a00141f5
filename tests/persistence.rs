//! Retained messages on disk, against the real broker process: `kill -9` while publishers
//! wait for their PUBACKs, restarts on the same directory, files damaged by hand (cut short,
//! a flipped byte, an empty file, a file from a future version) and a changed number of cores.
//! After each restart a new subscriber must receive exactly what the files still justify.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::client::{self, Client};
use common::raw::{self, Incoming, RawClient, RawPublish};
use common::{Broker, LOG_TIMEOUT, QUIET};
use rumqttc::Event;

/// Longest a killed broker may take to be reaped.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a publisher waits for one PUBACK before it takes the broker for gone.
const PUBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Hard bound on a publishing phase (a hang guard, not a performance assertion).
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// A directory for one test's persistence files, removed when the test ends.
struct DataDir(PathBuf);

impl DataDir {
    fn new(name: &str) -> DataDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "hydrant-persistence-test-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        DataDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// The directory of core `core`.
    fn core(&self, core: usize) -> PathBuf {
        self.0.join(format!("core-{core}"))
    }

    /// The log files of core `core`, oldest first.
    fn logs(&self, core: usize) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.core(core))
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                    .filter(|path| {
                        path.file_name()
                            .and_then(|name| name.to_str())
                            .is_some_and(|name| name.starts_with("log-") && !name.contains('.'))
                    })
                    .collect()
            })
            .unwrap_or_default();
        logs.sort();
        logs
    }

    /// Names of the files of core `core` that recovery moved aside.
    fn moved_aside(&self, core: usize) -> Vec<String> {
        std::fs::read_dir(self.core(core))
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok())
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.contains(".corrupt-"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A broker configuration that persists in `dir` with `sync`, plus `extra` `[persistence]`
/// lines.
fn config(dir: &Path, sync: &str, extra: &str) -> String {
    format!(
        "[persistence]\npersistence = true\npersistence_location = \"{}\"\nsync = \"{sync}\"\n\
         {extra}",
        dir.display()
    )
}

/// Starts a broker on `cores` cores persisting in `dir`.
fn start(dir: &DataDir, sync: &str, cores: usize) -> Broker {
    start_with(dir, sync, cores, "")
}

/// [`start`] with `extra` `[persistence]` lines.
fn start_with(dir: &DataDir, sync: &str, cores: usize, extra: &str) -> Broker {
    let cores = cores.to_string();
    Broker::with_config(&config(dir.path(), sync, extra), &["--cores", &cores])
}

/// `kill -9`: no shutdown, no flush, no close.
fn kill_9(broker: &mut Broker) {
    broker.signal(libc::SIGKILL);
    assert!(
        broker.wait_exit(EXIT_TIMEOUT).is_some(),
        "the broker did not die of SIGKILL"
    );
}

/// Every retained message a new subscriber to `filter` receives, as topic -> payload; each
/// must arrive once, with its retain flag.
async fn retained(port: u16, filter: &str, id: &str) -> BTreeMap<String, String> {
    let mut sub = client::connect(port, id).await;
    sub.subscribe(filter, 1).await;
    let mut seen = BTreeMap::new();
    for publish in sub.drain_publishes(QUIET).await {
        assert!(publish.retain, "{}: retain flag missing", publish.topic);
        let payload = String::from_utf8(publish.payload.to_vec()).expect("UTF-8 payload");
        if let Some(earlier) = seen.insert(publish.topic.clone(), payload) {
            panic!("{} delivered twice (first {earlier:?})", publish.topic);
        }
    }
    sub.disconnect().await;
    seen
}

/// Publishes `topic -> payload` pairs as retained QoS 1 messages, one at a time, each after
/// the PUBACK of the one before.
async fn publish_all(port: u16, id: &str, messages: &[(String, String)]) {
    let mut publisher = client::connect(port, id).await;
    for (topic, payload) in messages {
        publisher.publish(topic, 1, true, payload.clone()).await;
    }
    publisher.disconnect().await;
}

/// `count` topics under `prefix` with payloads that name them (so that a test can find each
/// one in the files).
fn numbered(prefix: &str, count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|n| {
            let topic = format!("{prefix}/{n}");
            let payload = format!("payload of {topic} ~~~~~~~~");
            (topic, payload)
        })
        .collect()
}

/// Where `needle` starts in `haystack`, last occurrence.
fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .rposition(|window| window == needle)
}

/// What a publisher had acknowledged when its broker died.
#[derive(Default)]
struct Acknowledged {
    /// Per topic, the payload of the last update whose PUBACK arrived.
    last: BTreeMap<String, String>,
    /// Per publisher, the update sent whose PUBACK never came (it may or may not be stored).
    in_flight: Vec<(String, String)>,
    /// PUBACKs received, all publishers together.
    count: u64,
}

/// One publisher: retained QoS 1 updates cycling over `topics` topics of its own, each sent
/// after the PUBACK of the one before, recorded in `acked`, until a PUBACK does not come.
async fn publish_until_gone(
    mut publisher: Client,
    tag: String,
    topics: u64,
    acked: Arc<Mutex<Acknowledged>>,
) {
    let started = Instant::now();
    for seq in 0u64.. {
        assert!(
            started.elapsed() < LOAD_TIMEOUT,
            "{tag}: the broker was never killed"
        );
        let topic = format!("{tag}/{}", seq % topics);
        let payload = format!("{tag} update {seq}");
        publisher
            .publish_no_wait(&topic, 1, true, payload.clone())
            .await;
        let puback = publisher
            .next_matching(
                |event| matches!(event, Event::Incoming(rumqttc::Incoming::PubAck(_))),
                PUBACK_TIMEOUT,
            )
            .await;
        let mut acked = acked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if puback.is_none() {
            acked.in_flight.push((topic, payload));
            return;
        }
        acked.last.insert(topic, payload);
        acked.count += 1;
    }
}

/// Publishers on `publishers` connections load the broker with retained QoS 1 updates; it is
/// killed with SIGKILL once `kill_after` PUBACKs have arrived, then restarted on the same
/// directory: every acknowledged update must be there, the last one of each topic (or the
/// update in flight at the kill, which the broker may have stored without acknowledging).
async fn kill_mid_load_then_check(sync: &str, tag: &str) {
    const PUBLISHERS: usize = 4;
    const TOPICS_PER_PUBLISHER: u64 = 25;
    const KILL_AFTER: u64 = 400;
    let dir = DataDir::new(tag);
    let mut broker = start(&dir, sync, 2);
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let mut tasks = Vec::new();
    for n in 0..PUBLISHERS {
        let publisher = client::connect(broker.port, &format!("{tag}-pub-{n}")).await;
        tasks.push(tokio::spawn(publish_until_gone(
            publisher,
            format!("{tag}/p{n}"),
            TOPICS_PER_PUBLISHER,
            Arc::clone(&acked),
        )));
    }
    let started = Instant::now();
    while acked.lock().unwrap_or_else(|p| p.into_inner()).count < KILL_AFTER {
        assert!(started.elapsed() < LOAD_TIMEOUT, "publishing too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kill_9(&mut broker);
    for task in tasks {
        task.await.expect("publisher task");
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|p| p.into_inner()));
    println!(
        "{tag}: {} PUBACKs over {} topics before kill -9, {} in flight",
        acked.count,
        acked.last.len(),
        acked.in_flight.len()
    );

    let broker = start(&dir, sync, 2);
    let restored = retained(broker.port, &format!("{tag}/#"), &format!("{tag}-sub")).await;
    for (topic, payload) in &acked.last {
        let in_flight = acked
            .in_flight
            .iter()
            .find(|(pending, _)| pending == topic)
            .map(|(_, pending)| pending);
        match restored.get(topic) {
            Some(got) if got == payload || Some(got) == in_flight => {}
            other => panic!(
                "{topic}: acknowledged {payload:?} (in flight: {in_flight:?}), restored {other:?}"
            ),
        }
    }
    for (topic, payload) in &restored {
        let known = acked.last.get(topic) == Some(payload)
            || acked
                .in_flight
                .iter()
                .any(|(pending, sent)| pending == topic && sent == payload);
        assert!(
            known,
            "{topic}: restored {payload:?}, which was never the last update"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sync_always_every_acknowledged_retained_message_survives_kill_9() {
    kill_mid_load_then_check("always", "kill-always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sync_interval_a_killed_broker_loses_nothing_acknowledged() {
    // The interval only bounds what a power cut loses: a record is written to the kernel
    // before its PUBACK, and the kernel keeps it when the process dies.
    kill_mid_load_then_check("interval", "kill-interval").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleared_retained_message_stays_cleared_after_restarts() {
    let dir = DataDir::new("cleared");
    let mut broker = start(&dir, "always", 2);
    let mut publisher = client::connect(broker.port, "clear-pub").await;
    for topic in ["clear/a", "clear/b", "clear/c"] {
        publisher
            .publish(topic, 1, true, format!("{topic} v1"))
            .await;
    }
    publisher.publish("clear/b", 1, true, "").await;
    publisher.publish("clear/c", 1, true, "clear/c v2").await;
    drop(publisher);
    kill_9(&mut broker);

    let expected = BTreeMap::from([
        ("clear/a".to_owned(), "clear/a v1".to_owned()),
        ("clear/c".to_owned(), "clear/c v2".to_owned()),
    ]);
    let mut broker = start(&dir, "always", 2);
    assert_eq!(
        retained(broker.port, "clear/#", "clear-sub-1").await,
        expected
    );
    // A clean stop, then a restart: still cleared.
    broker.sigterm();
    assert!(broker.wait_exit(EXIT_TIMEOUT).is_some());
    let broker = start(&dir, "always", 2);
    assert_eq!(
        retained(broker.port, "clear/#", "clear-sub-2").await,
        expected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_compaction_and_kill_9_the_snapshot_and_the_log_give_the_live_state() {
    let dir = DataDir::new("compaction");
    // Compaction is due as soon as a core's log passes 64 KiB (and twice its snapshot).
    let extra = "autosave_log_bytes = 65536\n";
    let mut broker = start_with(&dir, "interval", 1, extra);
    let filler = "x".repeat(1024);
    let mut expected = BTreeMap::new();
    let mut publisher = client::connect(broker.port, "compact-pub").await;
    for round in 0..4 {
        for n in 0..40 {
            let topic = format!("compact/{n}");
            let payload = format!("round {round} {filler}");
            publisher.publish(&topic, 1, true, payload.clone()).await;
            expected.insert(topic, payload);
        }
    }
    broker
        .wait_for_log("persistence compacted", LOG_TIMEOUT)
        .expect("a compaction once the log passed autosave_log_bytes");
    assert!(
        dir.core(0).join("snapshot").is_file(),
        "no snapshot written"
    );
    // Changes after the snapshot: cleared, replaced, new.
    for n in 0..10 {
        let topic = format!("compact/{n}");
        publisher.publish(&topic, 1, true, "").await;
        expected.remove(&topic);
    }
    publisher
        .publish("compact/20", 1, true, "after the snapshot")
        .await;
    expected.insert("compact/20".into(), "after the snapshot".into());
    publisher.publish("compact/new", 1, true, "brand new").await;
    expected.insert("compact/new".into(), "brand new".into());
    drop(publisher);
    kill_9(&mut broker);

    let broker = start_with(&dir, "interval", 1, extra);
    assert_eq!(
        retained(broker.port, "compact/#", "compact-sub").await,
        expected
    );
}

/// Fills a 2-core broker with `count` retained topics under `prefix`, kills it, and returns
/// the topics with their payloads.
async fn fill_and_kill(dir: &DataDir, prefix: &str, count: usize) -> Vec<(String, String)> {
    let messages = numbered(prefix, count);
    let mut broker = start(dir, "always", 2);
    publish_all(broker.port, &format!("{prefix}-pub"), &messages).await;
    kill_9(&mut broker);
    messages
}

/// The log of one of the two cores holding at least `at_least` of `messages`' payloads, with
/// its contents and those payloads' positions in it.
fn a_log_holding(
    dir: &DataDir,
    messages: &[(String, String)],
    at_least: usize,
) -> (PathBuf, Vec<u8>, Vec<(usize, String)>) {
    for core in 0..2 {
        for log in dir.logs(core) {
            let bytes = std::fs::read(&log).expect("read a log");
            let mut found: Vec<(usize, String)> = messages
                .iter()
                .filter_map(|(topic, payload)| {
                    rfind(&bytes, payload.as_bytes()).map(|at| (at, topic.clone()))
                })
                .collect();
            found.sort();
            if found.len() >= at_least {
                return (log, bytes, found);
            }
        }
    }
    panic!("no log holds {at_least} of the {} messages", messages.len());
}

/// `messages` without `missing`, as a subscriber should receive them.
fn all_but(messages: &[(String, String)], missing: &[String]) -> BTreeMap<String, String> {
    messages
        .iter()
        .filter(|(topic, _)| !missing.contains(topic))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_cut_in_its_last_record_loses_that_record_only() {
    let dir = DataDir::new("torn");
    let messages = fill_and_kill(&dir, "torn", 40).await;
    let (log, bytes, found) = a_log_holding(&dir, &messages, 2);
    let (last_at, last_topic) = found.last().cloned().expect("a record");
    // Cut in the middle of the last record's payload, as a crash mid-write would.
    std::fs::write(&log, &bytes[..last_at + 5]).expect("cut the log");

    let broker = start(&dir, "always", 2);
    assert_eq!(
        retained(broker.port, "torn/#", "torn-sub").await,
        all_but(&messages, &[last_topic])
    );
    let line = broker
        .wait_for_log(
            "torn tail after the last valid persistence record",
            LOG_TIMEOUT,
        )
        .expect("the torn tail is reported");
    assert!(line.contains("truncated=true"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_loses_its_record_and_keeps_those_after_it() {
    let dir = DataDir::new("flipped");
    let messages = fill_and_kill(&dir, "flip", 40).await;
    let (log, mut bytes, found) = a_log_holding(&dir, &messages, 3);
    let (at, damaged_topic) = found[found.len() / 2].clone();
    bytes[at + 3] ^= 0xFF;
    std::fs::write(&log, &bytes).expect("write the damaged log");

    let broker = start(&dir, "always", 2);
    assert_eq!(
        retained(broker.port, "flip/#", "flip-sub").await,
        all_but(&messages, &[damaged_topic])
    );
    broker
        .wait_for_log("damaged persistence record skipped", LOG_TIMEOUT)
        .expect("the damaged record is reported");
    broker
        .wait_for_log("persistence recovered with damage", LOG_TIMEOUT)
        .expect("the recovery summary says there was damage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_is_moved_aside_and_everything_else_served() {
    let dir = DataDir::new("empty");
    let messages = fill_and_kill(&dir, "empty", 30).await;
    let stray = dir.core(0).join("log-00000000000000000042");
    std::fs::write(&stray, b"").expect("an empty log");

    let broker = start(&dir, "always", 2);
    assert_eq!(
        retained(broker.port, "empty/#", "empty-sub").await,
        all_but(&messages, &[])
    );
    let line = broker
        .wait_for_log("persistence file cannot be read: moved aside", LOG_TIMEOUT)
        .expect("the empty file is reported");
    assert!(line.contains("the file is empty"), "{line}");
    assert!(!stray.exists(), "the empty file is still in place");
    assert_eq!(dir.moved_aside(0).len(), 1, "{:?}", dir.moved_aside(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_from_a_future_version_is_moved_aside_and_the_rest_served() {
    let dir = DataDir::new("future");
    let messages = fill_and_kill(&dir, "future", 40).await;
    let (log, mut bytes, found) = a_log_holding(&dir, &messages, 1);
    // The format version (little-endian u16 after the 8-byte magic) of a later hydrant.
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    std::fs::write(&log, &bytes).expect("write the future log");
    let lost: Vec<String> = found.into_iter().map(|(_, topic)| topic).collect();
    let expected = all_but(&messages, &lost);

    let mut broker = start(&dir, "always", 2);
    assert_eq!(
        retained(broker.port, "future/#", "future-sub-1").await,
        expected
    );
    let line = broker
        .wait_for_log("persistence file cannot be read: moved aside", LOG_TIMEOUT)
        .expect("the future file is reported");
    assert!(line.contains("unknown format version 2"), "{line}");
    assert!(!log.exists(), "the future file is still in place");

    // The broker goes on writing, and the file moved aside stays for a person to look at.
    let mut publisher = client::connect(broker.port, "future-pub-2").await;
    publisher
        .publish("future/after", 1, true, "written after")
        .await;
    drop(publisher);
    kill_9(&mut broker);
    let broker = start(&dir, "always", 2);
    let mut expected = expected;
    expected.insert("future/after".into(), "written after".into());
    assert_eq!(
        retained(broker.port, "future/#", "future-sub-2").await,
        expected
    );
    let moved: usize = (0..2).map(|core| dir.moved_aside(core).len()).sum();
    assert_eq!(moved, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_number_of_cores_keeps_every_retained_message() {
    let dir = DataDir::new("cores");
    let mut expected: BTreeMap<String, String> = numbered("cores", 60).into_iter().collect();
    let mut broker = start(&dir, "always", 2);
    let messages: Vec<(String, String)> = expected.clone().into_iter().collect();
    publish_all(broker.port, "cores-pub-1", &messages).await;
    kill_9(&mut broker);

    for (round, cores) in [3usize, 1, 2].into_iter().enumerate() {
        let mut broker = start(&dir, "always", cores);
        assert_eq!(
            retained(broker.port, "cores/#", &format!("cores-sub-{round}")).await,
            expected,
            "after restarting on {cores} cores"
        );
        broker
            .wait_for_log("retained messages restored", LOG_TIMEOUT)
            .expect("the restore summary");
        // Change some, clear some, on this core count.
        let mut publisher = client::connect(broker.port, &format!("cores-pub-r{round}")).await;
        for n in (round..60).step_by(7) {
            let topic = format!("cores/{n}");
            if n % 2 == 0 {
                publisher.publish(&topic, 1, true, "").await;
                expected.remove(&topic);
            } else {
                let payload = format!("changed on {cores} cores");
                publisher.publish(&topic, 1, true, payload.clone()).await;
                expected.insert(topic, payload);
            }
        }
        drop(publisher);
        kill_9(&mut broker);
        if cores == 1 {
            // Down to one core: the directories of cores 1 and 2 were read and removed.
            assert!(!dir.core(1).exists() && !dir.core(2).exists());
        }
    }
    let broker = start(&dir, "always", 2);
    assert_eq!(
        retained(broker.port, "cores/#", "cores-sub-last").await,
        expected
    );
}

// Persistent sessions (issue 6, phase 2).

/// Unsubscribes `client` from `filter` and waits for the UNSUBACK.
async fn unsubscribe(client: &mut Client, filter: &str) {
    client
        .client
        .unsubscribe(filter)
        .await
        .expect("queue UNSUBSCRIBE");
    let unsuback = client
        .next_matching(
            |event| matches!(event, Event::Incoming(rumqttc::Incoming::UnsubAck(_))),
            PUBACK_TIMEOUT,
        )
        .await;
    assert!(
        unsuback.is_some(),
        "{}: no UNSUBACK for {filter}",
        client.id
    );
}

/// Waits for the broker's log to say each core restored its persistent sessions.
fn wait_sessions_restored(broker: &Broker) {
    broker
        .wait_for_log("persistent sessions restored", LOG_TIMEOUT)
        .expect("a start-up line about persistent sessions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_and_its_subscriptions_survive_kill_9() {
    let dir = DataDir::new("session-subs");
    let mut broker = start(&dir, "always", 2);
    // Several client ids, so that sessions held by either core and owned by either are
    // covered.
    let ids: Vec<String> = (0..6).map(|n| format!("sess-sub-{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let (mut sub, present) = client::connect_persistent(broker.port, id, false).await;
        assert!(!present, "{id}: a first connection finds no session");
        sub.subscribe(&format!("sess/{n}/#"), 1).await;
        sub.subscribe("sess/all", 0).await;
        if n == 0 {
            sub.subscribe("sess/gone", 1).await;
        }
        sub.disconnect().await;
    }
    // Unsubscribed again, and killed as soon as the UNSUBACK arrives: not restored (the
    // UNSUBACK waits for the removal's record).
    let (mut last, present) = client::connect_persistent(broker.port, &ids[0], false).await;
    assert!(present);
    unsubscribe(&mut last, "sess/gone").await;
    kill_9(&mut broker);

    let broker = start(&dir, "always", 2);
    wait_sessions_restored(&broker);
    let mut subscribers = Vec::new();
    for id in &ids {
        let (sub, present) = client::connect_persistent(broker.port, id, false).await;
        assert!(present, "{id}: its session was restored (session present)");
        subscribers.push(sub);
    }
    let mut publisher = client::connect(broker.port, "sess-pub").await;
    for n in 0..ids.len() {
        publisher
            .publish(&format!("sess/{n}/x"), 1, false, format!("for {n}"))
            .await;
    }
    publisher.publish("sess/all", 1, false, "to all").await;
    publisher.publish("sess/gone", 1, false, "nobody").await;
    for (n, sub) in subscribers.iter_mut().enumerate() {
        let got = sub.drain_publishes(QUIET).await;
        let mut seen: Vec<(String, String, u8)> = got
            .iter()
            .map(|publish| {
                (
                    publish.topic.clone(),
                    String::from_utf8_lossy(&publish.payload).into_owned(),
                    client::level(publish.qos),
                )
            })
            .collect();
        seen.sort();
        let mut expected = vec![
            (format!("sess/{n}/x"), format!("for {n}"), 1),
            ("sess/all".to_owned(), "to all".to_owned(), 0),
        ];
        expected.sort();
        assert_eq!(seen, expected, "{}: subscriptions as granted", ids[n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_session_after_a_restart_finds_nothing() {
    let dir = DataDir::new("session-clean");
    let mut broker = start(&dir, "always", 2);
    let (mut sub, _) = client::connect_persistent(broker.port, "sess-clean", false).await;
    sub.subscribe("clean/#", 1).await;
    sub.disconnect().await;
    kill_9(&mut broker);

    let mut broker = start(&dir, "always", 2);
    wait_sessions_restored(&broker);
    let (mut sub, present) = client::connect_with(client::options(broker.port, "sess-clean")).await;
    assert!(!present, "a clean session discards the restored one");
    let mut publisher = client::connect(broker.port, "clean-pub").await;
    publisher
        .publish("clean/x", 1, false, "not subscribed")
        .await;
    sub.expect_no_publish(QUIET, "the clean session has no subscription")
        .await;
    sub.disconnect().await;
    // And the ended session stays ended across another restart.
    kill_9(&mut broker);
    let broker = start(&dir, "always", 2);
    wait_sessions_restored(&broker);
    let (_sub, present) = client::connect_persistent(broker.port, "sess-clean", false).await;
    assert!(!present, "the session ended before the second restart");
}

/// Connects persistent subscribers `ids` (clean session 0), each subscribed to `filter` at
/// `qos`, then disconnects them.
async fn leave_persistent_subscribers(port: u16, ids: &[String], filter: &str, qos: u8) {
    for id in ids {
        let (mut sub, _) = client::connect_persistent(port, id, false).await;
        sub.subscribe(filter, qos).await;
        sub.disconnect().await;
    }
}

/// The payloads a reconnected persistent subscriber receives until it has been quiet for a
/// while, after checking that its session was present.
async fn reconnect_and_drain(port: u16, id: &str) -> Vec<rumqttc::Publish> {
    let (mut sub, present) = client::connect_persistent(port, id, false).await;
    assert!(present, "{id}: its session was restored");
    let received = sub.drain_publishes(Duration::from_secs(2)).await;
    sub.disconnect().await;
    received
}

/// Offline persistent subscribers at `qos`, `count` messages published to them (each
/// acknowledged), `kill -9` with `sync`, restart: every subscriber receives every message
/// exactly once.
async fn queued_messages_survive_kill_9(tag: &str, qos: u8, sync: &str) {
    const COUNT: usize = 50;
    let dir = DataDir::new(tag);
    let mut broker = start(&dir, sync, 2);
    let ids: Vec<String> = (0..4).map(|n| format!("{tag}-sub-{n}")).collect();
    leave_persistent_subscribers(broker.port, &ids, &format!("{tag}/#"), qos).await;
    let mut publisher = client::connect(broker.port, &format!("{tag}-pub")).await;
    for n in 0..COUNT {
        publisher
            .publish(&format!("{tag}/{}", n % 3), qos, false, format!("m{n}"))
            .await;
    }
    kill_9(&mut broker);

    let broker = start(&dir, sync, 2);
    let expected: Vec<String> = (0..COUNT).map(|n| format!("m{n}")).collect();
    for id in &ids {
        let received = reconnect_and_drain(broker.port, id).await;
        for publish in &received {
            assert_eq!(client::level(publish.qos), qos, "{id}: QoS as subscribed");
        }
        let payloads: Vec<String> = received
            .iter()
            .map(|publish| String::from_utf8_lossy(&publish.payload).into_owned())
            .collect();
        assert_eq!(payloads, expected, "{id}: every message, once, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_qos1_messages_of_offline_sessions_survive_kill_9() {
    queued_messages_survive_kill_9("queued-q1", 1, "always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sync_interval_a_burst_killed_at_once_loses_nothing_acknowledged() {
    // The window of "interval" bounds what a power cut loses: each record reaches the kernel
    // before its PUBACK, and the kernel keeps it when only the process dies. So `kill -9`
    // right after the last PUBACK of a burst may lose nothing acknowledged.
    queued_messages_survive_kill_9("queued-interval", 1, "interval").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_qos2_messages_of_offline_sessions_survive_kill_9_exactly_once() {
    queued_messages_survive_kill_9("queued-q2", 2, "always").await;
}

/// Reads packets from `client` until `want` of them satisfy `keep`, answering nothing; panics
/// if they do not come in time.
async fn read_packets(client: &mut RawClient, want: usize, what: &str) -> Vec<Incoming> {
    let mut packets = Vec::new();
    while packets.len() < want {
        match client.recv(Duration::from_secs(20)).await {
            Ok(Incoming::PingResp) => {}
            Ok(packet) => packets.push(packet),
            Err(error) => panic!("{what}: {error:?} after {packets:?}"),
        }
    }
    packets
}

fn publish_of(packet: &Incoming) -> &RawPublish {
    match packet {
        Incoming::Publish(publish) => publish,
        other => panic!("expected a PUBLISH, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inflight_messages_and_qos2_ids_survive_kill_9() {
    let dir = DataDir::new("inflight");
    let mut broker = start(&dir, "always", 2);
    let connect = raw::Connect::v311("inflight-sub").clean(false);
    let mut sub = RawClient::connected(broker.port, &connect).await;
    assert_eq!(
        sub.subscribe(1, &[("inf/q1", 1), ("inf/q2", 2)]).await,
        vec![1, 2]
    );
    let (watcher, _) = client::connect_persistent(broker.port, "inflight-watch", false).await;
    let mut watcher = watcher;
    watcher.subscribe("inf/in", 1).await;
    watcher.disconnect().await;

    let mut publisher = client::connect(broker.port, "inflight-pub").await;
    publisher.publish("inf/q1", 1, false, "a").await;
    publisher.publish("inf/q2", 2, false, "b").await;
    publisher.publish("inf/q2", 2, false, "c").await;
    let first = read_packets(&mut sub, 3, "three deliveries").await;
    let sent: Vec<RawPublish> = first
        .iter()
        .map(|packet| publish_of(packet).clone())
        .collect();
    let payloads: Vec<&[u8]> = sent
        .iter()
        .map(|publish| publish.payload.as_slice())
        .collect();
    assert_eq!(payloads, vec![&b"a"[..], b"b", b"c"]);
    let id_of = |n: usize| sent[n].packet_id.expect("QoS 1/2 has a packet id");
    // "c" is received (PUBREC) and released (PUBREL comes), but never completed.
    sub.send(&raw::pubrec(id_of(2))).await.expect("send PUBREC");
    assert_eq!(
        read_packets(&mut sub, 1, "PUBREL").await,
        vec![Incoming::PubRel(id_of(2))]
    );
    // A QoS 2 PUBLISH from the client, received (PUBREC) and not released.
    sub.send(&raw::publish(b"inf/in", b"once", 2, false, false, 77))
        .await
        .expect("send PUBLISH");
    assert_eq!(
        read_packets(&mut sub, 1, "PUBREC").await,
        vec![Incoming::PubRec(77)]
    );
    // Its PUBACK says the subscriber's records before it are on disk (one log per core).
    publisher.publish("inf/q1", 1, false, "d").await;
    let d = read_packets(&mut sub, 1, "the fourth delivery").await;
    let d = publish_of(&d[0]).clone();
    assert_eq!(d.payload, b"d");
    kill_9(&mut broker);

    let broker = start(&dir, "always", 2);
    let (mut sub, present, code) = RawClient::handshake(broker.port, &connect).await;
    assert_eq!((present, code), (true, 0), "session present after restart");
    let again = read_packets(&mut sub, 4, "the resent packets").await;
    let mut publishes = Vec::new();
    let mut pubrels = Vec::new();
    for packet in again {
        match packet {
            Incoming::Publish(publish) => publishes.push(publish),
            Incoming::PubRel(id) => pubrels.push(id),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(pubrels, vec![id_of(2)], "PUBREL resent for the released id");
    let expected: Vec<RawPublish> = [sent[0].clone(), sent[1].clone(), d]
        .into_iter()
        .map(|publish| RawPublish {
            dup: true,
            ..publish
        })
        .collect();
    assert_eq!(
        publishes, expected,
        "unacknowledged PUBLISHes resent in order, DUP set, same packet ids"
    );
    // The client sends its QoS 2 PUBLISH again: acknowledged, not delivered twice.
    sub.send(&raw::publish(b"inf/in", b"once", 2, false, true, 77))
        .await
        .expect("send PUBLISH again");
    assert_eq!(
        read_packets(&mut sub, 1, "PUBREC again").await,
        vec![Incoming::PubRec(77)]
    );
    sub.send(&raw::pubrel(77)).await.expect("send PUBREL");
    assert_eq!(
        read_packets(&mut sub, 1, "PUBCOMP").await,
        vec![Incoming::PubComp(77)]
    );
    let watched = reconnect_and_drain(broker.port, "inflight-watch").await;
    let watched: Vec<&[u8]> = watched.iter().map(|publish| &publish.payload[..]).collect();
    assert_eq!(
        watched,
        vec![&b"once"[..]],
        "the client's QoS 2 message, once"
    );
}

/// What a persistent subscriber received, deduplicated as MQTT asks of a QoS 2 receiver
/// (Method B: a PUBLISH whose packet id awaits PUBREL is the same message again). The state
/// outlives a connection, as a client's session state must.
#[derive(Default)]
struct Received {
    /// With manual acknowledgements: every `n`th PUBLISH is never acknowledged (`Some(1)`:
    /// none is), so that messages stay in flight and queue up behind a full window.
    withhold_every: Option<usize>,
    /// PUBLISHes seen (for `withhold_every`).
    seen: usize,
    /// Payloads delivered to the application, in order.
    delivered: Vec<String>,
    /// QoS 2 packet ids received and not yet released.
    awaiting_pubrel: std::collections::BTreeSet<u16>,
}

impl Received {
    /// Reads `client` until it has been quiet for `idle` or its connection ends.
    async fn read(&mut self, client: &mut Client, idle: Duration) {
        loop {
            let event = client
                .next_matching(
                    |event| {
                        matches!(
                            event,
                            Event::Incoming(
                                rumqttc::Incoming::Publish(_) | rumqttc::Incoming::PubRel(_)
                            )
                        )
                    },
                    idle,
                )
                .await;
            match event {
                Some(Event::Incoming(rumqttc::Incoming::Publish(publish))) => {
                    self.seen += 1;
                    if let Some(every) = self.withhold_every {
                        if self.seen % every != 0 {
                            client.ack(&publish).await;
                        }
                    }
                    if publish.qos == rumqttc::QoS::ExactlyOnce
                        && !self.awaiting_pubrel.insert(publish.pkid)
                    {
                        continue;
                    }
                    self.delivered
                        .push(String::from_utf8_lossy(&publish.payload).into_owned());
                }
                Some(Event::Incoming(rumqttc::Incoming::PubRel(pubrel))) => {
                    self.awaiting_pubrel.remove(&pubrel.pkid);
                }
                _ => return,
            }
        }
    }
}

/// One publisher of unique QoS `qos` payloads on `topic`, each sent after the acknowledgement
/// of the one before (PUBACK, or PUBCOMP for QoS 2), recorded in `acked`, until none comes.
async fn publish_unique_until_gone(
    mut publisher: Client,
    tag: String,
    topic: String,
    qos: u8,
    acked: Arc<Mutex<Vec<String>>>,
) {
    let started = Instant::now();
    for seq in 0u64.. {
        assert!(started.elapsed() < LOAD_TIMEOUT, "{tag}: never killed");
        let payload = format!("{tag} {seq}");
        publisher
            .publish_no_wait(&topic, qos, false, payload.clone())
            .await;
        let done = publisher
            .next_matching(
                |event| {
                    matches!(
                        event,
                        Event::Incoming(
                            rumqttc::Incoming::PubAck(_) | rumqttc::Incoming::PubComp(_)
                        )
                    )
                },
                PUBACK_TIMEOUT,
            )
            .await;
        if done.is_none() {
            return;
        }
        acked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(payload);
    }
}

/// Persistent subscribers online at `qos`, publishers loading them, `kill -9` with
/// `sync = "always"`, restart: every acknowledged message reaches every subscriber (before
/// or after the restart), and at QoS 2 none twice.
async fn online_subscribers_kill_mid_load(tag: &str, qos: u8) {
    online_subscribers_kill_mid_load_with(tag, qos, "").await;
}

/// [`online_subscribers_kill_mid_load`] with `extra` `[persistence]` lines.
async fn online_subscribers_kill_mid_load_with(tag: &str, qos: u8, extra: &str) {
    const PUBLISHERS: usize = 2;
    const KILL_AFTER: usize = 300;
    let dir = DataDir::new(tag);
    let mut broker = start_with(&dir, "always", 2, extra);
    let ids: Vec<String> = ["keeps-up", "withholds", "acks-nothing"]
        .iter()
        .map(|kind| format!("{tag}-{kind}"))
        .collect();
    let mut readers = Vec::new();
    // A subscriber that keeps up, one that leaves every third message unacknowledged (its
    // window fills, then messages queue), one that acknowledges nothing.
    for (id, withhold_every) in ids.iter().zip([None, Some(3), Some(1)]) {
        let manual = withhold_every.is_some();
        let (mut sub, _) = client::connect_persistent(broker.port, id, manual).await;
        sub.subscribe(&format!("{tag}/#"), qos).await;
        readers.push(tokio::spawn(async move {
            let mut received = Received {
                withhold_every,
                ..Received::default()
            };
            received.read(&mut sub, LOAD_TIMEOUT).await;
            received
        }));
    }
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut publishers = Vec::new();
    for n in 0..PUBLISHERS {
        let publisher = client::connect(broker.port, &format!("{tag}-pub-{n}")).await;
        publishers.push(tokio::spawn(publish_unique_until_gone(
            publisher,
            format!("p{n}"),
            format!("{tag}/{n}"),
            qos,
            Arc::clone(&acked),
        )));
    }
    let started = Instant::now();
    while acked.lock().unwrap_or_else(|p| p.into_inner()).len() < KILL_AFTER {
        assert!(started.elapsed() < LOAD_TIMEOUT, "publishing too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if !extra.is_empty() {
        assert!(
            broker
                .wait_for_log("persistence compacted", LOG_TIMEOUT)
                .is_some(),
            "{tag}: no compaction under load"
        );
    }
    kill_9(&mut broker);
    for publisher in publishers {
        publisher.await.expect("publisher task");
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|p| p.into_inner()));

    let broker = start_with(&dir, "always", 2, extra);
    for (id, reader) in ids.iter().zip(readers) {
        let mut received = reader.await.expect("reader task");
        let before = received.delivered.len();
        received.withhold_every = None;
        let (mut sub, present) = client::connect_persistent(broker.port, id, false).await;
        assert!(present, "{id}: session restored");
        received.read(&mut sub, Duration::from_secs(3)).await;
        println!(
            "{tag} {id}: {} acknowledged, {before} received before the kill, {} after",
            acked.len(),
            received.delivered.len() - before
        );
        let delivered: std::collections::HashSet<&String> = received.delivered.iter().collect();
        for payload in &acked {
            assert!(
                delivered.contains(payload),
                "{id}: acknowledged {payload:?} never delivered"
            );
        }
        if qos == 2 {
            assert_eq!(
                delivered.len(),
                received.delivered.len(),
                "{id}: a QoS 2 message delivered twice"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_qos1_subscribers_get_every_acknowledged_message_across_kill_9() {
    online_subscribers_kill_mid_load("online-q1", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_qos2_subscribers_get_every_acknowledged_message_once_across_kill_9() {
    online_subscribers_kill_mid_load("online-q2", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_qos2_subscribers_lose_nothing_when_compactions_run_under_load_and_kill_9() {
    // A small trigger: compactions copy the sessions while their messages flow, packet ids
    // are used and freed and their records keep coming (see `PersistedSessions`).
    let tag = "online-compacting";
    online_subscribers_kill_mid_load_with(tag, 2, "autosave_log_bytes = 65536\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_their_queues_survive_compaction_and_kill_9() {
    let dir = DataDir::new("session-compaction");
    let extra = "autosave_log_bytes = 65536\n";
    let mut broker = start_with(&dir, "interval", 1, extra);
    let id = "cmp-sub".to_owned();
    leave_persistent_subscribers(broker.port, std::slice::from_ref(&id), "cmp/#", 1).await;
    leave_persistent_subscribers(broker.port, &["cmp-watch".to_owned()], "cmpwill/#", 1).await;
    // A client connected through it all with a will: its will is written when it connects,
    // then only in the snapshot; the broker's death ends its connection.
    let willer =
        raw::Connect::v311("cmp-willer")
            .clean(false)
            .will("cmpwill/x", b"willer gone", 1, false);
    let _willer = RawClient::connected(broker.port, &willer).await;
    // A subscriber that acknowledged part of its messages before the snapshot.
    let (mut partial, _) = client::connect_persistent(broker.port, "cmp-partial", true).await;
    partial.subscribe("cmp/#", 1).await;
    let filler = "x".repeat(1024);
    let mut publisher = client::connect(broker.port, "cmp-pub").await;
    let mut expected = Vec::new();
    for n in 0..80 {
        let payload = format!("before {n} {filler}");
        publisher.publish("cmp/x", 1, false, payload.clone()).await;
        expected.push(payload);
    }
    // It acknowledges the first ten it received, then goes away.
    let first = partial.collect_publishes(10).await;
    for publish in &first {
        partial.ack(publish).await;
    }
    partial.disconnect().await;
    broker
        .wait_for_log("persistence compacted", LOG_TIMEOUT)
        .expect("a compaction once the log passed autosave_log_bytes");
    for n in 0..10 {
        let payload = format!("after {n}");
        publisher.publish("cmp/x", 1, false, payload.clone()).await;
        expected.push(payload);
    }
    kill_9(&mut broker);

    let broker = start_with(&dir, "interval", 1, extra);
    let payloads = |received: Vec<rumqttc::Publish>| -> Vec<String> {
        received
            .iter()
            .map(|publish| String::from_utf8_lossy(&publish.payload).into_owned())
            .collect()
    };
    assert_eq!(
        payloads(reconnect_and_drain(broker.port, &id).await),
        expected,
        "the snapshot's queue, then the log's"
    );
    assert_eq!(
        payloads(reconnect_and_drain(broker.port, "cmp-partial").await),
        expected[10..].to_vec(),
        "acknowledged messages are not sent again"
    );
    let (mut watcher, present) = client::connect_persistent(broker.port, "cmp-watch", false).await;
    assert!(present);
    let will = watcher
        .try_next_publish(Duration::from_secs(20))
        .await
        .expect("the will of the client connected when the broker died");
    assert_eq!(&will.payload[..], b"willer gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_change_of_the_number_of_cores() {
    let dir = DataDir::new("session-cores");
    let mut broker = start(&dir, "always", 3);
    let ids: Vec<String> = (0..6).map(|n| format!("cores-sub-{n}")).collect();
    leave_persistent_subscribers(broker.port, &ids, "cores/#", 1).await;
    let mut publisher = client::connect(broker.port, "cores-pub").await;
    for n in 0..5 {
        publisher
            .publish("cores/x", 1, false, format!("m{n}"))
            .await;
    }
    kill_9(&mut broker);

    let expected: Vec<String> = (0..5).map(|n| format!("m{n}")).collect();
    let mut broker = start(&dir, "always", 1);
    for id in &ids[..3] {
        let received = reconnect_and_drain(broker.port, id).await;
        let payloads: Vec<String> = received
            .iter()
            .map(|publish| String::from_utf8_lossy(&publish.payload).into_owned())
            .collect();
        assert_eq!(payloads, expected, "{id}: its queue, on the one core left");
    }
    kill_9(&mut broker);
    // The adopted sessions were written to the remaining core's own files.
    let broker = start(&dir, "always", 2);
    for id in &ids[3..] {
        let received = reconnect_and_drain(broker.port, id).await;
        assert_eq!(received.len(), 5, "{id}: its queue after two restarts");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_shared_subscription_members_on_both_cores_get_every_acknowledged_message_across_kill_9(
) {
    const KILL_AFTER: usize = 300;
    const MAX_MEMBERS: usize = 40;
    let tag = "shared-kill";
    let dir = DataDir::new(tag);
    let mut broker = start(&dir, "always", 2);
    let publisher_id = format!("{tag}-pub");
    let publisher = client::connect(broker.port, &publisher_id).await;
    let publisher_core = broker.core_of(&publisher_id, LOG_TIMEOUT);
    // Members join until each core holds one: the publisher's core then hands part of the
    // messages to a member on the other core, whose copies its PUBACKs must wait for.
    let filter = format!("$share/g/{tag}/#");
    let mut ids = Vec::new();
    let mut cores = [false; 2];
    for n in 0..MAX_MEMBERS {
        if cores.iter().all(|&held| held) {
            break;
        }
        let id = format!("{tag}-member-{n}");
        let (mut sub, _) = client::connect_persistent(broker.port, &id, false).await;
        let core = broker.core_of(&id, LOG_TIMEOUT);
        sub.subscribe(&filter, 1).await;
        sub.disconnect().await;
        cores[core] = true;
        ids.push(id);
    }
    assert!(
        cores[1 - publisher_core],
        "no member's session on the core other than the publisher's (core {publisher_core}) \
         in {MAX_MEMBERS} client ids"
    );
    let acked = Arc::new(Mutex::new(Vec::new()));
    let publishing = tokio::spawn(publish_unique_until_gone(
        publisher,
        tag.to_owned(),
        format!("{tag}/x"),
        1,
        Arc::clone(&acked),
    ));
    let started = Instant::now();
    while acked.lock().unwrap_or_else(|p| p.into_inner()).len() < KILL_AFTER {
        assert!(started.elapsed() < LOAD_TIMEOUT, "publishing too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kill_9(&mut broker);
    publishing.await.expect("publisher task");
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|p| p.into_inner()));

    let broker = start(&dir, "always", 2);
    wait_sessions_restored(&broker);
    let mut delivered = std::collections::HashSet::new();
    for id in &ids {
        let received = reconnect_and_drain(broker.port, id).await;
        println!("{tag} {id}: {} messages after the restart", received.len());
        delivered.extend(
            received
                .iter()
                .map(|publish| String::from_utf8_lossy(&publish.payload).into_owned()),
        );
    }
    println!(
        "{tag}: {} acknowledged, {} distinct delivered to {} members",
        acked.len(),
        delivered.len(),
        ids.len()
    );
    let lost: Vec<&String> = acked
        .iter()
        .filter(|payload| !delivered.contains(*payload))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged messages delivered to no member: {lost:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_no_more_offline_sessions_than_max_offline_sessions_the_newest() {
    const SESSIONS: usize = 5;
    const LIMIT: usize = 2;
    let dir = DataDir::new("offline-limit");
    let mut broker = start(&dir, "always", 1);
    let ids: Vec<String> = (0..SESSIONS)
        .map(|n| format!("offline-limit-{n}"))
        .collect();
    for id in &ids {
        leave_persistent_subscribers(broker.port, std::slice::from_ref(id), "limit/#", 1).await;
        // Offline times are recorded in milliseconds: keep them apart.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut publisher = client::connect(broker.port, "offline-limit-pub").await;
    publisher.publish("limit/x", 1, false, "queued").await;
    kill_9(&mut broker);

    let limited = format!("[session]\nmax_offline_sessions = {LIMIT}\n");
    let mut broker = start_with(&dir, "always", 1, &limited);
    let line = broker
        .wait_for_log("persistent sessions restored", LOG_TIMEOUT)
        .expect("a start-up line about persistent sessions");
    assert!(
        line.contains(&format!("restored={LIMIT}"))
            && line.contains(&format!("over_limit={}", SESSIONS - LIMIT)),
        "{line}"
    );
    // The newest offline sessions are kept, with their queues.
    for id in &ids[SESSIONS - LIMIT..] {
        let received = reconnect_and_drain(broker.port, id).await;
        let payloads: Vec<&[u8]> = received.iter().map(|p| &p.payload[..]).collect();
        assert_eq!(payloads, vec![&b"queued"[..]], "{id}: its queue");
    }
    kill_9(&mut broker);
    // The oldest were ended for good: without the limit they do not come back.
    let broker = start(&dir, "always", 1);
    wait_sessions_restored(&broker);
    for id in &ids[..SESSIONS - LIMIT] {
        let (sub, present) = client::connect_persistent(broker.port, id, false).await;
        assert!(
            !present,
            "{id}: one of the oldest offline sessions was dropped"
        );
        sub.disconnect().await;
    }
    for id in &ids[SESSIONS - LIMIT..] {
        let (sub, present) = client::connect_persistent(broker.port, id, false).await;
        assert!(present, "{id}: kept");
        sub.disconnect().await;
    }
}
