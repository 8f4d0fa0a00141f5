"""MQTT 5 SUBSCRIBE options with paho-mqtt: no local, retain as published, retain handling
0/1/2, subscription identifiers on delivery (also for MQTT 3.1.1 publishers, retained and
queued messages, and across cores). Shared subscriptions: test_v5_shared.py."""

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions

from paho_client import MQTT_3_1_1, MQTT_5, properties


def connect_v5(clients, broker, client_id, clean_start=True, **connect_properties):
    props = properties(PacketTypes.CONNECT, **connect_properties) if connect_properties else None
    return clients.connect(broker.port, client_id, protocol=MQTT_5, clean_session=clean_start,
                           connect_properties=props)


def options(qos=1, **flags):
    return SubscribeOptions(qos=qos, **flags)


def ids_of(message):
    return sorted(message.properties.get("SubscriptionIdentifier", []))


def test_connack_announces_subscription_identifiers(broker, clients):
    client = connect_v5(clients, broker, "subid-caps")
    assert client.connack_properties["SubscriptionIdentifierAvailable"] == 1


def test_no_local_keeps_a_clients_own_messages_from_it(broker, clients):
    local = connect_v5(clients, broker, "nolocal")
    assert local.subscribe_v5([("nl/t", options(noLocal=True))]) == [1]
    local.publish("nl/t", b"mine", qos=1)
    local.expect_no_message()
    other = connect_v5(clients, broker, "nolocal-other")
    other.publish("nl/t", b"theirs", qos=1)
    assert local.expect_message().payload == b"theirs"

    echo = connect_v5(clients, broker, "nolocal-off")
    assert echo.subscribe_v5([("nl/echo", options(noLocal=False))]) == [1]
    echo.publish("nl/echo", b"mine", qos=1)
    assert echo.expect_message().payload == b"mine"


def test_no_local_on_one_of_two_overlapping_subscriptions(broker, clients):
    client = connect_v5(clients, broker, "nolocal-overlap")
    assert client.subscribe_v5([("nlo/#", options(qos=0, noLocal=True))]) == [0]
    assert client.subscribe_v5([("nlo/t", options(qos=1))]) == [1]
    client.publish("nlo/t", b"mine", qos=1)
    message = client.expect_message()
    assert (message.payload, message.qos) == (b"mine", 1)
    client.expect_no_message()


def test_retain_as_published_keeps_the_flag_on_live_messages(broker, clients):
    keeps = connect_v5(clients, broker, "rap-keeps")
    clears = connect_v5(clients, broker, "rap-clears")
    old = clients.connect(broker.port, "rap-v311", protocol=MQTT_3_1_1)
    assert keeps.subscribe_v5([("rap/t", options(retainAsPublished=True))]) == [1]
    assert clears.subscribe_v5([("rap/t", options(retainAsPublished=False))]) == [1]
    assert old.subscribe("rap/t", qos=1) == 1
    publisher = connect_v5(clients, broker, "rap-pub")
    publisher.publish("rap/t", b"retained", qos=1, retain=True)
    publisher.publish("rap/t", b"plain", qos=1, retain=False)
    assert [(m.payload, m.retain) for m in keeps.expect_messages(2)] == \
        [(b"retained", True), (b"plain", False)]
    assert [(m.payload, m.retain) for m in clears.expect_messages(2)] == \
        [(b"retained", False), (b"plain", False)]
    assert [(m.payload, m.retain) for m in old.expect_messages(2)] == \
        [(b"retained", False), (b"plain", False)]


def test_retain_as_published_across_cores(broker, clients):
    placed = clients.connect_on_each_core(broker, "rap-core", protocol=MQTT_5)
    (_, subscriber), (_, publisher) = sorted(placed.items())
    assert subscriber.subscribe_v5([("rapc/t", options(retainAsPublished=True))]) == [1]
    publisher.publish("rapc/t", b"retained", qos=1, retain=True)
    message = subscriber.expect_message()
    assert (message.payload, message.retain) == (b"retained", True)


def test_retain_handling_0_1_2(broker, clients):
    publisher = connect_v5(clients, broker, "rh-pub")
    publisher.publish("rh/t", b"kept", qos=1, retain=True)

    always = connect_v5(clients, broker, "rh-0")
    assert always.subscribe_v5([("rh/t", options(retainHandling=0))]) == [1]
    assert (always.expect_message().payload, True) == (b"kept", True)
    assert always.subscribe_v5([("rh/t", options(retainHandling=0))]) == [1]
    message = always.expect_message()
    assert (message.payload, message.retain) == (b"kept", True)

    new_only = connect_v5(clients, broker, "rh-1")
    assert new_only.subscribe_v5([("rh/t", options(retainHandling=1))]) == [1]
    assert new_only.expect_message().payload == b"kept"
    assert new_only.subscribe_v5([("rh/t", options(retainHandling=1))]) == [1]
    new_only.expect_no_message()

    never = connect_v5(clients, broker, "rh-2")
    assert never.subscribe_v5([("rh/t", options(retainHandling=2))]) == [1]
    never.expect_no_message()
    # Live messages still flow through it.
    publisher.publish("rh/t", b"live", qos=1)
    assert never.expect_message().payload == b"live"


def test_subscription_identifiers_come_with_each_delivery(broker, clients):
    client = connect_v5(clients, broker, "subid")
    assert client.subscribe_v5([("sid/+", options())], subscription_id=7) == [1]
    assert client.subscribe_v5([("sid/a", options(qos=0))], subscription_id=9) == [0]
    assert client.subscribe_v5([("sid/#", options(qos=0))]) == [0]
    publisher = clients.connect(broker.port, "subid-v311-pub", protocol=MQTT_3_1_1)

    publisher.publish("sid/a", b"both", qos=1)
    message = client.expect_message()
    assert (message.payload, message.qos, ids_of(message)) == (b"both", 1, [7, 9])
    publisher.publish("sid/b", b"one", qos=1)
    message = client.expect_message()
    assert (message.payload, ids_of(message)) == (b"one", [7])
    publisher.publish("sid/b/c", b"none", qos=1)
    message = client.expect_message()
    assert (message.payload, ids_of(message)) == (b"none", [])
    client.expect_no_message()


def test_subscription_identifier_on_retained_and_cross_core_messages(broker, clients):
    publisher = connect_v5(clients, broker, "subid-ret-pub")
    publisher.publish("sidr/t", b"retained", qos=1, retain=True)
    placed = clients.connect_on_each_core(broker, "subid-core", protocol=MQTT_5)
    (_, subscriber), (_, remote) = sorted(placed.items())
    assert subscriber.subscribe_v5([("sidr/t", options())], subscription_id=42) == [1]
    message = subscriber.expect_message()
    assert (message.payload, message.retain, ids_of(message)) == (b"retained", True, [42])

    remote.publish("sidr/t", b"from the other core", qos=1)
    message = subscriber.expect_message()
    assert (message.payload, ids_of(message)) == (b"from the other core", [42])


def test_subscription_identifier_on_messages_queued_while_offline(broker, clients):
    first = connect_v5(clients, broker, "subid-away", SessionExpiryInterval=300)
    assert first.subscribe_v5([("sidq/t", options())], subscription_id=5) == [1]
    mark = broker.log_mark()
    first.disconnect()
    broker.wait_for_disconnect("subid-away", since=mark)
    publisher = connect_v5(clients, broker, "subid-away-pub")
    publisher.publish("sidq/t", b"queued", qos=1)
    back = connect_v5(clients, broker, "subid-away", clean_start=False,
                      SessionExpiryInterval=300)
    message = back.expect_message()
    assert (message.payload, ids_of(message)) == (b"queued", [5])
