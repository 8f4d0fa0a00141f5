"""Shared subscriptions ($share/<group>/<filter>) with paho-mqtt: each message goes to one
member of the group, round-robin over the members on both cores, skipping members whose
client is offline; members leave by unsubscribing; malformed share filters are refused; no
retained messages are sent to a shared subscription; MQTT 3.1.1 clients may be members. When a
member's session ends, the messages it never received and its unacknowledged QoS 1 ones go to
another member; a QoS 2 message it was sent does not [MQTT-4.8.2-5]."""

import threading

from paho.mqtt.packettypes import PacketTypes

from paho_client import MQTT_3_1_1, MQTT_5, properties
from test_metrics_broker import METRICS_CONFIG, scrape_until, total

GROUP = "$share/workers/jobs/#"


def connect_v5(clients, broker, client_id, clean_start=True, **connect_properties):
    props = properties(PacketTypes.CONNECT, **connect_properties) if connect_properties else None
    return clients.connect(broker.port, client_id, protocol=MQTT_5, clean_session=clean_start,
                           connect_properties=props)


def members_on_each_core(broker, clients, prefix, **options):
    """One member of GROUP per core, in core order."""
    placed = clients.connect_on_each_core(broker, prefix, protocol=MQTT_5, **options)
    members = [client for _, client in sorted(placed.items())]
    for member in members:
        assert member.subscribe(GROUP, qos=1) == 1
    return members


def leave(broker, member, props=None):
    """Disconnects `member` (DISCONNECT with `props`) and waits until the broker saw it go."""
    mark = broker.log_mark()
    member.disconnect(props=props)
    broker.wait_for_disconnect(member.client_id, since=mark)


def publish_to_absent_members(broker, clients, publisher_id, topic):
    """Publishes four QoS 1 messages to GROUP's topic `topic` once every core knows its members
    went away, and returns them once they have all reached the members' cores."""
    publisher = connect_v5(clients, broker, publisher_id)
    publisher.sync_cores()
    sent = [b"1", b"2", b"3", b"4"]
    publisher.publish_many(topic, sent, qos=1)
    publisher.sync_cores()
    return sent


def wait_redelivered(broker, count):
    """Waits until /metrics counts `count` messages handed to another member."""
    scrape_until(broker.port_of("http"),
                 lambda families: total(families, "hydrant_shared_messages_redelivered") == count,
                 f"{count} messages redelivered")


def payloads(client):
    received = []
    while True:
        try:
            received.append(client.expect_message(timeout=0.7).payload)
        except AssertionError:
            return received


def test_messages_are_shared_round_robin_across_cores(broker, clients):
    first, second = members_on_each_core(broker, clients, "share-rr")
    everything = connect_v5(clients, broker, "share-rr-all")
    assert everything.subscribe("jobs/#", qos=1) == 1
    publisher = connect_v5(clients, broker, "share-rr-pub")
    sent = [f"job {n}".encode() for n in range(10)]
    publisher.publish_many("jobs/a", sent, qos=1)

    got_first, got_second = payloads(first), payloads(second)
    assert len(got_first) == len(got_second) == 5, (got_first, got_second)
    assert sorted(got_first + got_second) == sorted(sent)
    # A plain subscription to the same topics still gets every message.
    assert [m.payload for m in everything.expect_messages(10)] == sent


def test_publishers_on_both_cores_share_over_the_same_members(broker, clients):
    first, second = members_on_each_core(broker, clients, "share-pubs")
    publishers = clients.connect_on_each_core(broker, "share-pubs-pub", protocol=MQTT_5)
    sent = []
    for core, publisher in sorted(publishers.items()):
        batch = [f"from core {core} #{n}".encode() for n in range(4)]
        publisher.publish_many("jobs/b", batch, qos=1)
        sent += batch
    got_first, got_second = payloads(first), payloads(second)
    assert len(got_first) == len(got_second) == 4, (got_first, got_second)
    assert sorted(got_first + got_second) == sorted(sent)


def test_a_member_that_unsubscribes_gets_no_more(broker, clients):
    first, second = members_on_each_core(broker, clients, "share-leave")
    assert second.unsubscribe(GROUP) == [0]
    publisher = connect_v5(clients, broker, "share-leave-pub")
    publisher.publish_many("jobs/c", [b"1", b"2", b"3", b"4"], qos=1)
    assert payloads(first) == [b"1", b"2", b"3", b"4"]
    second.expect_no_message()


def test_offline_members_are_skipped_while_another_is_online(broker, clients):
    first, second = members_on_each_core(broker, clients, "share-away",
                                         connect_properties=properties(
                                             PacketTypes.CONNECT, SessionExpiryInterval=300))
    leave(broker, second)
    publisher = connect_v5(clients, broker, "share-away-pub")
    # Every core knows the member went away (its core tells the others).
    publisher.sync_cores()
    publisher.publish_many("jobs/d", [b"1", b"2", b"3"], qos=1)
    assert payloads(first) == [b"1", b"2", b"3"]

    back = connect_v5(clients, broker, second.client_id, clean_start=False,
                      SessionExpiryInterval=300)
    assert back.session_present is True
    back.expect_no_message()
    publisher.publish_many("jobs/d", [b"4", b"5"], qos=1)
    assert sorted(payloads(first) + payloads(back)) == [b"4", b"5"]


def test_when_every_member_is_offline_messages_wait_in_their_sessions(broker, clients):
    members = members_on_each_core(broker, clients, "share-all-away",
                                   connect_properties=properties(
                                       PacketTypes.CONNECT, SessionExpiryInterval=300))
    for member in members:
        leave(broker, member)
    publisher = connect_v5(clients, broker, "share-all-away-pub")
    # Every core knows both members went away (their cores tell the others).
    publisher.sync_cores()
    publisher.publish_many("jobs/e", [b"1", b"2", b"3", b"4"], qos=1)
    returned = [connect_v5(clients, broker, member.client_id, clean_start=False,
                           SessionExpiryInterval=300) for member in members]
    got = [payloads(client) for client in returned]
    assert [len(g) for g in got] == [2, 2], got
    assert sorted(got[0] + got[1]) == [b"1", b"2", b"3", b"4"]


def test_malformed_share_filters_are_refused(broker, clients):
    client = connect_v5(clients, broker, "share-bad")
    assert client.subscribe_many([("$share/g", 1), ("$share/+/t", 1), ("$share//t", 1),
                                  ("$share/g/t", 1)]) == [0x8F, 0x8F, 0x8F, 1]
    old = clients.connect(broker.port, "share-bad-v311", protocol=MQTT_3_1_1)
    assert old.subscribe("$share/g", qos=1) == 0x80


def test_no_retained_messages_for_a_shared_subscription(broker, clients):
    publisher = connect_v5(clients, broker, "share-ret-pub")
    publisher.publish("jobs/kept", b"retained", qos=1, retain=True)
    member = connect_v5(clients, broker, "share-ret-member")
    assert member.subscribe(GROUP, qos=1) == 1
    member.expect_no_message()
    publisher.publish("jobs/kept", b"live", qos=1)
    message = member.expect_message()
    assert (message.payload, message.retain) == (b"live", False)


def test_v311_and_v5_members_share_one_group(broker, clients):
    new = connect_v5(clients, broker, "share-mix-v5")
    old = clients.connect(broker.port, "share-mix-v311", protocol=MQTT_3_1_1)
    assert new.subscribe(GROUP, qos=1) == 1
    assert old.subscribe(GROUP, qos=0) == 0
    publisher = connect_v5(clients, broker, "share-mix-pub")
    props = properties(PacketTypes.PUBLISH, ContentType="text/plain")
    for n in range(4):
        publisher.publish("jobs/f", f"m{n}".encode(), qos=1, props=props)
    got_new, got_old = payloads(new), payloads(old)
    assert len(got_new) == len(got_old) == 2, (got_new, got_old)
    assert sorted(got_new + got_old) == [b"m0", b"m1", b"m2", b"m3"]


def test_a_crashed_members_unacknowledged_messages_go_to_another_member(broker_factory, clients):
    broker = broker_factory(config=METRICS_CONFIG)
    first, second = members_on_each_core(broker, clients, "share-crash")
    publisher = connect_v5(clients, broker, "share-crash-pub")
    # The first member reads nothing more: the messages it is sent stay unacknowledged.
    first.stall()
    sent = [b"1", b"2", b"3", b"4"]
    publisher.publish_many("jobs/f", sent, qos=1)
    own = {m.payload for m in second.expect_messages(2)}
    # A PUBACK says a message was routed: the first member's may still be crossing cores.
    publisher.sync_cores()
    # Its session ends with its connection (clean start, no session expiry interval).
    first.drop()
    rest = {m.payload for m in second.expect_messages(2)}
    assert own | rest == set(sent), (own, rest)
    second.expect_no_message()
    wait_redelivered(broker, 2)


def test_messages_queued_for_a_member_go_to_another_when_its_session_ends(broker, clients):
    away = properties(PacketTypes.CONNECT, SessionExpiryInterval=300)
    members = members_on_each_core(broker, clients, "share-ends", connect_properties=away)
    for member in members:
        leave(broker, member)
    # Every member is offline: each session queues two.
    sent = publish_to_absent_members(broker, clients, "share-ends-pub", "jobs/g")
    gone, stays = members
    back = connect_v5(clients, broker, stays.client_id, clean_start=False,
                      SessionExpiryInterval=300)
    assert back.session_present is True
    own = {m.payload for m in back.expect_messages(2)}
    # A clean start ends the other member's session, and with it its membership.
    fresh = connect_v5(clients, broker, gone.client_id, clean_start=True)
    assert fresh.session_present is False
    rest = {m.payload for m in back.expect_messages(2)}
    assert own | rest == set(sent), (own, rest)
    fresh.expect_no_message()
    back.expect_no_message()


def test_messages_of_an_expired_member_session_go_to_another_member(broker_factory, clients):
    broker = broker_factory(config=METRICS_CONFIG)
    away = properties(PacketTypes.CONNECT, SessionExpiryInterval=300)
    first, second = members_on_each_core(broker, clients, "share-expiry", connect_properties=away)
    # The first member leaves with a 6 s session expiry interval, set on its DISCONNECT: time
    # enough for what follows, which the log below checks.
    leave(broker, first, properties(PacketTypes.DISCONNECT, SessionExpiryInterval=6))
    leave(broker, second)
    sent = publish_to_absent_members(broker, clients, "share-expiry-pub", "jobs/h")
    # Both sessions hold two each, and the first one has not expired yet.
    published = broker.log_mark()
    back = connect_v5(clients, broker, second.client_id, clean_start=False,
                      SessionExpiryInterval=300)
    assert back.session_present is True
    broker.wait_for_log(f"offline session expired client_id={first.client_id}", timeout=15,
                        since=published)
    got = {m.payload for m in back.expect_messages(4)}
    assert got == set(sent), got
    back.expect_no_message()
    wait_redelivered(broker, 2)


def test_a_qos2_message_sent_to_a_member_that_goes_away_goes_to_no_other(broker, clients):
    first, second = members_on_each_core(broker, clients, "share-q2")
    for member in (first, second):
        assert member.subscribe(GROUP, qos=2) == 2
    publisher = connect_v5(clients, broker, "share-q2-pub")
    first.stall()
    # In turn: two QoS 2 messages, then two QoS 1 ones; each member is sent one of each.
    publisher.publish_many("jobs/i", [b"exactly once a", b"exactly once b"], qos=2)
    publisher.publish_many("jobs/i", [b"at least once a", b"at least once b"], qos=1)
    own = [m.payload for m in second.expect_messages(2)]
    publisher.sync_cores()
    first.drop()
    # Only the QoS 1 message the first member was sent comes to the second; the QoS 2 one,
    # which the first may have received, goes to no other client [MQTT-4.8.2-5]. Both would
    # be handed over in the same housekeeping pass.
    redelivered = second.expect_message()
    assert redelivered.payload.startswith(b"at least once"), (own, redelivered.payload)
    assert redelivered.payload not in own
    second.expect_no_message(timeout=1.0)


def test_a_message_handed_on_goes_at_the_qos_it_was_published_with(broker, clients):
    first, second = members_on_each_core(broker, clients, "share-qos")
    assert second.subscribe(GROUP, qos=2) == 2
    publisher = connect_v5(clients, broker, "share-qos-pub")
    first.stall()
    publisher.publish_many("jobs/l", [b"a", b"b"], qos=2)
    own = second.expect_message()
    assert own.qos == 2
    publisher.sync_cores()
    # The first member was sent the other at QoS 1, its grant, and never acknowledged it.
    first.drop()
    handed_on = second.expect_message()
    assert {own.payload, handed_on.payload} == {b"a", b"b"}
    assert handed_on.qos == 2


def test_a_member_that_goes_away_in_mid_stream_costs_no_message(broker, clients):
    """Whatever was picked for a member that goes away in mid-stream reaches the other one:
    what its session held when it ended is handed on, and so is what reached its core after
    it left (a race this test rarely catches; without the first, it loses messages)."""
    first, second = members_on_each_core(broker, clients, "share-midstream")
    # The publisher shares the second member's core: the first member's messages cross cores.
    publishers = clients.connect_on_each_core(broker, "share-midstream-pub", protocol=MQTT_5)
    publisher = publishers[max(publishers)]
    sent = [f"m{n}".encode() for n in range(2000)]
    errors = []

    def publish():
        try:
            publisher.publish_many("jobs/k", sent)
        except AssertionError as error:
            errors.append(error)

    publishing = threading.Thread(target=publish)
    publishing.start()
    got_first = [m.payload for m in first.expect_messages(50)]
    first.drop()
    publishing.join()
    assert not errors, errors
    got_first += payloads(first)
    # Until every message has come to one member or the other (QoS 1: some may come twice).
    missing = set(sent) - set(got_first)
    while missing:
        try:
            missing.discard(second.expect_message().payload)
        except AssertionError:
            break
    assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
