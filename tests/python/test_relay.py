"""A persistent session reached over TLS or WebSocket from another core than the one that holds
it. A plain TCP socket is handed to the session's core; a TLS or WebSocket connection cannot
be (its protocol state lives on the accepting core), so the accepting core relays its bytes.
Seen from the client, nothing differs: it gets its session, its queued messages, and can
publish and subscribe, whichever core the kernel gave its connection to."""

import pytest

from hydrant_process import listener_toml
from paho_client import MQTT_3_1_1
from tls_material import CertificateAuthority

# Reconnections tried until one lands on another core than the session's (the kernel spreads
# connections by their address hash, so a few tries suffice; each is quick).
MAX_TRIES = 40


@pytest.fixture
def ca(tmp_path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki")


def relay_config(server) -> str:
    return (listener_toml("mqtt")
            + listener_toml("mqtt+tls", certfile=server.cert, keyfile=server.key)
            + listener_toml("wss", certfile=server.cert, keyfile=server.key)
            + listener_toml("ws"))


@pytest.mark.parametrize("transport", ["mqtt+tls", "ws", "wss"])
def test_a_session_on_another_core_is_served_through_a_relay(broker_factory, clients, ca,
                                                             transport):
    broker = broker_factory(relay_config(ca.issue_server()), cores=2)
    port = broker.port_of(transport)
    client_id = f"relayed-{transport}"
    tls = {"ca_file": ca.ca_file} if transport in ("mqtt+tls", "wss") else {}

    def connect(**extra):
        # An MQTT 3.1.1 persistent session (the relay carries bytes: any version is the same).
        return clients.connect_via(port, client_id, transport=transport, protocol=MQTT_3_1_1,
                                   clean_session=False, **tls, **extra)

    mark = broker.log_mark()
    first = connect()
    session_core = broker.wait_for_connect(client_id, since=mark)["core"]
    assert first.subscribe("relay/#", qos=1) == 1
    first.disconnect()
    broker.wait_for_disconnect(client_id, since=mark)

    publisher = clients.connect(broker.port, f"pub-{client_id}")
    relayed = None
    for attempt in range(MAX_TRIES):
        # Queued while the client is away, delivered when it comes back.
        publisher.publish("relay/queued", f"queued {attempt}".encode(), qos=1)
        mark = broker.log_mark()
        client = connect()
        fields = broker.wait_for_connect(client_id, since=mark)
        assert fields["core"] == session_core, "a session stays on its core"
        assert client.session_present
        assert client.expect_message().payload == f"queued {attempt}".encode()
        if fields["accepted_core"] != session_core:
            relayed = client
            break
        client.disconnect()
        broker.wait_for_disconnect(client_id, since=mark)
    assert relayed is not None, f"no connection landed off core {session_core} in {MAX_TRIES} tries"

    # Live traffic both ways through the relay, including a payload larger than one read.
    big = bytes(range(256)) * 1200
    publisher.publish("relay/live", big, qos=1)
    assert relayed.expect_message().payload == big
    watcher = clients.connect(broker.port, f"watch-{client_id}")
    assert watcher.subscribe("from/relayed", qos=1) == 1
    relayed.publish("from/relayed", b"through the relay", qos=1)
    assert watcher.expect_message().payload == b"through the relay"

    # Ending the relayed connection ends it on the session's core too.
    mark = broker.log_mark()
    relayed.disconnect()
    broker.wait_for_disconnect(client_id, since=mark)
