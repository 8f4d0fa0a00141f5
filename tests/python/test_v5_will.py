"""MQTT 5 will delay interval with paho-mqtt: the will waits for its delay, is cancelled when
the client resumes its session in time, and goes out when the session ends first."""

import time

from paho.mqtt.packettypes import PacketTypes

from paho_client import MQTT_5, Will, properties


def connect_v5(clients, broker, client_id, clean_start=True, will=None, will_delay=None,
               **connect_properties):
    props = properties(PacketTypes.CONNECT, **connect_properties) if connect_properties else None
    will_props = None
    if will_delay is not None:
        will_props = properties(PacketTypes.WILLMESSAGE, WillDelayInterval=will_delay)
    return clients.connect(broker.port, client_id, protocol=MQTT_5, clean_session=clean_start,
                           connect_properties=props, will=will, will_properties=will_props)


def watcher(clients, broker, topic):
    client = connect_v5(clients, broker, f"watch-{topic.replace('/', '-')}")
    assert client.subscribe(topic, qos=1) == 1
    return client


def test_will_waits_for_its_delay(broker, clients):
    watch = watcher(clients, broker, "wd/late")
    dying = connect_v5(clients, broker, "wd-late", will=Will("wd/late", b"late", qos=1),
                       will_delay=2, SessionExpiryInterval=60)
    dying.drop()
    dropped_at = time.monotonic()
    broker.wait_for_disconnect("wd-late")
    watch.expect_no_message(timeout=1.2)
    message = watch.expect_message(timeout=3)
    waited = time.monotonic() - dropped_at
    assert message.payload == b"late"
    assert 1.9 <= waited <= 3.5, f"will published {waited:.2f}s after the connection ended"


def test_reconnecting_in_time_cancels_the_will(broker, clients):
    watch = watcher(clients, broker, "wd/cancel")
    dying = connect_v5(clients, broker, "wd-cancel", will=Will("wd/cancel", b"never", qos=1),
                       will_delay=2, SessionExpiryInterval=60)
    dying.drop()
    broker.wait_for_disconnect("wd-cancel")
    back = connect_v5(clients, broker, "wd-cancel", clean_start=False,
                      SessionExpiryInterval=60)
    assert back.session_present is True
    watch.expect_no_message(timeout=3.5)


def test_session_ending_first_publishes_the_will_then(broker, clients):
    watch = watcher(clients, broker, "wd/expiry")
    dying = connect_v5(clients, broker, "wd-expiry", will=Will("wd/expiry", b"ended", qos=1),
                       will_delay=60, SessionExpiryInterval=1)
    dying.drop()
    dropped_at = time.monotonic()
    message = watch.expect_message(timeout=4)
    assert message.payload == b"ended"
    assert time.monotonic() - dropped_at <= 3.5


def test_session_ending_with_the_connection_publishes_at_once(broker, clients):
    watch = watcher(clients, broker, "wd/now")
    dying = connect_v5(clients, broker, "wd-now", will=Will("wd/now", b"now", qos=1),
                       will_delay=60)
    dying.drop()
    assert watch.expect_message(timeout=2).payload == b"now"


def test_clean_start_ends_the_old_session_and_sends_its_will(broker, clients):
    watch = watcher(clients, broker, "wd/clean")
    dying = connect_v5(clients, broker, "wd-clean", will=Will("wd/clean", b"replaced", qos=1),
                       will_delay=60, SessionExpiryInterval=60)
    dying.drop()
    broker.wait_for_disconnect("wd-clean")
    connect_v5(clients, broker, "wd-clean", clean_start=True)
    assert watch.expect_message(timeout=2).payload == b"replaced"


def test_takeover_within_the_delay_sends_no_will(broker, clients):
    watch = watcher(clients, broker, "wd/takeover")
    old = connect_v5(clients, broker, "wd-takeover", will=Will("wd/takeover", b"no", qos=1),
                     will_delay=5, SessionExpiryInterval=60)
    connect_v5(clients, broker, "wd-takeover", clean_start=False, SessionExpiryInterval=60)
    assert old.wait_disconnected() == 0x8E
    watch.expect_no_message(timeout=1.5)
