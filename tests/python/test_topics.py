"""Topic matching: `+` and `#` wildcards, `$` topics hidden from leading wildcards, and
UNSUBSCRIBE stopping delivery."""

import pytest

PUBLISHED = [
    "sport",
    "sports",
    "sport/tennis",
    "sport/tennis/player1",
    "sport/tennis/player1/ranking",
    "/finance",
    "x/status",
    "$app/status",
    "$app",
]
NOT_DOLLAR = [topic for topic in PUBLISHED if not topic.startswith("$")]

# Expected matches, from the examples and rules of MQTT 3.1.1 section 4.7.
EXPECTED = {
    "#": NOT_DOLLAR,
    "+/#": NOT_DOLLAR,
    "sport/#": ["sport", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking"],
    "sport/tennis/+": ["sport/tennis/player1"],
    "+/tennis/#": ["sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking"],
    "+": ["sport", "sports"],
    "+/+": ["sport/tennis", "/finance", "x/status"],
    "/+": ["/finance"],
    "+/status": ["x/status"],
    "$app/#": ["$app/status", "$app"],
    "$app/+": ["$app/status"],
    "sport/tennis/player1": ["sport/tennis/player1"],
}


def test_wildcards_and_dollar_topics(broker, clients):
    subscribers = {}
    for n, topic_filter in enumerate(EXPECTED):
        subscriber = clients.connect(broker.port, f"wild-{n}")
        assert subscriber.subscribe(topic_filter, qos=1) == 1, topic_filter
        subscribers[topic_filter] = subscriber
    publisher = clients.connect(broker.port, "wild-pub")

    for topic in PUBLISHED:
        publisher.publish(topic, topic.encode(), qos=1)

    for topic_filter, expected in EXPECTED.items():
        subscriber = subscribers[topic_filter]
        received = [m.topic for m in subscriber.expect_messages(len(expected))]
        assert sorted(received) == sorted(expected), f"filter {topic_filter!r}"
        try:
            subscriber.expect_no_message(timeout=0.2)
        except AssertionError as extra:
            pytest.fail(f"filter {topic_filter!r}: {extra}")


def test_unsubscribe_stops_delivery(broker, clients):
    subscriber = clients.connect(broker.port, "unsub-sub")
    assert subscriber.subscribe_many([("unsub/a", 1), ("unsub/sentinel", 1)]) == [1, 1]
    publisher = clients.connect(broker.port, "unsub-pub")

    publisher.publish("unsub/a", b"before", qos=1)
    assert subscriber.expect_message().payload == b"before"

    subscriber.unsubscribe("unsub/a")
    publisher.publish("unsub/a", b"after", qos=1)
    publisher.publish("unsub/sentinel", b"sentinel", qos=1)

    message = subscriber.expect_message()
    assert (message.topic, message.payload) == ("unsub/sentinel", b"sentinel")
    subscriber.expect_no_message()

    # The other subscription is untouched.
    publisher.publish("unsub/sentinel", b"still subscribed", qos=1)
    assert subscriber.expect_message().payload == b"still subscribed"
