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
use common::{Broker, LOG_TIMEOUT, QUIET};
use rumqttc::{Event, Incoming};

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
                |event| matches!(event, Event::Incoming(Incoming::PubAck(_))),
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
