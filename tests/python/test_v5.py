"""MQTT 5 with paho-mqtt (protocol=MQTTv5), a client hydrant did not write: the CONNACK and
its properties, sessions driven by clean start and the session expiry interval, the will on
DISCONNECT 0x04, and delivery between MQTT 5 and MQTT 3.1.1 clients."""

import time

from paho.mqtt.packettypes import PacketTypes

from paho_client import MQTT_3_1_1, MQTT_5, Will, properties

DEFAULT_MAX_PACKET_SIZE = 1048576
DEFAULT_MAX_INFLIGHT = 20


def connect_v5(clients, broker, client_id, clean_start=True, expiry=None, **options):
    """An MQTT 5 client; `expiry` is the session expiry interval it asks for."""
    props = options.pop("connect_properties", None)
    if expiry is not None:
        props = props or properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = expiry
    return clients.connect(broker.port, client_id, protocol=MQTT_5, clean_session=clean_start,
                           connect_properties=props, **options)


def _disconnect_and_wait(broker, client, **options) -> None:
    mark = broker.log_mark()
    client.disconnect(**options)
    broker.wait_for_disconnect(client.client_id, since=mark)


def test_connack_announces_the_brokers_limits_and_capabilities(broker, clients):
    client = connect_v5(clients, broker, "v5-caps")
    assert client.connack_reason.value == 0
    assert client.session_present is False
    props = client.connack_properties
    assert props["ReceiveMaximum"] == DEFAULT_MAX_INFLIGHT, props
    assert props["MaximumPacketSize"] == DEFAULT_MAX_PACKET_SIZE, props
    assert props["RetainAvailable"] == 1, props
    assert props["WildcardSubscriptionAvailable"] == 1, props
    assert props["SharedSubscriptionAvailable"] == 1, props
    assert props["SubscriptionIdentifierAvailable"] == 1, props
    assert props["TopicAliasMaximum"] == 10, props
    # Maximum QoS 2 is said by leaving the property out; nothing was changed from the request.
    for absent in ("MaximumQoS", "AssignedClientIdentifier", "ServerKeepAlive",
                   "SessionExpiryInterval"):
        assert absent not in props, props
    line = broker.wait_for_connect("v5-caps")
    assert line["protocol"] == "5.0", line


def test_empty_client_id_gets_an_assigned_identifier(broker, clients):
    client = connect_v5(clients, broker, "", clean_start=False, expiry=60)
    assigned = client.connack_properties["AssignedClientIdentifier"]
    assert assigned.startswith("auto-"), assigned
    broker.wait_for_connect(assigned)


def test_empty_client_id_refused_when_not_allowed(broker_factory, clients):
    broker = broker_factory(config="[session]\nallow_zero_length_clientid = false\n")
    client = connect_v5(clients, broker, "", expect_success=False)
    assert client.connack_reason.value == 0x85


def test_keep_alive_beyond_max_keepalive_gets_a_server_keep_alive(broker_factory, clients):
    broker = broker_factory(config="[limits]\nmax_keepalive = 30\n")
    client = connect_v5(clients, broker, "v5-ka", keepalive=120)
    assert client.connack_properties["ServerKeepAlive"] == 30
    assert broker.wait_for_connect("v5-ka")["keep_alive"] == "30"
    # The 3.1.1 rule is unchanged: refused with return code 2 (which paho reports as 0x85).
    old = clients.connect(broker.port, "v311-ka", keepalive=120, expect_success=False)
    assert old.connack_failure and old.connack_reason.value == 0x85


def test_authentication_method_is_refused_with_bad_authentication_method(broker, clients):
    props = properties(PacketTypes.CONNECT, AuthenticationMethod="SCRAM-SHA-1")
    client = connect_v5(clients, broker, "v5-auth", connect_properties=props,
                        expect_success=False)
    assert client.connack_reason.value == 0x8C


def test_session_with_expiry_survives_disconnect(broker, clients):
    first = connect_v5(clients, broker, "v5-keep", expiry=300)
    assert first.subscribe("v5/keep", qos=1) == 1
    _disconnect_and_wait(broker, first)

    publisher = connect_v5(clients, broker, "v5-keep-pub")
    publisher.publish("v5/keep", b"while away", qos=1)

    back = connect_v5(clients, broker, "v5-keep", clean_start=False, expiry=300)
    assert back.session_present is True
    message = back.expect_message()
    assert (message.topic, message.payload, message.qos) == ("v5/keep", b"while away", 1)


def test_session_expiry_zero_ends_the_session_at_disconnect(broker, clients):
    first = connect_v5(clients, broker, "v5-gone", expiry=0)
    assert first.subscribe("v5/gone", qos=1) == 1
    _disconnect_and_wait(broker, first)

    back = connect_v5(clients, broker, "v5-gone", clean_start=False, expiry=300)
    assert back.session_present is False


def test_clean_start_discards_a_kept_session(broker, clients):
    first = connect_v5(clients, broker, "v5-fresh", expiry=300)
    assert first.subscribe("v5/fresh", qos=1) == 1
    _disconnect_and_wait(broker, first)

    again = connect_v5(clients, broker, "v5-fresh", clean_start=True, expiry=300)
    assert again.session_present is False
    publisher = connect_v5(clients, broker, "v5-fresh-pub")
    publisher.publish("v5/fresh", b"nobody subscribed", qos=1)
    again.expect_no_message()


def test_session_ends_when_its_expiry_interval_passes(broker, clients):
    first = connect_v5(clients, broker, "v5-short", expiry=1)
    assert first.subscribe("v5/short", qos=1) == 1
    _disconnect_and_wait(broker, first)
    broker.wait_for_log("offline session expired client_id=v5-short", timeout=5)

    back = connect_v5(clients, broker, "v5-short", clean_start=False, expiry=1)
    assert back.session_present is False


def test_session_expiry_is_capped_by_persistent_client_expiration(broker_factory, clients):
    broker = broker_factory(config="[session]\npersistent_client_expiration = 60\n")
    client = connect_v5(clients, broker, "v5-cap", expiry=3600)
    assert client.connack_properties["SessionExpiryInterval"] == 60


def test_disconnect_can_end_a_kept_session(broker, clients):
    first = connect_v5(clients, broker, "v5-end", expiry=300)
    assert first.subscribe("v5/end", qos=1) == 1
    _disconnect_and_wait(broker, first,
                         props=properties(PacketTypes.DISCONNECT, SessionExpiryInterval=0))

    back = connect_v5(clients, broker, "v5-end", clean_start=False, expiry=300)
    assert back.session_present is False


def test_disconnect_with_will_message_publishes_the_will(broker, clients):
    watcher = connect_v5(clients, broker, "v5-will-watch")
    assert watcher.subscribe("v5/will", qos=1) == 1
    leaving = connect_v5(clients, broker, "v5-will-leave",
                         will=Will("v5/will", b"as asked", qos=1))
    _disconnect_and_wait(broker, leaving, reason_code=0x04)
    message = watcher.expect_message()
    assert (message.topic, message.payload, message.qos) == ("v5/will", b"as asked", 1)

    quiet = connect_v5(clients, broker, "v5-will-quiet",
                       will=Will("v5/will", b"must not appear", qos=1))
    _disconnect_and_wait(broker, quiet)
    watcher.expect_no_message()


def test_v5_and_v311_clients_exchange_messages_both_ways(broker, clients):
    new = connect_v5(clients, broker, "mix-v5")
    old = clients.connect(broker.port, "mix-v311", protocol=MQTT_3_1_1)
    assert new.subscribe("mix/to-v5", qos=2) == 2
    assert old.subscribe("mix/to-v311", qos=2) == 2

    for qos in (0, 1, 2):
        new.publish("mix/to-v311", f"from v5 at {qos}".encode(), qos=qos)
        message = old.expect_message()
        assert (message.topic, message.payload, message.qos) == \
            ("mix/to-v311", f"from v5 at {qos}".encode(), qos)

        old.publish("mix/to-v5", f"from v311 at {qos}".encode(), qos=qos)
        message = new.expect_message()
        assert (message.topic, message.payload, message.qos, message.retain) == \
            ("mix/to-v5", f"from v311 at {qos}".encode(), qos, False)


def test_retained_message_reaches_a_v5_subscriber_with_retain_set(broker, clients):
    old = clients.connect(broker.port, "ret-v311", protocol=MQTT_3_1_1)
    old.publish("mix/retained", b"kept", qos=1, retain=True)
    new = connect_v5(clients, broker, "ret-v5")
    assert new.subscribe("mix/retained", qos=1) == 1
    message = new.expect_message()
    assert (message.payload, message.qos, message.retain) == (b"kept", 1, True)


def test_unsuback_reports_a_missing_subscription(broker, clients):
    client = connect_v5(clients, broker, "v5-unsub")
    assert client.subscribe("v5/unsub", qos=0) == 0
    assert client.unsubscribe(["v5/unsub", "v5/never"]) == [0x00, 0x11]


def test_subscriptions_past_max_subscriptions_get_quota_exceeded(broker_factory, clients):
    broker = broker_factory(config="[limits]\nmax_subscriptions = 1\n")
    client = connect_v5(clients, broker, "v5-quota")
    assert client.subscribe_many([("q/a", 1), ("q/b", 1)]) == [1, 0x97]


def test_silent_v5_client_is_closed_after_its_keep_alive(broker, clients):
    silent = connect_v5(clients, broker, "v5-silent", keepalive=1)
    silent.stall()
    line = broker.wait_for_log("client disconnected client_id=v5-silent ", timeout=10)
    assert "reason=keep-alive timeout" in line, line
    assert time.monotonic() - silent.connected_at >= 1.4


def test_takeover_tells_the_old_client_session_taken_over(broker, clients):
    old = connect_v5(clients, broker, "v5-takeover", expiry=60)
    assert old.subscribe("v5/takeover", qos=1) == 1
    new = connect_v5(clients, broker, "v5-takeover", clean_start=False, expiry=60)
    assert old.wait_disconnected() == 0x8E
    assert new.session_present is True


def test_shutdown_tells_clients_server_shutting_down(broker, clients):
    client = connect_v5(clients, broker, "v5-shutdown")
    broker.stop()
    assert client.wait_disconnected() == 0x8B


def test_v5_session_is_resumed_whichever_core_accepts_the_client(broker, clients):
    """A reconnect accepted by another core is handed to the session's core with its MQTT 5
    CONNECT: the CONNACK there still carries the broker's properties."""
    publisher = connect_v5(clients, broker, "v5-mover-pub")
    session = connect_v5(clients, broker, "v5-mover", expiry=300)
    assert session.subscribe("v5/mover", qos=1) == 1
    home = int(broker.wait_for_connect("v5-mover")["core"])
    accepted_on = set()
    user = properties(PacketTypes.PUBLISH, UserProperty=[("hop", "0")])

    for attempt in range(40):
        _disconnect_and_wait(broker, session)
        payload = f"queued {attempt}".encode()
        publisher.publish("v5/mover", payload, qos=1, props=user)

        mark = broker.log_mark()
        session = connect_v5(clients, broker, "v5-mover", clean_start=False, expiry=300)
        fields = broker.wait_for_connect("v5-mover", since=mark)
        accepted_on.add(int(fields["accepted_core"]))
        assert int(fields["core"]) == home, f"reconnect {attempt} served away from the session"
        assert session.session_present is True, f"reconnect {attempt}"
        assert session.connack_properties["ReceiveMaximum"] == DEFAULT_MAX_INFLIGHT
        message = session.expect_message()
        assert (message.payload, message.properties["UserProperty"]) == \
            (payload, [("hop", "0")]), f"reconnect {attempt}"
        if len(accepted_on) == broker.cores:
            break
    assert len(accepted_on) == broker.cores, f"reconnects were only accepted on cores {accepted_on}"
