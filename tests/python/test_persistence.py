"""Retained messages on disk, seen by paho clients across `kill -9` and restarts: QoS 2
retained messages acknowledged with `sync = "always"`, the MQTT 5 properties of a retained
message (user properties, content type, correlation data, remaining expiry), and a message
whose expiry interval ran out while the broker was down, which is not restored."""

import contextlib
import time

import pytest

from paho.mqtt.packettypes import PacketTypes

from hydrant_process import Broker, broker_binary
from paho_client import MQTT_3_1_1, MQTT_5, Will, properties

STOP_TIMEOUT = 10.0


def persistence_config(data_dir, sync="always"):
    return (f"[persistence]\npersistence = true\npersistence_location = \"{data_dir}\"\n"
            f"sync = \"{sync}\"\n")


@contextlib.contextmanager
def running_broker(tmp_path, data_dir, cores=2, name="hydrant.toml", sync="always"):
    """A broker persisting in `data_dir`; killed with SIGKILL when the block ends (a test
    that wants a clean stop calls `broker.stop()` itself)."""
    config = tmp_path / name
    config.write_text(persistence_config(data_dir, sync))
    broker = Broker(broker_binary(), cores=cores, config=config)
    try:
        yield broker
    finally:
        kill_9(broker)


def kill_9(broker):
    if broker.process.poll() is None:
        broker.process.kill()
        broker.process.wait(timeout=STOP_TIMEOUT)


def retained_messages(clients, broker, client_id, topic_filter, protocol=MQTT_3_1_1, count=None):
    """The retained messages a new subscriber to `topic_filter` receives, by topic."""
    subscriber = clients.connect(broker.port, client_id, protocol=protocol)
    subscriber.subscribe(topic_filter, qos=1)
    received = subscriber.expect_messages(count) if count else []
    subscriber.expect_no_message()
    subscriber.disconnect()
    by_topic = {}
    for message in received:
        assert message.retain, message
        assert message.topic not in by_topic, f"{message.topic} delivered twice"
        by_topic[message.topic] = message
    return by_topic


def test_qos2_retained_messages_acknowledged_before_kill_9_are_kept(clients, tmp_path):
    data_dir = tmp_path / "data"
    with running_broker(tmp_path, data_dir, name="first.toml") as broker:
        publisher = clients.connect(broker.port, "p2-pub")
        for n in range(20):
            publisher.publish(f"p2/{n}", f"first {n}", qos=2, retain=True)
        for n in range(0, 20, 2):
            publisher.publish(f"p2/{n}", f"second {n}", qos=2, retain=True)
        publisher.publish("p2/19", b"", qos=2, retain=True)
        publisher.drop()
    # The block ended with SIGKILL: no shutdown, no flush.
    with running_broker(tmp_path, data_dir, name="second.toml") as broker:
        restored = retained_messages(clients, broker, "p2-sub", "p2/#", count=19)
    expected = {f"p2/{n}": (f"second {n}" if n % 2 == 0 else f"first {n}").encode()
                for n in range(19)}
    assert {topic: message.payload for topic, message in restored.items()} == expected
    assert all(message.qos == 1 for message in restored.values())


def test_mqtt5_properties_survive_and_expired_messages_do_not(clients, tmp_path):
    data_dir = tmp_path / "data"
    kept = properties(PacketTypes.PUBLISH, ContentType="application/json",
                      CorrelationData=b"\x00\x07", UserProperty=[("k", "v"), ("k", "w")],
                      PayloadFormatIndicator=1, MessageExpiryInterval=3600)
    short = properties(PacketTypes.PUBLISH, MessageExpiryInterval=1)
    with running_broker(tmp_path, data_dir, name="first.toml") as broker:
        publisher = clients.connect(broker.port, "p5-pub", protocol=MQTT_5)
        publisher.publish("p5/kept", '{"a": 1}', qos=1, retain=True, props=kept)
        publisher.publish("p5/short", "gone soon", qos=1, retain=True, props=short)
        publisher.publish("p5/plain", "no properties", qos=1, retain=True)
        publisher.drop()
    time.sleep(2.0)  # p5/short expires while the broker is down
    # Restarted on another number of cores: the topics change owners, the messages stay.
    with running_broker(tmp_path, data_dir, cores=3, name="second.toml") as broker:
        restored = retained_messages(clients, broker, "p5-sub", "p5/#", protocol=MQTT_5,
                                     count=2)
        assert set(restored) == {"p5/kept", "p5/plain"}
        message = restored["p5/kept"]
        assert message.payload == b'{"a": 1}'
        props = message.properties
        assert props["ContentType"] == "application/json", props
        assert props["CorrelationData"] == "0007", props
        assert props["UserProperty"] == [("k", "v"), ("k", "w")], props
        assert props["PayloadFormatIndicator"] == 1, props
        assert 3500 <= props["MessageExpiryInterval"] <= 3600, props
        assert restored["p5/plain"].properties == {}, restored["p5/plain"].properties
        broker.wait_for_log("retained messages restored")
        # A clean stop closes the log; the next start reads it back the same.
        assert broker.stop() == 0
    with running_broker(tmp_path, data_dir, name="third.toml") as broker:
        restored = retained_messages(clients, broker, "p5-sub-2", "p5/#", protocol=MQTT_5,
                                     count=2)
        assert set(restored) == {"p5/kept", "p5/plain"}


# Persistent sessions (issue 6, phase 2).

def test_session_expiry_counts_the_time_the_broker_was_down(clients, tmp_path):
    """A session with a 2 s expiry interval is gone after a restart 3 s later; one with an
    hour is still there, with its subscription and the message queued for it."""
    data_dir = tmp_path / "data"
    with running_broker(tmp_path, data_dir, name="first.toml") as broker:
        for client_id, expiry in (("exp-short", 2), ("exp-long", 3600)):
            client = clients.connect(broker.port, client_id, protocol=MQTT_5,
                                     clean_session=False, session_expiry=expiry)
            client.subscribe("exp/#", qos=1)
            client.disconnect()
        publisher = clients.connect(broker.port, "exp-pub")
        # Its PUBACK waits until the copies queued for both sessions are on disk.
        publisher.publish("exp/x", "queued", qos=1)
        publisher.drop()
    time.sleep(3.0)
    with running_broker(tmp_path, data_dir, name="second.toml") as broker:
        broker.wait_for_log("persistent sessions restored")
        short = clients.connect(broker.port, "exp-short", protocol=MQTT_5,
                                clean_session=False, session_expiry=2)
        assert not short.session_present, "the 2 s session expired while the broker was down"
        short.expect_no_message()
        long = clients.connect(broker.port, "exp-long", protocol=MQTT_5,
                               clean_session=False, session_expiry=3600)
        assert long.session_present
        assert long.expect_message().payload == b"queued"


def will_properties(delay):
    return properties(PacketTypes.WILLMESSAGE, WillDelayInterval=delay)


def test_delayed_wills_survive_kill_9_and_a_normal_disconnect_clears_them(clients, tmp_path):
    """Three MQTT 5 clients with a will delayed 2 s and sessions of an hour: one whose
    connection dropped just before `kill -9`, one still connected at the kill, one that sent
    DISCONNECT. After the restart the first two wills are published, the third never."""
    data_dir = tmp_path / "data"
    will_of = {name: Will(f"wills/{name}", f"{name} gone".encode(), qos=1)
               for name in ("dropped", "alive", "quiet")}
    with running_broker(tmp_path, data_dir, name="first.toml") as broker:
        # A persistent watcher: the wills are queued for it even before it is back.
        watcher = clients.connect(broker.port, "will-watch", clean_session=False)
        watcher.subscribe("wills/#", qos=1)
        watcher.disconnect()
        connected = {}
        for name, will in will_of.items():
            connected[name] = clients.connect(
                broker.port, f"will-{name}", protocol=MQTT_5, clean_session=False,
                session_expiry=3600, will=will, will_properties=will_properties(2))
            # Each subscribes to its own topic: its SUBACK waits until its session's records
            # (its will included) are on disk.
            connected[name].subscribe(f"own/{name}", qos=1)
        connected["dropped"].drop()
        broker.wait_for_disconnect("will-dropped")
        connected["quiet"].disconnect()
        broker.wait_for_disconnect("will-quiet")
        publisher = clients.connect(broker.port, "will-pub")
        # Each PUBACK waits for the queued copy in the offline session's log, written after
        # what became of its will.
        publisher.publish("own/dropped", "sync", qos=1)
        publisher.publish("own/quiet", "sync", qos=1)
        publisher.drop()
    with running_broker(tmp_path, data_dir, name="second.toml") as broker:
        watcher = clients.connect(broker.port, "will-watch", clean_session=False)
        assert watcher.session_present
        received = {message.topic: message.payload
                    for message in watcher.expect_messages(2, timeout=20.0)}
        assert received == {"wills/dropped": b"dropped gone", "wills/alive": b"alive gone"}
        watcher.expect_no_message(timeout=3.0)


@pytest.mark.parametrize("qos", [1, 2])
def test_acknowledgements_waiting_for_disk_leave_in_publish_order(clients, tmp_path, qos):
    """With `sync = "always"` each PUBACK (PUBREC) waits until the copies queued for the
    persistent sessions (on both cores) are on disk, while the broker goes on reading the
    publisher's next messages: the acknowledgements must still leave in the order the PUBLISHes
    came [MQTT-4.6.0-2, MQTT-4.6.0-3], and every subscriber gets every message once, in order.
    The publisher's own session is persistent too (its QoS 2 packet ids are written)."""
    data_dir = tmp_path / "data"
    with running_broker(tmp_path, data_dir) as broker:
        subscribers = clients.connect_on_each_core(broker, "order-sub", clean_session=False)
        for subscriber in subscribers.values():
            assert subscriber.subscribe("order/t", qos=qos) == qos
        publisher = clients.connect(broker.port, "order-pub", clean_session=False)
        payloads = [f"m{n}".encode() for n in range(300)]
        publisher.publish_many("order/t", payloads, qos=qos)
        assert publisher.acknowledged == sorted(publisher.acknowledged)
        assert len(publisher.acknowledged) == len(payloads)
        for subscriber in subscribers.values():
            received = subscriber.expect_messages(len(payloads))
            assert [message.payload for message in received] == payloads
            assert all(message.qos == qos for message in received)
            subscriber.expect_no_message()
