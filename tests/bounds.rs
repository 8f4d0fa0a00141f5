//! The limits that keep broker-wide state bounded, at their edges: retained messages (count
//! and bytes), disconnected persistent sessions (count per core, and age).

mod common;

use std::time::Duration;

use common::client::{self, connect_persistent};
use common::{Broker, LOG_TIMEOUT};

const QUIET: Duration = Duration::from_millis(700);

/// Topics of the retained messages a new `#` subscriber receives, sorted.
async fn retained_topics(port: u16, id: &str) -> Vec<String> {
    let mut sub = client::connect(port, id).await;
    sub.subscribe("#", 0).await;
    let mut topics: Vec<String> = sub
        .drain_publishes(QUIET)
        .await
        .into_iter()
        .inspect(|p| assert!(p.retain, "stored messages arrive with retain=1"))
        .map(|p| p.topic)
        .collect();
    topics.sort();
    topics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_retained_messages_keeps_the_limit_and_refuses_new_topics() {
    let broker = Broker::with_config("[limits]\nmax_retained_messages = 2\n", &[]);
    let mut publisher = client::connect(broker.port, "ret-pub").await;
    for topic in ["r/a", "r/b", "r/c"] {
        publisher.publish(topic, 1, true, "kept?").await;
    }
    broker
        .wait_for_log("retained message not stored", LOG_TIMEOUT)
        .expect("a warning for the retained message over the limit");
    assert_eq!(
        retained_topics(broker.port, "ret-sub-1").await,
        ["r/a", "r/b"]
    );

    // Replacing a stored topic is not a new one; clearing one makes room.
    publisher.publish("r/a", 1, true, "replaced").await;
    publisher.publish("r/b", 1, true, "").await;
    publisher.publish("r/c", 1, true, "now kept").await;
    assert_eq!(
        retained_topics(broker.port, "ret-sub-2").await,
        ["r/a", "r/c"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_retained_bytes_counts_topic_and_payload() {
    // "r/a" + 7 bytes = 10 bytes each: two fit in 20, a third does not.
    let broker = Broker::with_config("[limits]\nmax_retained_bytes = 20\n", &[]);
    let mut publisher = client::connect(broker.port, "retb-pub").await;
    for topic in ["r/a", "r/b", "r/c"] {
        publisher.publish(topic, 1, true, "payload").await;
    }
    assert_eq!(
        retained_topics(broker.port, "retb-sub").await,
        ["r/a", "r/b"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_offline_sessions_drops_the_oldest_offline_session() {
    // One core, so both sessions count against the same per-core limit.
    let broker = Broker::with_config("[session]\nmax_offline_sessions = 1\n", &["--cores", "1"]);
    for id in ["off-old", "off-new"] {
        let (mut session, present) = connect_persistent(broker.port, id, false).await;
        assert!(!present);
        session.subscribe("off/t", 1).await;
        session.disconnect().await;
        broker
            .wait_disconnected(id, LOG_TIMEOUT)
            .expect("disconnect line");
    }
    broker
        .wait_for_log("offline session dropped", LOG_TIMEOUT)
        .expect("a warning when max_offline_sessions is passed");
    let (_newer, newer_present) = connect_persistent(broker.port, "off-new", false).await;
    assert!(newer_present, "the newer offline session is kept");
    let (_older, older_present) = connect_persistent(broker.port, "off-old", false).await;
    assert!(!older_present, "the oldest offline session was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_client_expiration_ends_offline_sessions() {
    let broker = Broker::with_config("[session]\npersistent_client_expiration = 1\n", &[]);
    let (mut session, _) = connect_persistent(broker.port, "expiring", false).await;
    session.subscribe("exp/t", 1).await;
    session.disconnect().await;
    broker
        .wait_for_log("offline session expired", Duration::from_secs(5))
        .expect("the offline session expires after about a second");
    let (_back, present) = connect_persistent(broker.port, "expiring", false).await;
    assert!(!present, "an expired session is gone");

    // One that comes back in time keeps its session.
    let broker = Broker::with_config("[session]\npersistent_client_expiration = 60\n", &[]);
    let (mut session, _) = connect_persistent(broker.port, "staying", false).await;
    session.subscribe("exp/t", 1).await;
    session.disconnect().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_back, present) = connect_persistent(broker.port, "staying", false).await;
    assert!(present, "a session within its expiration is kept");
}
