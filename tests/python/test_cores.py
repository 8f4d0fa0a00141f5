"""Cross-core delivery: publishers and subscribers on different cores of a 2-core broker."""

import pytest


def test_subscribers_on_both_cores_receive_from_publishers_on_both_cores(broker, clients):
    subscribers = clients.connect_on_each_core(broker, "core-sub")
    for subscriber in subscribers.values():
        assert subscriber.subscribe("cores/fanout", qos=2) == 2
    publishers = clients.connect_on_each_core(broker, "core-pub")

    sent = []
    for publisher_core, publisher in sorted(publishers.items()):
        for qos in (0, 1, 2):
            payload = f"from core {publisher_core} at qos {qos}".encode()
            publisher.publish("cores/fanout", payload, qos=qos)
            sent.append((payload, qos))

    for subscriber_core, subscriber in sorted(subscribers.items()):
        received = [(m.payload, m.qos) for m in subscriber.expect_messages(len(sent))]
        assert sorted(received) == sorted(sent), f"subscriber on core {subscriber_core}"
        subscriber.expect_no_message()


BURST = 200


def _first_difference(got: list, expected: list) -> str:
    for index, (a, b) in enumerate(zip(got, expected)):
        if a != b:
            return f"index {index}: got {a}, expected {b}"
    return f"lengths differ ({len(got)} vs {len(expected)})"


@pytest.mark.parametrize("qos", [1, 2])
def test_burst_crosses_cores_in_order_without_loss(broker, clients, qos):
    subscribers = clients.connect_on_each_core(broker, "burst-sub")
    for subscriber in subscribers.values():
        assert subscriber.subscribe("cores/burst", qos=qos) == qos
    publishers = clients.connect_on_each_core(broker, "burst-pub")

    for core, publisher in publishers.items():
        publisher.publish_many("cores/burst", [f"{core}:{n}".encode() for n in range(BURST)],
                               qos=qos)

    for subscriber_core, subscriber in sorted(subscribers.items()):
        received = [m.payload.decode() for m in
                    subscriber.expect_messages(BURST * len(publishers), timeout=15)]
        for publisher_core in publishers:
            sequence = [int(p.split(":")[1]) for p in received
                        if p.startswith(f"{publisher_core}:")]
            assert sequence == list(range(BURST)), (
                f"subscriber on core {subscriber_core} got {len(sequence)} messages from the "
                f"publisher on core {publisher_core}; first out of place: "
                f"{_first_difference(sequence, list(range(BURST)))}"
            )
        subscriber.expect_no_message()


def test_retained_message_visible_from_every_core(broker, clients):
    publishers = clients.connect_on_each_core(broker, "ret-core-pub")
    for core, publisher in publishers.items():
        publisher.publish(f"cores/retained/{core}", f"kept by core {core}".encode(), qos=1,
                          retain=True)

    readers = clients.connect_on_each_core(broker, "ret-core-reader")
    for reader_core, reader in sorted(readers.items()):
        assert reader.subscribe("cores/retained/+", qos=1) == 1
        received = {m.topic: (m.payload, m.retain) for m in reader.expect_messages(len(publishers))}
        assert received == {
            f"cores/retained/{core}": (f"kept by core {core}".encode(), True)
            for core in publishers
        }, f"reader on core {reader_core}"
        reader.expect_no_message()


def test_unsubscribe_on_one_core_stops_delivery_from_the_other(broker, clients):
    subscribers = clients.connect_on_each_core(broker, "unsub-core-sub")
    for subscriber in subscribers.values():
        assert subscriber.subscribe_many([("cores/unsub", 1), ("cores/sentinel", 1)]) == [1, 1]
    publishers = clients.connect_on_each_core(broker, "unsub-core-pub")

    for subscriber in subscribers.values():
        subscriber.unsubscribe("cores/unsub")
    for publisher in publishers.values():
        publisher.publish("cores/unsub", b"after unsubscribe", qos=1)
        publisher.publish("cores/sentinel", b"sentinel", qos=1)

    for core, subscriber in subscribers.items():
        received = [m.topic for m in subscriber.expect_messages(len(publishers))]
        assert received == ["cores/sentinel"] * len(publishers), f"subscriber on core {core}"
        subscriber.expect_no_message()
