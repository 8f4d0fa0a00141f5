"""Persistent sessions (clean_session = 0): subscriptions and offline queues survive a
disconnect, across cores too; a clean session discards them; a second connection with the
same client id takes the session over."""

from test_metrics_broker import METRICS_CONFIG, scrape_until, total


def _disconnect_and_wait(broker, client) -> None:
    """Disconnects cleanly and waits until the broker has logged the disconnect."""
    mark = broker.log_mark()
    client.disconnect()
    broker.wait_for_disconnect(client.client_id, since=mark)


def test_persistent_session_queues_qos1_and_qos2_while_offline(broker, clients):
    first = clients.connect(broker.port, "persist", clean_session=False)
    assert first.session_present is False
    assert first.subscribe("persist/t", qos=2) == 2
    _disconnect_and_wait(broker, first)

    publisher = clients.connect(broker.port, "persist-pub")
    publisher.publish("persist/t", b"m1", qos=1)
    publisher.publish("persist/t", b"z0", qos=0)
    publisher.publish("persist/t", b"m2", qos=2)
    publisher.publish("persist/t", b"m3", qos=1)
    # z0 reached the offline session (and was not queued) before it returns.
    publisher.sync_cores()

    back = clients.connect(broker.port, "persist", clean_session=False)
    assert back.session_present is True
    queued = back.expect_messages(3)
    assert sorted((m.payload, m.qos) for m in queued) == [(b"m1", 1), (b"m2", 2), (b"m3", 1)]
    payloads = [m.payload for m in queued]
    assert payloads.index(b"m1") < payloads.index(b"m3"), "same-QoS order must be kept"
    assert all(m.topic == "persist/t" and not m.retain and not m.dup for m in queued), queued
    # QoS 0 messages are not queued for offline sessions.
    back.expect_no_message()

    # The subscription itself survived: live messages flow without subscribing again.
    publisher.publish("persist/t", b"live", qos=1)
    message = back.expect_message()
    assert (message.payload, message.qos, message.retain) == (b"live", 1, False)


def test_clean_session_discards_stored_session(broker, clients):
    first = clients.connect(broker.port, "discard", clean_session=False)
    assert first.subscribe("discard/t", qos=1) == 1
    _disconnect_and_wait(broker, first)

    clean = clients.connect(broker.port, "discard", clean_session=True)
    assert clean.session_present is False
    _disconnect_and_wait(broker, clean)

    again = clients.connect(broker.port, "discard", clean_session=False)
    assert again.session_present is False
    publisher = clients.connect(broker.port, "discard-pub")
    publisher.publish("discard/t", b"nobody subscribed", qos=1)
    again.expect_no_message()


def test_offline_queue_keeps_oldest_up_to_max_queued_messages(broker_factory, clients):
    broker = broker_factory(config=METRICS_CONFIG + "[limits]\nmax_queued_messages = 2\n")
    first = clients.connect(broker.port, "limited", clean_session=False)
    assert first.subscribe("limited/t", qos=1) == 1
    _disconnect_and_wait(broker, first)

    publisher = clients.connect(broker.port, "limited-pub")
    for n in range(5):
        publisher.publish("limited/t", f"m{n}".encode(), qos=1)
    # A PUBACK says the message was routed; it may still be crossing to the session's core.
    # Once the three drops are counted, all five have reached the offline session.
    scrape_until(
        broker.port_of("http"),
        lambda families: total(families, "hydrant_publish_messages_dropped",
                               reason="max_queued_messages") == 3,
        "3 messages dropped by max_queued_messages")

    back = clients.connect(broker.port, "limited", clean_session=False)
    assert back.session_present is True
    assert [m.payload for m in back.expect_messages(2)] == [b"m0", b"m1"]
    back.expect_no_message()


def test_persistent_session_is_resumed_whichever_core_accepts_the_client(broker, clients):
    """A session stays on its core; a reconnect accepted by another core is handed there."""
    publisher = clients.connect(broker.port, "mover-pub")
    session = clients.connect(broker.port, "mover", clean_session=False)
    assert session.subscribe("mover/t", qos=1) == 1
    home = int(broker.wait_for_connect("mover")["core"])
    accepted_on = set()

    for attempt in range(40):
        _disconnect_and_wait(broker, session)
        payload = f"queued while offline {attempt}".encode()
        publisher.publish("mover/t", payload, qos=1)

        mark = broker.log_mark()
        session = clients.connect(broker.port, "mover", clean_session=False)
        fields = broker.wait_for_connect("mover", since=mark)
        accepted_on.add(int(fields["accepted_core"]))
        assert int(fields["core"]) == home, f"reconnect {attempt} served away from the session"
        assert session.session_present is True, f"reconnect {attempt}"
        message = session.expect_message()
        assert (message.payload, message.qos) == (payload, 1), f"reconnect {attempt}"
        if len(accepted_on) == broker.cores:
            break
    assert len(accepted_on) == broker.cores, f"reconnects were only accepted on cores {accepted_on}"


def test_second_connection_takes_session_over(broker, clients):
    old = clients.connect(broker.port, "twin")
    new = clients.connect(broker.port, "twin")

    assert old.disconnected.wait(timeout=10), "the old connection was not closed"
    line = broker.wait_for_log("client disconnected client_id=twin ")
    assert "reason=session taken over" in line, line

    assert new.is_connected()
    assert new.subscribe("twin/t", qos=1) == 1
    publisher = clients.connect(broker.port, "twin-pub")
    publisher.publish("twin/t", b"to the new connection", qos=1)
    assert new.expect_message().payload == b"to the new connection"


def test_a_clean_connection_takes_over_from_any_core(broker, clients):
    """A clean-session CONNECT connects without waiting for its claim on the client id (see
    session::takeover): whichever cores the old and the new connection land on, the old one is
    closed as taken over, its subscriptions are gone, and the new one works."""
    publisher = clients.connect(broker.port, "clean-twin-pub")
    seen = set()
    for attempt in range(40):
        client_id = f"clean-twin-{attempt}"
        mark = broker.log_mark()
        old = clients.connect(broker.port, client_id)
        old_core = broker.wait_for_connect(client_id, since=mark)["core"]
        assert old.subscribe(f"ct/{attempt}/old", qos=1) == 1

        mark = broker.log_mark()
        new = clients.connect(broker.port, client_id)
        new_core = broker.wait_for_connect(client_id, since=mark)["core"]
        assert old.disconnected.wait(timeout=10), "the old connection was not closed"
        line = broker.wait_for_log(f"client disconnected client_id={client_id} ", since=mark)
        assert "reason=session taken over" in line, line

        publisher.publish(f"ct/{attempt}/old", b"to the old subscription", qos=1)
        assert new.subscribe(f"ct/{attempt}/new", qos=1) == 1
        publisher.publish(f"ct/{attempt}/new", b"to the new connection", qos=1)
        assert new.expect_message().payload == b"to the new connection", \
            "the old clean session's subscription must not reach the new connection"
        new.expect_no_message()
        seen.add(old_core == new_core)
        new.disconnect()
        if seen == {True, False}:
            break
    assert seen == {True, False}, f"only saw same-core={seen} takeovers in 40 attempts"
