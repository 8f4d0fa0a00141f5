"""Who may connect and what they may do: password files written by Debian's `mosquitto_passwd`
(and `hydrant passwd`), `allow_anonymous`, Mosquitto-format ACLs with `user` sections and
`pattern` lines, and the per-IP connection cap and connect-rate limit, as paho-mqtt and
Mosquitto's own command-line clients see them."""

import socket
import struct
import subprocess
import time

import pytest

from hydrant_process import broker_binary, listener_toml
from paho_client import MQTT_3_1_1, MQTT_5, Will

TOOL_TIMEOUT = 20.0
SOCKET_TIMEOUT = 5.0

# paho reports a 3.1.1 CONNACK return code as the MQTT 5 reason of the same name.
V311_RETURN_CODES = {
    "Success": 0,
    "Unsupported protocol version": 1,
    "Client identifier not valid": 2,
    "Server unavailable": 3,
    "Bad user name or password": 4,
    "Not authorized": 5,
}

PASSWORDS = {"alice": "alice pass phrase", "bob": "b0b!", "carol": "carol-secret"}

ACL = """\
# anonymous clients
topic read public/#
topic read $SYS/#

user alice
topic readwrite alice/#
topic read public/#
topic write public/alice/#

user bob
topic read #
topic deny secret/#

# carol has no section: only the patterns apply to her
pattern readwrite clients/%c/#
pattern read users/%u/inbox/#
"""


def connack_code(client, protocol: int) -> int:
    """The CONNACK code as sent on the wire: the 3.1.1 return code, or the MQTT 5 reason."""
    assert client.connack_reason is not None, (
        f"{client.client_id!r}: no CONNACK (error {getattr(client, 'connect_error', None)})")
    if protocol == MQTT_5:
        return client.connack_reason.value
    name = client.connack_reason.getName()
    assert name in V311_RETURN_CODES, f"not a 3.1.1 return code: {name}"
    return V311_RETURN_CODES[name]


def write_password_file(path, users: dict[str, str]) -> None:
    """A password file made by Debian's `mosquitto_passwd` ($7$ PBKDF2-SHA512 entries)."""
    create = ["-c"]
    for user, password in users.items():
        result = subprocess.run(["mosquitto_passwd", *create, "-b", str(path), user, password],
                                capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        assert result.returncode == 0, f"mosquitto_passwd failed: {result.stderr}"
        create = []
    assert path.read_text().count("$7$") == len(users), path.read_text()


def hydrant_passwd(path, user: str, password: str) -> None:
    """Adds or updates an entry with `hydrant passwd` (argon2id), password on stdin."""
    result = subprocess.run([str(broker_binary()), "passwd", str(path), user],
                            input=password + "\n", capture_output=True, text=True,
                            timeout=TOOL_TIMEOUT)
    assert result.returncode == 0, f"hydrant passwd failed: {result.stderr}"


@pytest.fixture
def access_files(tmp_path):
    """The password file (alice, bob, carol) and the ACL above, on disk."""
    passwords = tmp_path / "passwd"
    write_password_file(passwords, PASSWORDS)
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    return passwords, acl


def guarded_config(passwords=None, acl=None, **keys) -> str:
    """The guarded listener first (it gets `--bind`), then an open one for observers."""
    files = {}
    if passwords is not None:
        files["password_file"] = passwords
    if acl is not None:
        files["acl_file"] = acl
    return listener_toml("mqtt", **files, **keys) + listener_toml("mqtt")


def open_port(broker) -> int:
    """The listener without access rules: observers there see everything that is routed."""
    return broker.port_of("mqtt", 1)


# ---- passwords ---------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [MQTT_3_1_1, MQTT_5], ids=["3.1.1", "5"])
def test_mosquitto_passwd_entries_are_accepted(broker_factory, clients, access_files,
                                               protocol):
    passwords, _acl = access_files
    broker = broker_factory(guarded_config(passwords))
    for user, password in PASSWORDS.items():
        client = clients.connect_via(broker.port, f"login-{user}", protocol=protocol,
                                     username=user, password=password)
        assert connack_code(client, protocol) == 0


@pytest.mark.parametrize("protocol,expected", [(MQTT_3_1_1, 4), (MQTT_5, 0x86)],
                         ids=["3.1.1", "5"])
def test_bad_credentials_are_refused(broker_factory, clients, access_files, protocol,
                                     expected):
    passwords, _acl = access_files
    broker = broker_factory(guarded_config(passwords))
    attempts = {
        "wrong-password": ("alice", "not alice's"),
        "other-users-password": ("alice", PASSWORDS["bob"]),
        "unknown-user": ("mallory", "whatever"),
        "no-password": ("bob", None),
        "case-of-user": ("Alice", PASSWORDS["alice"]),
    }
    for name, (user, password) in attempts.items():
        client = clients.connect_via(broker.port, name, protocol=protocol, username=user,
                                     password=password, expect_success=False)
        assert client.refused, f"{name}: accepted"
        assert connack_code(client, protocol) == expected, name
    accepted = clients.connect_via(broker.port, "then-right", protocol=protocol,
                                   username="alice", password=PASSWORDS["alice"])
    assert accepted.is_connected()


def test_argon2id_and_pbkdf2_entries_side_by_side(broker_factory, clients, tmp_path):
    passwords = tmp_path / "passwd"
    write_password_file(passwords, {"mosq-user": "from mosquitto_passwd"})
    hydrant_passwd(passwords, "argon-user", "from hydrant passwd")
    assert "$argon2id$" in passwords.read_text()
    broker = broker_factory(guarded_config(passwords))
    clients.connect_via(broker.port, "mosq", username="mosq-user",
                        password="from mosquitto_passwd")
    clients.connect_via(broker.port, "argon", username="argon-user",
                        password="from hydrant passwd")
    refused = clients.connect_via(broker.port, "argon-bad", username="argon-user",
                                  password="from mosquitto_passwd", expect_success=False)
    assert connack_code(refused, MQTT_3_1_1) == 4


def test_mosquitto_command_line_clients_log_in(broker_factory, clients, access_files):
    passwords, acl = access_files
    broker = broker_factory(guarded_config(passwords, acl))
    observer = clients.connect(open_port(broker), "observer")
    observer.subscribe("alice/#", qos=1)
    base = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
            "-t", "alice/cli", "-u", "alice"]
    good = subprocess.run(base + ["-P", PASSWORDS["alice"], "-m", "from mosquitto_pub"],
                          capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    assert good.returncode == 0, good.stderr
    assert observer.expect_message().payload == b"from mosquitto_pub"

    bad = subprocess.run(base + ["-P", "wrong", "-m", "refused"],
                         capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    assert bad.returncode != 0
    assert "bad user name or password" in bad.stderr.lower(), bad.stderr
    observer.expect_no_message()


@pytest.mark.parametrize("protocol,expected", [(MQTT_3_1_1, 5), (MQTT_5, 0x87)],
                         ids=["3.1.1", "5"])
def test_allow_anonymous_false_refuses_clients_without_a_user_name(
        broker_factory, clients, access_files, protocol, expected):
    passwords, _acl = access_files
    broker = broker_factory(guarded_config(passwords, allow_anonymous=False))
    anonymous = clients.connect_via(broker.port, "anonymous", protocol=protocol,
                                    expect_success=False)
    assert anonymous.refused
    assert connack_code(anonymous, protocol) == expected
    clients.connect_via(broker.port, "named", protocol=protocol, username="carol",
                        password=PASSWORDS["carol"])
    # The other listener keeps its own default (anonymous allowed).
    clients.connect(open_port(broker), "anonymous-elsewhere", protocol=protocol)


def test_allow_anonymous_false_without_password_file(broker_factory, clients):
    broker = broker_factory(guarded_config(allow_anonymous=False))
    anonymous = clients.connect_via(broker.port, "anonymous", expect_success=False)
    assert connack_code(anonymous, MQTT_3_1_1) == 5


def test_anonymous_clients_are_accepted_next_to_a_password_file(broker_factory, clients,
                                                                access_files):
    passwords, _acl = access_files
    broker = broker_factory(guarded_config(passwords))
    anonymous = clients.connect_via(broker.port, "anonymous")
    assert anonymous.is_connected()


# ---- ACLs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol,denied", [(MQTT_3_1_1, 0x80), (MQTT_5, 0x87)],
                         ids=["3.1.1", "5"])
def test_suback_fails_only_the_denied_filters(broker_factory, clients, access_files, protocol,
                                              denied):
    passwords, acl = access_files
    broker = broker_factory(guarded_config(passwords, acl))
    alice = clients.connect_via(broker.port, "alice-subs", protocol=protocol, username="alice",
                                password=PASSWORDS["alice"])
    codes = alice.subscribe_many([("alice/inbox", 1), ("bob/inbox", 1), ("public/#", 0),
                                  ("#", 1), ("public/alice/x", 1)])
    assert codes == [1, denied, 0, denied, 1]
    anonymous = clients.connect_via(broker.port, "anon-subs", protocol=protocol)
    assert anonymous.subscribe_many([("public/+/news", 1), ("alice/inbox", 1),
                                     ("$SYS/#", 0)]) == [1, denied, 0]


def test_denied_publish_is_not_delivered(broker_factory, clients, access_files):
    passwords, acl = access_files
    broker = broker_factory(guarded_config(passwords, acl))
    observer = clients.connect(open_port(broker), "observer")
    observer.subscribe("#", qos=1)

    alice = clients.connect_via(broker.port, "alice-311", username="alice",
                                password=PASSWORDS["alice"])
    for qos in (0, 1, 2):  # acknowledged as usual in 3.1.1, but dropped
        alice.publish("bob/inbox", f"forged qos {qos}".encode(), qos=qos)
        alice.publish("public/news", b"alice may only read here", qos=qos)
    observer.expect_no_message()
    alice.publish("public/alice/post", b"allowed", qos=1)
    assert observer.expect_message().topic == "public/alice/post"
    assert alice.is_connected()

    anonymous = clients.connect_via(broker.port, "anon-writer")
    anonymous.publish("public/news", b"anonymous may only read", qos=1)
    observer.expect_no_message()


def test_mqtt5_denied_publish_gets_not_authorized(broker_factory, clients, access_files):
    passwords, acl = access_files
    broker = broker_factory(guarded_config(passwords, acl))
    observer = clients.connect(open_port(broker), "observer")
    observer.subscribe("#", qos=1)
    alice = clients.connect_via(broker.port, "alice-5", protocol=MQTT_5, username="alice",
                                password=PASSWORDS["alice"])
    assert alice.publish("bob/inbox", b"forged", qos=1) == 0x87
    alice.publish("bob/inbox", b"forged at qos 0", qos=0)
    observer.expect_no_message()
    assert alice.publish("alice/outbox", b"allowed", qos=1) == 0
    assert observer.expect_message().payload == b"allowed"
    assert alice.is_connected()


def test_denied_subscriber_never_receives_what_it_may_not_read(broker_factory, clients,
                                                               access_files):
    passwords, acl = access_files
    broker = broker_factory(guarded_config(passwords, acl))
    writer = clients.connect(open_port(broker), "writer")
    writer.publish("secret/plans", b"retained secret", qos=1, retain=True)
    writer.publish("news/today", b"retained news", qos=1, retain=True)

    # bob may read `#` except `secret/#`: `#` is granted, but deliveries are filtered.
    bob = clients.connect_via(broker.port, "bob-live", username="bob",
                              password=PASSWORDS["bob"])
    assert bob.subscribe_many([("#", 1)]) == [1]
    retained = bob.expect_message()
    assert (retained.topic, retained.retain) == ("news/today", True)
    bob.expect_no_message()

    writer.publish("secret/plans", b"live secret", qos=1)
    writer.publish("secret/deeper/still", b"live secret 2", qos=0)
    writer.publish("news/tomorrow", b"live news", qos=1)
    received = bob.expect_message()
    assert (received.topic, received.payload) == ("news/tomorrow", b"live news")
    bob.expect_no_message()

    assert bob.subscribe_many([("secret/#", 1), ("secret/plans", 0)]) == [0x80, 0x80]
    bob.expect_no_message()

    anonymous = clients.connect_via(broker.port, "anon-reader", protocol=MQTT_5)
    assert anonymous.subscribe_many([("#", 1)]) == [0x87]
    anonymous.expect_no_message()


def test_patterns_with_client_id_and_user_name(broker_factory, clients, access_files):
    passwords, acl = access_files
    broker = broker_factory(guarded_config(passwords, acl))
    observer = clients.connect(open_port(broker), "observer")
    observer.subscribe("#", qos=1)

    carol = clients.connect_via(broker.port, "dev-1", username="carol",
                                password=PASSWORDS["carol"])
    assert carol.subscribe_many([
        ("clients/dev-1/#", 1), ("clients/dev-2/#", 1),
        ("users/carol/inbox/#", 1), ("users/alice/inbox/#", 1), ("users/+/inbox/#", 1),
    ]) == [1, 0x80, 1, 0x80, 0x80]
    carol.publish("clients/dev-1/up", b"mine", qos=1)
    assert observer.expect_message().topic == "clients/dev-1/up"
    assert carol.expect_message().topic == "clients/dev-1/up"  # her own subscription
    carol.publish("clients/dev-2/up", b"not mine", qos=1)
    carol.publish("users/carol/inbox/x", b"read-only for carol", qos=1)
    observer.expect_no_message()
    carol.expect_no_message()

    writer = clients.connect(open_port(broker), "writer")
    writer.publish("users/carol/inbox/hello", b"for carol", qos=1)
    writer.publish("clients/dev-1/down", b"for dev-1", qos=1)
    got = {m.topic: m.payload for m in carol.expect_messages(2)}
    assert got == {"users/carol/inbox/hello": b"for carol", "clients/dev-1/down": b"for dev-1"}
    observer.expect_messages(2)

    # Patterns apply to anonymous clients too: %c is their client id.
    device = clients.connect_via(broker.port, "dev-3")
    assert device.subscribe_many([("clients/dev-3/#", 1), ("clients/dev-1/#", 1)]) == [1, 0x80]
    device.publish("clients/dev-3/up", b"anonymous device", qos=1)
    assert observer.expect_message().topic == "clients/dev-3/up"


def test_acl_applies_to_will_messages(broker_factory, clients, access_files):
    passwords, acl = access_files
    broker = broker_factory(guarded_config(passwords, acl))
    observer = clients.connect(open_port(broker), "observer")
    observer.subscribe("#", qos=1)

    # Anonymous clients may only read public/#: their will there is dropped.
    anonymous = clients.connect(broker.port, "anon-will", will=Will("public/status", b"x", 1))
    anonymous.drop()
    broker.wait_for_disconnect("anon-will")
    observer.expect_no_message(1.0)

    # alice may write alice/#: her will is delivered.
    alice = clients.connect_via(broker.port, "alice-will", username="alice",
                                password=PASSWORDS["alice"],
                                will=Will("alice/status", b"alice gone", 1))
    alice.drop()
    assert observer.expect_message().payload == b"alice gone"


# ---- per-IP limits -------------------------------------------------------------------------

def raw_connect(port: int, client_id: str, version: int = 4) -> tuple[socket.socket, int]:
    """Sends a CONNECT (3.1.1: version 4; MQTT 5: version 5) and reads the CONNACK; returns
    the open socket and the return code / reason code (-1 when closed without a CONNACK)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    cid = client_id.encode()
    body = b"\x00\x04MQTT" + bytes([version, 0x02]) + struct.pack("!H", 60)
    if version == 5:
        body += b"\x00"
    body += struct.pack("!H", len(cid)) + cid
    sock.sendall(bytes([0x10, len(body)]) + body)
    header = b""
    try:
        while len(header) < 2:
            chunk = sock.recv(2 - len(header))
            if not chunk:
                return sock, -1
            header += chunk
        assert header[0] == 0x20, f"expected a CONNACK, got {header!r}"
        rest = b""
        while len(rest) < header[1]:
            chunk = sock.recv(header[1] - len(rest))
            if not chunk:
                return sock, -1
            rest += chunk
    except ConnectionResetError:
        return sock, -1
    return sock, rest[1]


@pytest.fixture
def raw_sockets():
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


@pytest.mark.parametrize("version,refusal", [(4, 3), (5, 0x97)], ids=["3.1.1", "5"])
def test_connections_per_ip_are_capped(broker_factory, raw_sockets, version, refusal):
    broker = broker_factory(guarded_config(max_connections_per_ip=3), cores=2)
    codes = []
    for n in range(6):
        sock, code = raw_connect(broker.port, f"capped-{n}", version)
        raw_sockets.append(sock)
        codes.append(code)
    assert codes == [0, 0, 0, refusal, refusal, refusal], codes
    # The other listener has no cap.
    sock, code = raw_connect(open_port(broker), "uncapped", version)
    raw_sockets.append(sock)
    assert code == 0

    mark = broker.log_mark()
    raw_sockets[0].close()
    broker.wait_for_disconnect("capped-0", since=mark)
    deadline = time.monotonic() + 5.0
    while True:  # the freed slot may be released just after the disconnect line
        sock, code = raw_connect(broker.port, "capped-again", version)
        raw_sockets.append(sock)
        if code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert code == 0, f"a freed slot was not reusable: CONNACK {code}"


@pytest.mark.parametrize("version,refusal", [(4, 3), (5, 0x9F)], ids=["3.1.1", "5"])
def test_connect_rate_per_ip_is_limited(broker_factory, raw_sockets, version, refusal):
    rate = 3
    broker = broker_factory(guarded_config(max_connect_rate_per_ip=rate), cores=2)
    started = time.monotonic()
    codes = []
    for n in range(20):
        sock, code = raw_connect(broker.port, f"burst-{n}", version)
        raw_sockets.append(sock)
        codes.append(code)
    elapsed = time.monotonic() - started
    accepted = codes.count(0)
    # A burst within about a second: at most the rate per started second gets through.
    assert 1 <= accepted <= rate * (int(elapsed) + 2), (codes, elapsed)
    assert all(code in (0, refusal) for code in codes), codes
    assert codes.count(refusal) >= 20 - rate * (int(elapsed) + 2), codes

    time.sleep(2.0)
    sock, code = raw_connect(broker.port, "after-the-burst", version)
    raw_sockets.append(sock)
    assert code == 0, f"still refused {2.0}s after the burst: {code}"
    sock, code = raw_connect(open_port(broker), "other-listener", version)
    raw_sockets.append(sock)
    assert code == 0


def test_no_client_publishes_into_the_sys_tree(broker, clients):
    """`$SYS` is the broker's own, even on a listener without an ACL: a client's publish there
    reaches nobody, and an MQTT 5 client is told it is not authorized."""
    watcher = clients.connect(broker.port, "sys-watcher")
    assert watcher.subscribe("$SYS/forged/#", qos=1) == 1
    v5 = clients.connect(broker.port, "sys-forger-v5", protocol=MQTT_5)
    assert v5.publish("$SYS/forged/uptime", b"0", qos=1) == 0x87
    v3 = clients.connect(broker.port, "sys-forger-v3")
    assert v3.publish("$SYS/forged/version", b"fake", qos=1) == 0
    v3.publish("$SYS/forged/version", b"fake", qos=0)
    watcher.expect_no_message()
