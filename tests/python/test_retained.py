"""Retained messages: stored on a retained PUBLISH, replaced, cleared by an empty payload."""


def test_retained_set_replace_clear(broker, clients):
    publisher = clients.connect(broker.port, "ret-pub")
    live = clients.connect(broker.port, "ret-live")
    assert live.subscribe("ret/topic", qos=1) == 1

    # Set: a live subscriber sees the message with retain = 0, a new one with retain = 1.
    publisher.publish("ret/topic", b"first", qos=1, retain=True)
    message = live.expect_message()
    assert (message.payload, message.retain) == (b"first", False)

    first_reader = clients.connect(broker.port, "ret-reader-1")
    assert first_reader.subscribe("ret/topic", qos=1) == 1
    message = first_reader.expect_message()
    assert (message.topic, message.payload, message.qos, message.retain) == \
        ("ret/topic", b"first", 1, True)
    first_reader.expect_no_message()

    # Replace: only the newest retained message is stored.
    publisher.publish("ret/topic", b"second", qos=1, retain=True)
    for subscriber in (live, first_reader):
        message = subscriber.expect_message()
        assert (message.payload, message.retain) == (b"second", False)

    second_reader = clients.connect(broker.port, "ret-reader-2")
    assert second_reader.subscribe("ret/topic", qos=1) == 1
    message = second_reader.expect_message()
    assert (message.payload, message.retain) == (b"second", True)
    second_reader.expect_no_message()

    # Clear: an empty retained payload is delivered to live subscribers and removes the store.
    publisher.publish("ret/topic", b"", qos=1, retain=True)
    message = live.expect_message()
    assert (message.topic, message.payload, message.retain) == ("ret/topic", b"", False)

    third_reader = clients.connect(broker.port, "ret-reader-3")
    assert third_reader.subscribe("ret/topic", qos=1) == 1
    third_reader.expect_no_message()


def test_non_retained_publish_keeps_stored_message(broker, clients):
    publisher = clients.connect(broker.port, "keep-pub")
    publisher.publish("keep/topic", b"stored", qos=1, retain=True)
    publisher.publish("keep/topic", b"transient", qos=1, retain=False)

    reader = clients.connect(broker.port, "keep-reader")
    assert reader.subscribe("keep/topic", qos=1) == 1
    message = reader.expect_message()
    assert (message.payload, message.retain) == (b"stored", True)
    reader.expect_no_message()


def test_retained_delivery_uses_min_qos_and_matches_wildcards(broker, clients):
    publisher = clients.connect(broker.port, "retq-pub")
    publisher.publish("retq/a", b"a at qos 2", qos=2, retain=True)
    publisher.publish("retq/b", b"b at qos 1", qos=1, retain=True)
    publisher.publish("retq/c/deep", b"c at qos 0", qos=0, retain=True)
    publisher.publish("other/x", b"not matched", qos=1, retain=True)

    reader = clients.connect(broker.port, "retq-reader")
    assert reader.subscribe("retq/#", qos=1) == 1
    received = {m.topic: (m.payload, m.qos, m.retain) for m in reader.expect_messages(3)}
    assert received == {
        "retq/a": (b"a at qos 2", 1, True),
        "retq/b": (b"b at qos 1", 1, True),
        "retq/c/deep": (b"c at qos 0", 0, True),
    }
    reader.expect_no_message()
