//! Shared harness of the black-box tests: start the real broker, talk to it with rumqttc or
//! with hand-written bytes, and read its log.
// Every tests/*.rs file compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod broker;
pub mod client;
pub mod raw;

pub use broker::Broker;

use std::time::Duration;

/// A short wait used to assert that something does NOT happen.
pub const QUIET: Duration = Duration::from_millis(700);

/// Idle time after which events already sent are taken to have been read (after a QUIET wait).
pub const SETTLED: Duration = Duration::from_millis(30);

/// Default wait for a log line that should appear promptly.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(5);

/// A subscriber and a publisher on their own topic, used to show that the broker keeps
/// serving well-behaved clients while another connection misbehaves.
pub struct HealthyPair {
    pub subscriber: client::Client,
    pub publisher: client::Client,
    topic: String,
    sent: u32,
}

impl HealthyPair {
    /// Connects `{tag}-healthy-sub` and `{tag}-healthy-pub` and subscribes at QoS 1.
    pub async fn new(port: u16, tag: &str) -> HealthyPair {
        let mut subscriber = client::connect(port, &format!("{tag}-healthy-sub")).await;
        let publisher = client::connect(port, &format!("{tag}-healthy-pub")).await;
        let topic = format!("healthy/{tag}");
        subscriber.subscribe(&topic, 1).await;
        let mut pair = HealthyPair {
            subscriber,
            publisher,
            topic,
            sent: 0,
        };
        pair.check("before the test").await;
        pair
    }

    /// Publishes one QoS 1 message and asserts that the subscriber receives it intact.
    pub async fn check(&mut self, when: &str) {
        self.sent += 1;
        let payload = format!("healthy #{}", self.sent);
        self.publisher
            .publish(&self.topic, 1, false, payload.clone())
            .await;
        let got = self
            .subscriber
            .next_publish(&format!("healthy pair delivery {when}"))
            .await;
        assert_eq!(got.topic, self.topic, "healthy pair topic {when}");
        assert_eq!(
            &got.payload[..],
            payload.as_bytes(),
            "healthy pair payload {when}"
        );
    }
}
