"""Will messages: published when a connection ends without DISCONNECT, never after one."""

import time

from paho_client import Will


def test_will_published_on_abrupt_close(broker, clients):
    watcher = clients.connect(broker.port, "will-watcher")
    assert watcher.subscribe("will/topic", qos=2) == 2
    dying = clients.connect(broker.port, "will-dying",
                            will=Will("will/topic", b"gone", qos=1, retain=False))

    dying.drop()

    line = broker.wait_for_log("client disconnected client_id=will-dying ")
    assert "reason=connection lost" in line, line
    message = watcher.expect_message()
    assert (message.topic, message.payload, message.qos, message.retain) == \
        ("will/topic", b"gone", 1, False)
    watcher.expect_no_message()


def test_will_not_published_after_disconnect(broker, clients):
    watcher = clients.connect(broker.port, "nowill-watcher")
    assert watcher.subscribe("will/topic", qos=2) == 2
    leaving = clients.connect(broker.port, "nowill-leaving",
                              will=Will("will/topic", b"must not appear", qos=1))

    leaving.disconnect()

    line = broker.wait_for_log("client disconnected client_id=nowill-leaving ")
    assert "reason=client disconnected" in line, line
    watcher.expect_no_message(timeout=1.0)


def test_retained_will_is_stored(broker, clients):
    dying = clients.connect(broker.port, "rwill-dying",
                            will=Will("will/retained", b"last words", qos=1, retain=True))
    dying.drop()
    broker.wait_for_disconnect("rwill-dying")

    reader = clients.connect(broker.port, "rwill-reader")
    assert reader.subscribe("will/retained", qos=1) == 1
    message = reader.expect_message()
    assert (message.payload, message.qos, message.retain) == (b"last words", 1, True)


def test_keep_alive_timeout_closes_silent_client_and_publishes_will(broker, clients):
    watcher = clients.connect(broker.port, "ka-watcher")
    assert watcher.subscribe("ka/will", qos=1) == 1
    silent = clients.connect(broker.port, "ka-silent", keepalive=2,
                             will=Will("ka/will", b"timed out", qos=1))
    last_packet_sent = silent.connected_at

    silent.stall()

    line = broker.wait_for_log("client disconnected client_id=ka-silent ", timeout=10)
    closed_after = time.monotonic() - last_packet_sent
    assert "reason=keep-alive timeout" in line, line
    # The broker must allow 1.5 x keep-alive (3 s) of silence; a little slack for scheduling.
    assert 2.9 <= closed_after <= 6.0, f"closed {closed_after:.2f}s after the last packet"
    message = watcher.expect_message()
    assert (message.topic, message.payload, message.qos) == ("ka/will", b"timed out", 1)
