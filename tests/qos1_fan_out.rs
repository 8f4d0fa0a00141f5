//! One QoS 1 publisher faster than its subscribers' windows: while a subscriber that keeps up
//! (it acknowledges everything it gets) has half its session queue waiting behind its window,
//! the broker holds back its readers, the publisher among them, instead of dropping what the
//! queue cannot take. The subscribers' own acknowledgements are never held back.

mod common;

use std::time::Duration;

use common::client;
use common::raw::{self, Connect, RawClient};
use common::Broker;

/// Windows of 10 and queues of 40 QoS 1 messages: the publisher below brings 400 at once.
const SMALL_WINDOWS: &str = "[limits]\nmax_inflight_messages = 10\nmax_queued_messages = 40\n";

const SUBSCRIBERS: usize = 4;

const MESSAGES: usize = 400;

/// Large enough that one read of the publisher's socket holds only a few messages: the
/// broker paces between reads, not within one.
const PAYLOAD: usize = 1000;

/// Hard bound on the whole transfer (a hang guard, not a performance assertion).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);

/// The tests of this file run one at a time: each keeps both cores busy for a moment, and a
/// subscriber kept off the CPU for a whole tick of the broker's clock (100 ms) by the other
/// test would be taken for one that does not keep up.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The publisher's 400 PUBLISHes, each numbered at the start of its payload, to be sent in
/// one write without waiting for their PUBACKs (MQTT 3.1.1 sets no limit on a client's
/// unacknowledged QoS 1 publishes): ten times what a subscriber's window and queue hold.
fn flood() -> Vec<u8> {
    (0..MESSAGES)
        .flat_map(|seq| {
            let mut payload = vec![0u8; PAYLOAD];
            payload[..8].copy_from_slice(&seq.to_be_bytes());
            let packet_id = u16::try_from(seq + 1).expect("400 packet ids fit in 16 bits");
            raw::publish(b"firehose/ci", &payload, 1, false, false, packet_id)
        })
        .collect()
}

/// The sequence numbers of `received`, in arrival order.
fn sequence_numbers(received: &[rumqttc::Publish]) -> Vec<usize> {
    received
        .iter()
        .map(|publish| {
            usize::from_be_bytes(
                publish.payload[..8]
                    .try_into()
                    .expect("a sequence number at the payload's start"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_subscribers_that_keep_up_lose_nothing_to_a_faster_publisher() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let broker = Broker::with_config(SMALL_WINDOWS, &[]);
    let mut subscribers = Vec::new();
    for index in 0..SUBSCRIBERS {
        let mut subscriber = client::connect(broker.port, &format!("qos1-sub-{index}")).await;
        assert_eq!(subscriber.subscribe("firehose/#", 1).await, 1);
        subscribers.push(subscriber);
    }
    let mut publisher = RawClient::connected(broker.port, &Connect::v311("qos1-pub")).await;
    let writing = tokio::spawn(async move {
        publisher.stream_write(&flood()).await.expect("write flood");
        publisher
    });

    let mut receiving = Vec::new();
    for mut subscriber in subscribers {
        receiving.push(tokio::spawn(async move {
            let received = subscriber.collect_publishes(MESSAGES).await;
            let seqs = sequence_numbers(&received);
            let qos1 = received
                .iter()
                .all(|publish| publish.qos == rumqttc::QoS::AtLeastOnce);
            (subscriber, seqs, qos1)
        }));
    }
    let whole: Vec<usize> = (0..MESSAGES).collect();
    for (index, task) in receiving.into_iter().enumerate() {
        let (_subscriber, seqs, qos1) = tokio::time::timeout(TRANSFER_TIMEOUT, task)
            .await
            .expect("the flood is delivered or stops")
            .expect("subscriber task");
        assert!(qos1, "subscriber {index}: every message arrives at QoS 1");
        let first_gap = seqs.iter().zip(&whole).position(|(got, want)| got != want);
        assert!(
            seqs == whole,
            "subscriber {index}: all {MESSAGES} messages arrive, in order: {} arrived, first \
             difference at position {first_gap:?}",
            seqs.len()
        );
    }
    drop(writing.await.expect("publisher task"));
}

/// A subscriber acknowledging by hand beside one that keeps up, on a broker with small windows,
/// while the publisher's flood is written.
struct BesideAKeeper {
    /// Keeps the broker running for the test.
    _broker: Broker,
    /// The subscriber that acknowledges by hand.
    manual: client::Client,
    /// The rumqttc subscriber that acknowledges everything at once.
    keeping_up: client::Client,
    /// The publisher's write of the flood.
    writing: tokio::task::JoinHandle<RawClient>,
}

impl BesideAKeeper {
    /// Connects `manual_id` (acknowledging by hand) and a subscriber that keeps up, both on
    /// the publisher's topics at QoS 1, then starts the flood.
    async fn start(manual_id: &str) -> Self {
        let broker = Broker::with_config(SMALL_WINDOWS, &[]);
        let (mut manual, _) = client::connect_persistent(broker.port, manual_id, true).await;
        assert_eq!(manual.subscribe("firehose/#", 1).await, 1);
        let mut keeping_up = client::connect(broker.port, "qos1-keeping-up").await;
        assert_eq!(keeping_up.subscribe("firehose/#", 1).await, 1);
        let mut publisher = RawClient::connected(broker.port, &Connect::v311("qos1-pub")).await;
        let writing = tokio::spawn(async move {
            publisher.stream_write(&flood()).await.expect("write flood");
            publisher
        });
        Self {
            _broker: broker,
            manual,
            keeping_up,
            writing,
        }
    }

    /// Asserts that the subscriber that keeps up gets the whole flood, in order.
    async fn assert_keeper_gets_everything(keeping_up: &mut client::Client) {
        let received =
            tokio::time::timeout(TRANSFER_TIMEOUT, keeping_up.collect_publishes(MESSAGES))
                .await
                .expect("the flood is delivered or stops");
        let seqs = sequence_numbers(&received);
        let whole: Vec<usize> = (0..MESSAGES).collect();
        assert!(
            seqs == whole,
            "the subscriber that keeps up gets all {MESSAGES} messages, in order: {} arrived",
            seqs.len()
        );
    }
}

/// A subscriber that stops acknowledging fills its window and its queue for good: the broker
/// blames it for holding its core's readers back (after at most a tick or two), drops what it
/// cannot take, and goes on pacing the publisher for the subscriber that keeps up, which loses
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_acknowledging_holds_no_one_back_for_long() {
    let _alone = ONE_AT_A_TIME.lock().await;
    // Acknowledgements never given: 10 messages in flight, then its queue fills.
    let mut flood = BesideAKeeper::start("qos1-stuck").await;
    BesideAKeeper::assert_keeper_gets_everything(&mut flood.keeping_up).await;
    let unacknowledged = flood
        .manual
        .drain_publishes(Duration::from_millis(500))
        .await;
    assert_eq!(
        sequence_numbers(&unacknowledged),
        (0..10).collect::<Vec<_>>(),
        "the stuck subscriber gets its window's worth, the first 10"
    );
    drop(flood.writing.await.expect("publisher task"));
}

/// A subscriber that acknowledges, but slowly (one message every 20 ms, far below the rate the
/// publisher sends at), is not waited for: once the broker has measured its rate it no longer
/// holds the publisher back, so its queue's limits drop what it cannot take, as they would for
/// any slow client, while the subscriber beside it that keeps up still loses nothing. Were the
/// broker to wait for it, it would receive all 400, at its own pace, and hold everyone to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_acknowledges_slowly_does_not_set_everyones_pace() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let BesideAKeeper {
        _broker,
        manual: mut slow,
        mut keeping_up,
        writing,
    } = BesideAKeeper::start("qos1-slow").await;
    let acknowledging = tokio::spawn(async move {
        let mut received = Vec::new();
        // Until nothing more comes: what was dropped never does.
        while let Some(publish) = slow.try_next_publish(Duration::from_secs(2)).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
            slow.ack(&publish).await;
            received.push(publish);
        }
        received
    });
    BesideAKeeper::assert_keeper_gets_everything(&mut keeping_up).await;
    let slow_seqs = sequence_numbers(
        &tokio::time::timeout(TRANSFER_TIMEOUT, acknowledging)
            .await
            .expect("the slow subscriber's messages stop")
            .expect("slow subscriber task"),
    );
    assert!(
        slow_seqs.len() < MESSAGES && slow_seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "the slow subscriber loses what its queue cannot hold, and gets the rest in order: \
         {} of {MESSAGES} arrived",
        slow_seqs.len()
    );
    drop(writing.await.expect("publisher task"));
}
