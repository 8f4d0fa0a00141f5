"""Delivery at QoS 0, 1 and 2 over MQTT 3.1 and 3.1.1, and QoS downgrade to the grant."""

import pytest

from paho_client import MQTT_3_1, MQTT_3_1_1

PROTOCOL_NAMES = {MQTT_3_1: "3.1", MQTT_3_1_1: "3.1.1"}


@pytest.mark.parametrize(
    ("publisher_protocol", "subscriber_protocol"),
    [(MQTT_3_1_1, MQTT_3_1_1), (MQTT_3_1, MQTT_3_1), (MQTT_3_1, MQTT_3_1_1)],
    ids=["3.1.1-to-3.1.1", "3.1-to-3.1", "3.1-to-3.1.1"],
)
def test_round_trip_at_each_qos(broker, clients, publisher_protocol, subscriber_protocol):
    subscriber = clients.connect(broker.port, "rt-sub", protocol=subscriber_protocol)
    publisher = clients.connect(broker.port, "rt-pub", protocol=publisher_protocol)
    for client_id, protocol in (("rt-sub", subscriber_protocol), ("rt-pub", publisher_protocol)):
        fields = broker.wait_for_connect(client_id)
        assert fields["protocol"] == PROTOCOL_NAMES[protocol], fields

    assert subscriber.subscribe("round/trip", qos=2) == 2

    for qos in (0, 1, 2):
        payload = f"payload at qos {qos}".encode()
        publisher.publish("round/trip", payload, qos=qos)
        message = subscriber.expect_message()
        assert (message.topic, message.payload, message.qos) == ("round/trip", payload, qos)
        assert message.retain is False
        assert message.dup is False
    subscriber.expect_no_message()


def test_delivered_qos_is_min_of_published_and_granted(broker, clients):
    subscribers = {}
    for granted in (0, 1, 2):
        subscriber = clients.connect(broker.port, f"min-sub-{granted}")
        assert subscriber.subscribe("qos/min", qos=granted) == granted
        subscribers[granted] = subscriber
    publisher = clients.connect(broker.port, "min-pub")

    for published in (0, 1, 2):
        publisher.publish("qos/min", f"published {published}".encode(), qos=published)

    for granted, subscriber in subscribers.items():
        received = {m.payload: m.qos for m in subscriber.expect_messages(3)}
        expected = {f"published {p}".encode(): min(p, granted) for p in (0, 1, 2)}
        assert received == expected, f"subscriber granted QoS {granted}"
        subscriber.expect_no_message()


def test_overlapping_subscriptions_deliver_once_at_highest_qos(broker, clients):
    subscriber = clients.connect(broker.port, "overlap-sub")
    assert subscriber.subscribe_many([("overlap/#", 0), ("overlap/x", 2), ("overlap/+", 1)]) \
        == [0, 2, 1]
    publisher = clients.connect(broker.port, "overlap-pub")

    publisher.publish("overlap/x", b"once", qos=2)

    message = subscriber.expect_message()
    assert (message.topic, message.payload, message.qos) == ("overlap/x", b"once", 2)
    subscriber.expect_no_message()
