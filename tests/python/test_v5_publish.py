"""MQTT 5 PUBLISH with paho-mqtt: the properties of a message reach MQTT 5 subscribers
unchanged (on the same core and across cores) and are left out for MQTT 3.1.1 ones, topic
aliases from the client, the PUBACK reason when nobody subscribes, the client's maximum packet
size and receive maximum, and message expiry (the remaining interval is sent; a message that
expired while queued is not delivered)."""

import time

from paho.mqtt.packettypes import PacketTypes

from paho_client import MQTT_3_1_1, MQTT_5, Will, properties


def connect_v5(clients, broker, client_id, clean_start=True, **connect_properties):
    props = properties(PacketTypes.CONNECT, **connect_properties) if connect_properties else None
    return clients.connect(broker.port, client_id, protocol=MQTT_5, clean_session=clean_start,
                           connect_properties=props)


def full_properties(**overrides):
    """Every property a publisher may give a message."""
    values = dict(
        PayloadFormatIndicator=1,
        ContentType="text/plain",
        ResponseTopic="reply/here",
        CorrelationData=b"\x01\x02\x03",
        UserProperty=[("a", "1"), ("b", "2"), ("a", "3")],
        MessageExpiryInterval=60,
    )
    values.update(overrides)
    return properties(PacketTypes.PUBLISH, **values)


def assert_full_properties(received, expiry_at_most=60):
    props = received.properties
    assert props["PayloadFormatIndicator"] == 1, props
    assert props["ContentType"] == "text/plain", props
    assert props["ResponseTopic"] == "reply/here", props
    assert props["CorrelationData"] == "010203", props
    # Order and repeats of user properties are kept [MQTT-3.3.2-18].
    assert props["UserProperty"] == [("a", "1"), ("b", "2"), ("a", "3")], props
    assert expiry_at_most - 2 <= props["MessageExpiryInterval"] <= expiry_at_most, props


def test_properties_reach_v5_subscribers_unchanged(broker, clients):
    subscriber = connect_v5(clients, broker, "props-sub")
    assert subscriber.subscribe("props/t", qos=1) == 1
    publisher = connect_v5(clients, broker, "props-pub")
    for qos in (0, 1, 2):
        publisher.publish("props/t", f"at {qos}".encode(), qos=qos, props=full_properties())
        message = subscriber.expect_message()
        assert (message.payload, message.qos) == (f"at {qos}".encode(), min(qos, 1))
        assert_full_properties(message)


def test_properties_cross_cores(broker, clients):
    placed = clients.connect_on_each_core(broker, "props-core", protocol=MQTT_5)
    (core_a, subscriber), (core_b, publisher) = sorted(placed.items())
    assert core_a != core_b
    assert subscriber.subscribe("props/cores", qos=2) == 2
    publisher.publish("props/cores", b"across", qos=2, props=full_properties())
    message = subscriber.expect_message()
    assert message.payload == b"across"
    assert_full_properties(message)


def test_v311_subscriber_gets_the_message_without_properties(broker, clients):
    old = clients.connect(broker.port, "props-v311", protocol=MQTT_3_1_1)
    assert old.subscribe("props/old", qos=1) == 1
    new = connect_v5(clients, broker, "props-v5-pub")
    new.publish("props/old", b"payload only", qos=1, props=full_properties())
    message = old.expect_message()
    # Property bytes in front of the payload would show here: paho 3.1.1 has no properties.
    assert (message.topic, message.payload, message.qos) == ("props/old", b"payload only", 1)


def test_v311_publish_reaches_a_v5_subscriber_without_properties(broker, clients):
    new = connect_v5(clients, broker, "plain-v5-sub")
    assert new.subscribe("plain/t", qos=1) == 1
    old = clients.connect(broker.port, "plain-v311-pub", protocol=MQTT_3_1_1)
    old.publish("plain/t", b"plain", qos=1)
    message = new.expect_message()
    assert (message.payload, message.properties) == (b"plain", {})


def test_puback_says_no_matching_subscribers(broker, clients):
    # (paho reports the PUBCOMP's reason for QoS 2: the PUBREC is checked in tests/v5_publish.rs)
    publisher = connect_v5(clients, broker, "nomatch-pub")
    assert publisher.publish("nomatch/t", b"x", qos=1) == 0x10
    subscriber = connect_v5(clients, broker, "nomatch-sub")
    assert subscriber.subscribe("nomatch/#", qos=0) == 0
    assert publisher.publish("nomatch/t", b"x", qos=1) == 0


def test_topic_alias_from_the_client_stands_for_its_topic(broker, clients):
    publisher = connect_v5(clients, broker, "alias-pub")
    assert publisher.connack_properties["TopicAliasMaximum"] == 10
    new = connect_v5(clients, broker, "alias-v5-sub")
    old = clients.connect(broker.port, "alias-v311-sub", protocol=MQTT_3_1_1)
    assert new.subscribe("alias/long/topic/name", qos=1) == 1
    assert old.subscribe("alias/long/topic/name", qos=1) == 1

    publisher.publish("alias/long/topic/name", b"defines", qos=1,
                      props=properties(PacketTypes.PUBLISH, TopicAlias=3))
    publisher.publish("", b"uses", qos=1, props=properties(PacketTypes.PUBLISH, TopicAlias=3))
    for subscriber in (new, old):
        got = subscriber.expect_messages(2)
        assert [(m.topic, m.payload) for m in got] == \
            [("alias/long/topic/name", b"defines"), ("alias/long/topic/name", b"uses")]
    # The alias is the publisher's own: subscribers are sent the topic name.
    assert all("TopicAlias" not in m.properties for m in got)


def test_oversized_messages_are_not_sent_to_a_client_with_a_maximum_packet_size(broker, clients):
    small = connect_v5(clients, broker, "maxpkt-sub", MaximumPacketSize=100)
    assert small.subscribe("maxpkt/t", qos=1) == 1
    publisher = connect_v5(clients, broker, "maxpkt-pub")
    publisher.publish("maxpkt/t", b"fits", qos=0)
    publisher.publish("maxpkt/t", b"x" * 200, qos=0)
    publisher.publish("maxpkt/t", b"y" * 200, qos=1)
    publisher.publish("maxpkt/t", b"fits too", qos=1)
    got = small.expect_messages(2)
    assert [m.payload for m in got] == [b"fits", b"fits too"]
    small.expect_no_message()
    mark = broker.log_mark()
    small.disconnect()
    broker.wait_for_log("client dropped messages client_id=maxpkt-sub dropped=2", since=mark)


def test_outgoing_window_follows_the_clients_receive_maximum(broker, clients):
    subscriber = connect_v5(clients, broker, "recvmax-sub", ReceiveMaximum=1)
    assert subscriber.subscribe("recvmax/t", qos=1) == 1
    publisher = connect_v5(clients, broker, "recvmax-pub")
    publisher.publish_many("recvmax/t", [f"m{n}".encode() for n in range(5)], qos=1)
    # paho acknowledges each as it arrives: all five come, in order, one window at a time.
    got = subscriber.expect_messages(5)
    assert [m.payload for m in got] == [f"m{n}".encode() for n in range(5)]


def test_message_that_expired_while_queued_is_not_delivered(broker, clients):
    first = connect_v5(clients, broker, "expiry-sub", SessionExpiryInterval=300)
    assert first.subscribe("expiry/t", qos=1) == 1
    mark = broker.log_mark()
    first.disconnect()
    broker.wait_for_disconnect("expiry-sub", since=mark)

    publisher = connect_v5(clients, broker, "expiry-pub")
    publisher.publish("expiry/t", b"short", qos=1,
                      props=properties(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    publisher.publish("expiry/t", b"long", qos=1,
                      props=properties(PacketTypes.PUBLISH, MessageExpiryInterval=60))
    time.sleep(2.5)

    back = connect_v5(clients, broker, "expiry-sub", clean_start=False,
                      SessionExpiryInterval=300)
    assert back.session_present is True
    message = back.expect_message()
    assert message.payload == b"long"
    # The remaining interval is sent: 60 less the time it waited.
    assert 55 <= message.properties["MessageExpiryInterval"] <= 58, message.properties
    back.expect_no_message()


def test_retained_message_keeps_its_properties_and_expires(broker, clients):
    publisher = connect_v5(clients, broker, "ret-props-pub")
    publisher.publish("retprops/kept", b"kept", qos=1, retain=True,
                      props=full_properties(MessageExpiryInterval=600))
    publisher.publish("retprops/brief", b"brief", qos=1, retain=True,
                      props=properties(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    time.sleep(1.5)
    subscriber = connect_v5(clients, broker, "ret-props-sub")
    assert subscriber.subscribe("retprops/#", qos=1) == 1
    message = subscriber.expect_message()
    assert (message.payload, message.retain) == (b"kept", True)
    assert_full_properties(message, expiry_at_most=600)
    subscriber.expect_no_message()


def test_will_is_published_with_its_properties(broker, clients):
    watcher = connect_v5(clients, broker, "willprops-watch")
    assert watcher.subscribe("willprops/t", qos=1) == 1
    will_props = properties(PacketTypes.WILLMESSAGE, ContentType="application/json",
                            UserProperty=[("why", "gone")])
    dying = clients.connect(broker.port, "willprops-dying", protocol=MQTT_5,
                            will=Will("willprops/t", b"{}", qos=1),
                            will_properties=will_props)
    dying.drop()
    message = watcher.expect_message()
    assert message.payload == b"{}"
    assert message.properties["ContentType"] == "application/json", message.properties
    assert message.properties["UserProperty"] == [("why", "gone")], message.properties
