"""SIGHUP re-reads the password file, the ACL file and the TLS files without disconnecting
anyone: new rules apply to new operations at once, subscriptions that are no longer allowed
stop receiving, and a file that no longer parses leaves the previous state in force with an
error in the log naming it."""

import os
import signal
import subprocess
import time

import pytest

from hydrant_process import listener_toml
from paho_client import MQTT_3_1_1, MQTT_5
from tls_material import CertificateAuthority

TOOL_TIMEOUT = 20.0
ERROR_TIMEOUT = 10.0

V311_BAD_CREDENTIALS = "Bad user name or password"


def mosquitto_passwd(path, user: str, password: str, create: bool = False) -> None:
    args = ["mosquitto_passwd", *(["-c"] if create else []), "-b", str(path), user, password]
    result = subprocess.run(args, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    assert result.returncode == 0, result.stderr


def replace_file(path, text: str | bytes) -> None:
    """Writes a new version of `path` the way operators' tools do: a temporary file renamed
    over the old one (the broker must read the new content, not a half-written one)."""
    temporary = path.with_name(path.name + ".new")
    if isinstance(text, bytes):
        temporary.write_bytes(text)
    else:
        temporary.write_text(text)
    os.replace(temporary, path)


def wait_for_error_naming(broker, path, since: int) -> str:
    """The log line that reports a failed reload of `path`; it must be an ERROR."""
    line = broker.wait_for_log(path.name, ERROR_TIMEOUT, since=since)
    assert "ERROR" in line, f"the failed reload of {path.name} was not logged as an error: {line}"
    return line


def assert_round_trip(publisher, subscriber, topic: str, payload: bytes) -> None:
    publisher.publish(topic, payload, qos=1)
    received = subscriber.expect_message()
    assert (received.topic, received.payload) == (topic, payload)


@pytest.fixture
def files(tmp_path):
    passwords = tmp_path / "passwd"
    mosquitto_passwd(passwords, "alice", "old-alice", create=True)
    mosquitto_passwd(passwords, "bob", "bob-pass")
    acl = tmp_path / "acl"
    acl.write_text("topic read public/#\n"
                   "user alice\ntopic readwrite #\n"
                   "user bob\ntopic read news/#\ntopic read weather/#\ntopic write bob/#\n")
    return passwords, acl


def guarded_config(passwords, acl) -> str:
    """The guarded listener (it gets `--bind`), then an open one for observers."""
    return (listener_toml("mqtt", password_file=passwords, acl_file=acl)
            + listener_toml("mqtt"))


@pytest.mark.parametrize("protocol", [MQTT_3_1_1, MQTT_5], ids=["3.1.1", "5"])
def test_password_change_applies_to_new_connects(broker_factory, clients, files, protocol):
    passwords, acl = files
    broker = broker_factory(guarded_config(passwords, acl))
    port = broker.port
    # Connected before the reload, and the credential now sits in the verification cache.
    alice = clients.connect_via(port, "alice-before", protocol=protocol, username="alice",
                                password="old-alice")
    clients.connect_via(port, "alice-cached", protocol=protocol, username="alice",
                        password="old-alice").disconnect()
    bob = clients.connect_via(port, "bob-before", protocol=protocol, username="bob",
                              password="bob-pass")
    alice.subscribe_many([("news/#", 1), ("bob/#", 1)])

    mosquitto_passwd(passwords, "alice", "new-alice")
    mosquitto_passwd(passwords, "carol", "carol-pass")
    subprocess.run(["mosquitto_passwd", "-D", str(passwords), "bob"], check=True,
                   capture_output=True, timeout=TOOL_TIMEOUT)
    mark = broker.log_mark()
    broker.reload()

    old = clients.connect_via(port, "alice-old-password", protocol=protocol, username="alice",
                              password="old-alice", expect_success=False)
    assert old.refused, "the old password still works after the reload"
    if protocol == MQTT_5:
        assert old.connack_reason.value == 0x86
    else:
        assert old.connack_reason.getName() == V311_BAD_CREDENTIALS
    removed = clients.connect_via(port, "bob-removed", protocol=protocol, username="bob",
                                  password="bob-pass", expect_success=False)
    assert removed.refused, "a user deleted from the file can still log in"
    clients.connect_via(port, "alice-new-password", protocol=protocol, username="alice",
                        password="new-alice")
    clients.connect_via(port, "carol-added", protocol=protocol, username="carol",
                        password="carol-pass")

    # Nobody was disconnected, bob included: the new file applies to new CONNECTs only.
    assert alice.is_connected() and bob.is_connected()
    assert "client disconnected client_id=alice-before" not in "\n".join(
        broker.log_lines()[mark:])
    assert_round_trip(bob, alice, "bob/still", b"bob still talking")
    assert_round_trip(alice, alice, "news/alice", b"alice still here")


def test_acl_change_removes_subscriptions_no_longer_allowed(broker_factory, clients, files):
    passwords, acl = files
    broker = broker_factory(guarded_config(passwords, acl))
    writer = clients.connect(broker.port_of("mqtt", 1), "writer")
    bob = clients.connect_via(broker.port, "bob", username="bob", password="bob-pass")
    assert bob.subscribe_many([("news/#", 1), ("weather/#", 1)]) == [1, 1]
    assert_round_trip(writer, bob, "news/a", b"before")
    assert_round_trip(writer, bob, "weather/a", b"before")
    observer = clients.connect(broker.port_of("mqtt", 1), "observer")
    observer.subscribe("bob/#", qos=1)
    assert_round_trip(bob, observer, "bob/out", b"before")

    replace_file(acl, "topic read public/#\n"
                      "user alice\ntopic readwrite #\n"
                      "user bob\ntopic read weather/#\n")
    mark = broker.log_mark()
    broker.reload()

    writer.publish("news/b", b"after: bob may no longer read news", qos=1)
    assert_round_trip(writer, bob, "weather/b", b"after: still allowed")
    bob.expect_no_message()
    assert bob.subscribe_many([("news/#", 1)]) == [0x80]
    bob.publish("bob/out", b"after: bob may no longer write", qos=1)
    observer.expect_no_message()

    assert bob.is_connected()
    assert "client disconnected" not in "\n".join(broker.log_lines()[mark:])


def test_acl_change_also_filters_retained_messages(broker_factory, clients, files):
    passwords, acl = files
    broker = broker_factory(guarded_config(passwords, acl))
    writer = clients.connect(broker.port_of("mqtt", 1), "writer")
    writer.publish("news/kept", b"retained news", qos=1, retain=True)
    writer.publish("weather/kept", b"retained weather", qos=1, retain=True)
    bob = clients.connect_via(broker.port, "bob", protocol=MQTT_5, username="bob",
                              password="bob-pass")
    assert bob.subscribe_many([("#", 1)]) == [0x87], "bob may not read all of # yet"

    replace_file(acl, "user bob\ntopic read #\ntopic deny news/#\n")
    broker.reload()
    assert bob.subscribe_many([("#", 1)]) == [1]
    received = bob.expect_message()
    assert (received.topic, received.retain) == ("weather/kept", True)
    bob.expect_no_message()


def test_broken_acl_keeps_the_previous_rules(broker_factory, clients, files):
    passwords, acl = files
    broker = broker_factory(guarded_config(passwords, acl))
    writer = clients.connect(broker.port_of("mqtt", 1), "writer")
    bob = clients.connect_via(broker.port, "bob", username="bob", password="bob-pass")
    assert bob.subscribe_many([("news/#", 1)]) == [1]

    replace_file(acl, "user bob\ntopic read weather/#\nthis line is not an ACL rule\n")
    mark = broker.log_mark()
    broker.send_signal(signal.SIGHUP)
    wait_for_error_naming(broker, acl, since=mark)

    assert bob.is_connected()
    assert_round_trip(writer, bob, "news/still", b"old rules in force")
    assert bob.subscribe_many([("weather/#", 1), ("sports/#", 1)]) == [1, 0x80]
    late = clients.connect_via(broker.port, "bob-late", username="bob", password="bob-pass")
    assert late.subscribe_many([("news/#", 1)]) == [1]

    # A later good file is picked up again.
    replace_file(acl, "user bob\ntopic read sports/#\n")
    broker.reload()
    assert late.subscribe_many([("sports/#", 1), ("weather/#", 1)]) == [1, 0x80]


def test_broken_password_file_keeps_the_previous_passwords(broker_factory, clients, files):
    passwords, acl = files
    broker = broker_factory(guarded_config(passwords, acl))
    replace_file(passwords, "alice:$7$this-is-not-a-valid-hash\n")
    mark = broker.log_mark()
    broker.send_signal(signal.SIGHUP)
    wait_for_error_naming(broker, passwords, since=mark)
    clients.connect_via(broker.port, "alice-still", username="alice", password="old-alice")
    clients.connect_via(broker.port, "bob-still", username="bob", password="bob-pass")


def test_tls_files_are_reloaded(broker_factory, clients, tmp_path):
    first = CertificateAuthority(tmp_path / "first", name="first CA")
    second = CertificateAuthority(tmp_path / "second", name="second CA")
    server = first.issue_server()
    client_ca = tmp_path / "client-ca.pem"
    client_ca.write_bytes(first.ca_file.read_bytes())
    broker = broker_factory(listener_toml("mqtt") + listener_toml(
        "mqtt+tls", certfile=server.cert, keyfile=server.key, cafile=client_ca,
        require_certificate=True) + listener_toml(
        "wss", certfile=server.cert, keyfile=server.key))
    tls_port, wss_port = broker.port_of("mqtt+tls"), broker.port_of("wss")
    before = clients.connect_via(tls_port, "tls-before", transport="mqtt+tls",
                                 ca_file=first.ca_file,
                                 client_cert=first.issue_client("early"))
    web_before = clients.connect_via(wss_port, "wss-before", transport="wss",
                                     ca_file=first.ca_file)
    before.subscribe("tls/#", qos=1)

    renewed = second.issue_server()
    replace_file(server.cert, renewed.cert.read_bytes())
    replace_file(server.key, renewed.key.read_bytes())
    replace_file(client_ca, second.ca_file.read_bytes())
    mark = broker.log_mark()
    broker.reload()

    for transport, port in (("mqtt+tls", tls_port), ("wss", wss_port)):
        cert = second.issue_client(f"late-{transport.replace('+', '-')}")
        stale = clients.connect_via(port, f"trusts-old-{transport}", transport=transport,
                                    ca_file=first.ca_file, client_cert=cert,
                                    expect_success=False)
        assert stale.refused, f"{transport} still serves the old certificate"
        clients.connect_via(port, f"trusts-new-{transport}", transport=transport,
                            ca_file=second.ca_file, client_cert=cert)
    old_client_cert = clients.connect_via(tls_port, "old-client-cert", transport="mqtt+tls",
                                          ca_file=second.ca_file,
                                          client_cert=first.issue_client("old"),
                                          expect_success=False)
    assert old_client_cert.refused, "a client certificate of the replaced CA was accepted"

    # The connections made before the reload keep their TLS sessions.
    assert before.is_connected() and web_before.is_connected()
    assert_round_trip(web_before, before, "tls/after", b"same session")
    assert "client disconnected" not in "\n".join(broker.log_lines()[mark:])


def test_broken_certificate_keeps_the_previous_one(broker_factory, clients, tmp_path):
    ca = CertificateAuthority(tmp_path / "pki")
    server = ca.issue_server()
    broker = broker_factory(listener_toml("mqtt") + listener_toml(
        "mqtt+tls", certfile=server.cert, keyfile=server.key))
    port = broker.port_of("mqtt+tls")
    before = clients.connect_via(port, "before", transport="mqtt+tls", ca_file=ca.ca_file)
    replace_file(server.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    mark = broker.log_mark()
    broker.send_signal(signal.SIGHUP)
    wait_for_error_naming(broker, server.cert, since=mark)
    after = clients.connect_via(port, "after", transport="mqtt+tls", ca_file=ca.ca_file)
    after.subscribe("tls/x", qos=1)
    assert_round_trip(before, after, "tls/x", b"old certificate still served")


def test_everyone_stays_connected_across_reloads(broker_factory, clients, files, tmp_path):
    passwords, acl = files
    ca = CertificateAuthority(tmp_path / "pki")
    server = ca.issue_server()
    tls = {"certfile": server.cert, "keyfile": server.key}
    broker = broker_factory(
        listener_toml("mqtt", password_file=passwords, acl_file=acl)
        + listener_toml("mqtt+tls", password_file=passwords, acl_file=acl, **tls)
        + listener_toml("ws", password_file=passwords, acl_file=acl)
        + listener_toml("wss", password_file=passwords, acl_file=acl, **tls))
    connected = []
    for transport in ("mqtt", "mqtt+tls", "ws", "wss"):
        options = {"ca_file": ca.ca_file} if transport in ("mqtt+tls", "wss") else {}
        for n in range(2):
            client = clients.connect_via(broker.port_of(transport), f"{transport}-{n}",
                                         transport=transport, username="alice",
                                         password="old-alice", **options)
            topic = f"stay/{transport.replace('+', '-')}/{n}"
            client.subscribe(topic, qos=1)
            connected.append((client, topic))
    mark = broker.log_mark()
    for _ in range(3):
        broker.reload()
        time.sleep(0.2)
    publisher = clients.connect_via(broker.port, "publisher", username="alice",
                                    password="old-alice")
    for client, topic in connected:
        assert client.is_connected(), f"{client.client_id} was disconnected by a reload"
        assert_round_trip(publisher, client, topic, b"after three reloads")
    assert "client disconnected" not in "\n".join(broker.log_lines()[mark:])
