"""CONNECT handling: zero-length client ids, keep-alive kept up by PINGREQ."""

import socket
import struct
import time

import pytest

from paho_client import MQTT_3_1, MQTT_3_1_1

CLEAN_SESSION = 0x02


def _connect_packet(protocol_name: bytes, level: int, flags: int, client_id: bytes) -> bytes:
    body = (struct.pack("!H", len(protocol_name)) + protocol_name
            + bytes([level, flags]) + struct.pack("!H", 60)
            + struct.pack("!H", len(client_id)) + client_id)
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


def _connack_return_code(port: int, packet: bytes) -> int:
    """Sends one CONNECT on a raw socket; returns the CONNACK's return code."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(packet)
        connack = b""
        while len(connack) < 4:
            chunk = sock.recv(4 - len(connack))
            if not chunk:
                raise AssertionError(f"connection closed after {connack!r}, expected a CONNACK")
            connack += chunk
    assert connack[:3] == b"\x20\x02\x00", connack
    return connack[3]


def test_zero_length_client_id_accepted_for_clean_session_3_1_1(broker, clients):
    anonymous = clients.connect(broker.port, "", protocol=MQTT_3_1_1, clean_session=True)
    assert anonymous.session_present is False
    line = broker.wait_for_log("client connected client_id=auto-")
    assert "clean_session=true" in line, line

    assert anonymous.subscribe("anon/t", qos=1) == 1
    publisher = clients.connect(broker.port, "anon-pub")
    publisher.publish("anon/t", b"hello", qos=1)
    assert anonymous.expect_message().payload == b"hello"


@pytest.mark.parametrize(
    ("protocol_name", "level", "flags"),
    [(b"MQTT", 4, 0), (b"MQIsdp", 3, CLEAN_SESSION), (b"MQIsdp", 3, 0)],
    ids=["3.1.1-persistent", "3.1-clean", "3.1-persistent"],
)
def test_zero_length_client_id_rejected_otherwise(broker, protocol_name, level, flags):
    packet = _connect_packet(protocol_name, level, flags, b"")
    assert _connack_return_code(broker.port, packet) == 2


def test_raw_connect_accepted(broker):
    packet = _connect_packet(b"MQTT", 4, CLEAN_SESSION, b"raw-client")
    assert _connack_return_code(broker.port, packet) == 0


@pytest.mark.parametrize("protocol", [MQTT_3_1_1, MQTT_3_1], ids=["3.1.1", "3.1"])
def test_pings_keep_a_short_keep_alive_client_connected(broker, clients, protocol):
    pinger = clients.connect(broker.port, "pinger", protocol=protocol, keepalive=2)
    fields = broker.wait_for_connect("pinger")
    assert fields["keep_alive"] == "2", fields
    assert pinger.subscribe("ping/t", qos=1) == 1

    time.sleep(5)

    assert pinger.is_connected(), f"paho saw a disconnect: {pinger.disconnect_reason}"
    assert "client disconnected client_id=pinger " not in broker.logs()
    publisher = clients.connect(broker.port, "ping-pub")
    publisher.publish("ping/t", b"still here", qos=1)
    assert pinger.expect_message().payload == b"still here"
