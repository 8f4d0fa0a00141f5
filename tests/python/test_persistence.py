"""Retained messages on disk, seen by paho clients across `kill -9` and restarts: QoS 2
retained messages acknowledged with `sync = "always"`, the MQTT 5 properties of a retained
message (user properties, content type, correlation data, remaining expiry), and a message
whose expiry interval ran out while the broker was down, which is not restored."""

import contextlib
import time

from paho.mqtt.packettypes import PacketTypes

from hydrant_process import Broker, broker_binary
from paho_client import MQTT_3_1_1, MQTT_5, properties

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
