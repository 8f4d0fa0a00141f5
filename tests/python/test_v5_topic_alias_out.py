"""Topic aliases from hydrant to MQTT 5 subscribers, read by paho-mqtt: a subscriber that
announces a Topic Alias Maximum receives each topic once with its name and an alias, then the
alias alone, never an alias above its maximum; one that announces none gets plain topics.

paho-mqtt 2.1 parses the alias property and the empty topic name but does not resolve aliases
for the application, so the test resolves them as a client must, from what paho decoded."""

from paho.mqtt.packettypes import PacketTypes

from paho_client import MQTT_3_1_1, MQTT_5, properties


def connect_v5(clients, broker, client_id, **connect_properties):
    props = properties(PacketTypes.CONNECT, **connect_properties) if connect_properties else None
    return clients.connect(broker.port, client_id, protocol=MQTT_5, connect_properties=props)


def resolve(messages, maximum):
    """The topic of each message, resolving topic aliases as the receiving client must."""
    aliases = {}
    topics = []
    for message in messages:
        alias = message.properties.get("TopicAlias")
        if alias is None:
            assert message.topic, message
            topics.append(message.topic)
            continue
        assert 1 <= alias <= maximum, f"alias {alias} above the maximum {maximum}"
        if message.topic:
            aliases[alias] = message.topic
        else:
            assert alias in aliases, f"alias {alias} used before it was defined"
        topics.append(aliases[alias])
    return topics


def test_subscriber_receives_the_right_topics_through_aliases(broker, clients):
    subscriber = connect_v5(clients, broker, "alias-out-sub", TopicAliasMaximum=3)
    assert subscriber.subscribe("gerrit/#", qos=1) == 1
    publisher = clients.connect(broker.port, "alias-out-pub", protocol=MQTT_3_1_1)
    # Five topics, more than the three aliases, each coming back several times.
    topics = [f"gerrit/openstack/project-{n}/comment-added" for n in range(5)]
    sent = [topics[i % 5] if i % 3 else topics[0] for i in range(30)]
    for n, topic in enumerate(sent):
        publisher.publish(topic, f"m{n}".encode(), qos=1)
    got = subscriber.expect_messages(len(sent))
    assert [m.payload for m in got] == [f"m{n}".encode() for n in range(len(sent))]
    assert resolve(got, 3) == sent
    aliased_only = [m for m in got if not m.topic]
    assert aliased_only, "later PUBLISHes carry the alias alone"
    assert all(m.properties.get("TopicAlias") for m in got)


def test_no_aliases_without_a_topic_alias_maximum(broker, clients):
    subscriber = connect_v5(clients, broker, "alias-none-sub")
    assert subscriber.subscribe("plain/topic", qos=0) == 0
    publisher = connect_v5(clients, broker, "alias-none-pub")
    for n in range(3):
        publisher.publish("plain/topic", f"p{n}".encode(), qos=1)
    got = subscriber.expect_messages(3)
    assert [(m.topic, m.payload) for m in got] == [("plain/topic", f"p{n}".encode())
                                                   for n in range(3)]
    assert all("TopicAlias" not in m.properties for m in got)
