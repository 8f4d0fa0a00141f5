//! `max_subscriptions` at its edge: a client may hold exactly the limit; filters past it get
//! the SUBACK failure code and receive nothing, while re-subscribing to a held filter and
//! subscribing again after an unsubscribe still work.

mod common;

use std::time::Duration;

use common::raw::{self, Connect, Incoming, RawClient};
use common::Broker;

const WAIT: Duration = Duration::from_millis(700);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_past_max_subscriptions_get_the_failure_code() {
    let broker = Broker::with_config("[limits]\nmax_subscriptions = 3\n", &[]);
    let mut sub = RawClient::connected(broker.port, &Connect::v311("subs-limit")).await;
    let codes = sub
        .subscribe(1, &[("a", 0), ("b", 1), ("c", 2), ("d", 1)])
        .await;
    assert_eq!(
        codes,
        vec![0, 1, 2, 0x80],
        "the fourth filter is over the limit"
    );
    // A filter already held is a replacement, not a new subscription.
    assert_eq!(sub.subscribe(2, &[("b", 2)]).await, vec![2]);
    assert_eq!(sub.subscribe(3, &[("e", 0)]).await, vec![0x80]);

    let mut publisher = RawClient::connected(broker.port, &Connect::v311("subs-pub")).await;
    publisher
        .send(&raw::publish(b"d", b"refused", 0, false, false, 0))
        .await
        .expect("publish d");
    publisher
        .send(&raw::publish(b"a", b"granted", 0, false, false, 0))
        .await
        .expect("publish a");
    let first = sub
        .next_publish(WAIT * 3)
        .await
        .expect("message on a granted filter");
    assert_eq!(first.topic, b"a", "nothing arrives on the refused filter");

    // After an unsubscribe there is room again.
    sub.send(&unsubscribe(4, "a")).await.expect("unsubscribe");
    match sub.recv(WAIT * 3).await {
        Ok(Incoming::UnsubAck(4)) => {}
        other => panic!("expected UNSUBACK 4, got {other:?}"),
    }
    assert_eq!(sub.subscribe(5, &[("e", 1)]).await, vec![1]);
}

fn unsubscribe(packet_id: u16, filter: &str) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    raw::put_prefixed(&mut body, filter.as_bytes());
    raw::packet(0xA2, &body)
}
