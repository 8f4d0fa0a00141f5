"""`max_queued_bytes_total`: the broker-wide bound on queued messages, at its edge.

Two paused readers (paho clients whose network thread stopped, sockets left open) subscribe
to a flood beside a subscriber that keeps reading. Per-client limits are lifted, so only the
broker-wide bound stops the paused readers' queues: the test checks that their queues stop
near it, that the drops are counted under their own reason, and that the subscriber that
keeps up still receives every message.
"""

import time

import pytest

from test_metrics_broker import METRICS_CONFIG, scrape, total

# One core, so the whole bound is that core's share.
BUDGET = 256 * 1024
# What the bound may be overdrawn by, per queue: one write batch (64 KiB) plus one message.
FLOOR = 64 * 1024
PAYLOAD = b"q" * 2048
BURST = 50
FLOOD_WAIT = 60.0
# Per-client limits lifted: only the broker-wide bound stops a queue.
BUDGET_CONFIG = (
    METRICS_CONFIG
    + "[limits]\nmax_queued_messages = 1000000\nmax_queued_bytes = 0\n"
    + f"max_queued_bytes_total = {BUDGET}\n"
)


@pytest.mark.timeout(180)
def test_paused_readers_stop_at_the_broker_wide_bound_and_others_keep_receiving(
        broker_factory, clients):
    broker = broker_factory(BUDGET_CONFIG, cores=1)
    http = broker.port_of("http")
    paused = []
    for name in ("paused-1", "paused-2"):
        client = clients.connect(broker.port, name)
        assert client.subscribe("flood/#", qos=0) == 0
        client.stall()
        paused.append(name)
    keeping_up = clients.connect(broker.port, "keeps-up")
    assert keeping_up.subscribe("flood/#", qos=0) == 0
    publisher = clients.connect(broker.port, "flooder")

    # Flood in paced bursts (so that a reading client can keep up) until the bound drops
    # messages: first the kernel's socket buffers of the paused readers fill, then their
    # queues in the broker.
    sent = 0
    received = 0
    deadline = time.monotonic() + FLOOD_WAIT
    families = scrape(http)
    while total(families, "hydrant_publish_messages_dropped",
                reason="max_queued_bytes_total") == 0:
        assert time.monotonic() < deadline, f"no drop by the bound after {sent} messages"
        publisher.publish_many("flood/t", [PAYLOAD] * BURST, qos=0)
        sent += BURST
        received += len(keeping_up.expect_messages(BURST))
        families = scrape(http)
    # A few more bursts while the bound holds.
    for _ in range(10):
        publisher.publish_many("flood/t", [PAYLOAD] * BURST, qos=0)
        sent += BURST
        received += len(keeping_up.expect_messages(BURST))
    assert received == sent, "the subscriber that keeps up lost nothing"
    keeping_up.expect_no_message()

    # The next round of figures: the paused readers' queues hold the bound and no more.
    time.sleep(1.5)
    families = scrape(http)
    queued = {
        name: total(families, "hydrant_slow_client_queued_bytes", client_id=name)
        for name in paused
    }
    assert sum(queued.values()) <= BUDGET + len(paused) * (FLOOR + 2 * len(PAYLOAD)), queued
    assert all(q >= FLOOR for q in queued.values()), queued
    dropped = total(families, "hydrant_publish_messages_dropped",
                    reason="max_queued_bytes_total")
    assert dropped > 0
    assert total(families, "hydrant_publish_messages_dropped",
                 reason="connection_queue_full") == 0, "no per-client limit was reached"
    assert total(families, "hydrant_slow_client_dropped_messages", client_id="keeps-up") == 0


@pytest.mark.timeout(120)
def test_offline_sessions_queue_up_to_the_broker_wide_bound(broker_factory, clients):
    broker = broker_factory(BUDGET_CONFIG, cores=1)
    http = broker.port_of("http")
    away = ("away-1", "away-2")
    for name in away:
        client = clients.connect(broker.port, name, clean_session=False)
        assert client.subscribe("offline/#", qos=1) == 1
        client.disconnect()
    publisher = clients.connect(broker.port, "offline-pub")
    # 200 messages of 2 KiB: 400 KiB for each session, more than the bound for both.
    count = 200
    for start in range(0, count, BURST):
        publisher.publish_many("offline/t", [PAYLOAD] * BURST, qos=1)

    families = scrape(http)
    deadline = time.monotonic() + 15.0
    while total(families, "hydrant_publish_messages_dropped",
                reason="max_queued_bytes_total") == 0:
        assert time.monotonic() < deadline, "no drop by the bound"
        time.sleep(0.2)
        families = scrape(http)
    time.sleep(1.5)
    families = scrape(http)
    queued = total(families, "hydrant_queued_bytes")
    slack = len(away) * (FLOOR + 2 * len(PAYLOAD))
    assert FLOOR * len(away) <= queued <= BUDGET + slack, queued
    dropped = total(families, "hydrant_publish_messages_dropped",
                    reason="max_queued_bytes_total")
    kept = total(families, "hydrant_queued_messages")
    assert kept + dropped == count * len(away), "every message is either kept or counted"

    # What each session kept arrives when it comes back, and nothing more.
    arrived = 0
    for name in away:
        back = clients.connect(broker.port, name, clean_session=False)
        messages = []
        while True:
            try:
                messages.append(back.expect_message(timeout=2.0))
            except AssertionError:
                break
        assert 0 < len(messages) < count, (name, len(messages))
        arrived += len(messages)
    assert arrived == kept
