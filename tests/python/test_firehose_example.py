"""The shipped example `config/firehose.toml`, end to end: its four listeners (mqtt,
mqtt+tls, ws, wss) moved to free loopback ports, its certificate, password and ACL paths
pointed at files this test makes (the shipped ACL is used as it is when the repository has
it), then: anonymous clients on every listener may read `#` and `$SYS/#` but not write, and the
configured user may write from every listener to readers on every listener."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from hydrant_process import REPO_ROOT, broker_binary, toml_value
from paho_client import MQTT_3_1_1, MQTT_5
from tls_material import CertificateAuthority

EXAMPLE = REPO_ROOT / "config" / "firehose.toml"
TRANSPORTS = ("mqtt", "mqtt+tls", "ws", "wss")
USER_PASSWORD = "firehose test password"
DEFAULT_USER = "firehose"
TOOL_TIMEOUT = 20.0


def slug(transport: str) -> str:
    """The transport's name as a topic level (`+` is a wildcard)."""
    return transport.replace("+", "-")


def write_toml(document: dict) -> str:
    """`document` (as tomllib reads it) back as TOML text: top-level keys, then tables and
    arrays of tables (one level of nesting, which is all a hydrant config has)."""
    scalars, sections = [], []
    for key, value in document.items():
        if isinstance(value, dict):
            sections.append(f"[{key}]")
            sections += [f"{k} = {toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for table in value:
                sections.append(f"[[{key}]]")
                sections += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        else:
            scalars.append(f"{key} = {toml_value(value)}")
    return "\n".join(scalars + sections) + "\n"


def find_shipped(path_text: str) -> Path | None:
    """The file a config path names, looked up as written, from the repository root, and
    in config/ by its name."""
    path = Path(path_text)
    for candidate in (path, REPO_ROOT / path, EXAMPLE.parent / path.name):
        if candidate.is_file():
            return candidate
    return None


def firehose_user(acl_text: str) -> str:
    """The user the ACL gives write access (the first `user` section), or the default."""
    match = re.search(r"^\s*user\s+(\S+)\s*$", acl_text, re.MULTILINE)
    return match.group(1) if match else DEFAULT_USER


@pytest.fixture
def firehose(tmp_path):
    """The example rewritten for this machine: (config text, user name, CA)."""
    if not EXAMPLE.is_file():
        pytest.fail(f"{EXAMPLE} does not exist (the issue 5 example config)", pytrace=False)
    document = tomllib.loads(EXAMPLE.read_text())
    listeners = document.get("listener", [])
    protocols = sorted(listener.get("protocol", "mqtt") for listener in listeners)
    assert protocols == sorted(TRANSPORTS), f"the example's listeners are {protocols}"

    ca = CertificateAuthority(tmp_path / "pki")
    server = ca.issue_server()
    acl_copies: dict[str, Path] = {}
    user = DEFAULT_USER
    for index, listener in enumerate(listeners):
        listener["bind"] = "127.0.0.1:0"
        if "certfile" in listener:
            listener["certfile"] = str(server.cert)
        if "keyfile" in listener:
            listener["keyfile"] = str(server.key)
        if "cafile" in listener:
            listener["cafile"] = str(ca.ca_file)
        if "acl_file" in listener:
            shipped = listener["acl_file"]
            if shipped not in acl_copies:
                source = find_shipped(shipped)
                copy = tmp_path / f"acl-{len(acl_copies)}"
                if source is not None:
                    shutil.copyfile(source, copy)
                else:  # a deployment path: the rules the issue describes
                    copy.write_text(f"topic read #\ntopic read $SYS/#\n"
                                    f"user {DEFAULT_USER}\ntopic readwrite #\n")
                acl_copies[shipped] = copy
            listener["acl_file"] = str(acl_copies[shipped])
            user = firehose_user(acl_copies[shipped].read_text())
        assert listener.get("allow_anonymous", True), f"listener #{index} refuses anonymous"
    passwords = tmp_path / "passwd"
    result = subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), user,
                             USER_PASSWORD], capture_output=True, text=True,
                            timeout=TOOL_TIMEOUT)
    assert result.returncode == 0, result.stderr
    for listener in listeners:
        if "password_file" in listener:
            listener["password_file"] = str(passwords)
    assert any("password_file" in listener for listener in listeners), \
        "the example sets no password_file"
    assert acl_copies, "the example sets no acl_file"
    # The example persists to /var/lib/hydrant: each test run gets a directory of its own.
    if "persistence" in document:
        document["persistence"]["persistence_location"] = str(tmp_path / "data")
    return write_toml(document), user, ca


def connect(clients, broker, transport: str, client_id: str, ca, **options):
    tls = {"ca_file": ca.ca_file} if transport in ("mqtt+tls", "wss") else {}
    return clients.connect_via(broker.port_of(transport), client_id, transport=transport,
                               **tls, **options)


def test_example_config_is_valid(firehose, tmp_path):
    text, _user, _ca = firehose
    config = tmp_path / "firehose-local.toml"
    config.write_text(text)
    result = subprocess.run([str(broker_binary()), "--check-config", "--config", str(config)],
                            capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    assert result.returncode == 0, result.stderr
    shipped = subprocess.run([str(broker_binary()), "--check-config", "--config",
                              str(EXAMPLE)], capture_output=True, text=True,
                             timeout=TOOL_TIMEOUT)
    assert shipped.returncode == 0, f"the shipped example does not check: {shipped.stderr}"


def test_firehose_end_to_end(broker_factory, clients, firehose):
    text, user, ca = firehose
    broker = broker_factory(text)

    readers = {}
    for transport in TRANSPORTS:
        for protocol, name in ((MQTT_3_1_1, "311"), (MQTT_5, "5")):
            reader = connect(clients, broker, transport, f"reader-{transport}-{name}", ca,
                             protocol=protocol)
            codes = reader.subscribe_many([("#", 1), ("$SYS/#", 1)])
            assert all(code < 0x80 for code in codes), (
                f"anonymous read refused on {transport} (MQTT {name}): {codes}")
            readers[(transport, name)] = reader

    # Anonymous writes are dropped on every listener (MQTT 5 QoS 1: "not authorized").
    for transport in TRANSPORTS:
        anonymous = connect(clients, broker, transport, f"anon-writer-{transport}", ca,
                            protocol=MQTT_5)
        assert anonymous.publish(f"firehose/anon/{slug(transport)}", b"nope", qos=1) == 0x87
        legacy = connect(clients, broker, transport, f"anon-writer-311-{transport}", ca)
        legacy.publish(f"firehose/anon/{slug(transport)}", b"nope", qos=1)
        legacy.publish(f"firehose/anon/{slug(transport)}", b"nope", qos=0, retain=True)
    for reader in readers.values():
        reader.expect_no_message(0.2)

    # The user writes from every listener; every anonymous reader receives each message.
    for transport in TRANSPORTS:
        writer = connect(clients, broker, transport, f"writer-{transport}", ca,
                         username=user, password=USER_PASSWORD)
        topic = f"firehose/events/{slug(transport)}"
        writer.publish(topic, f"event via {transport}".encode(), qos=1)
        for (reader_transport, name), reader in readers.items():
            received = reader.expect_message()
            assert (received.topic, received.payload) == (
                topic, f"event via {transport}".encode()), (reader_transport, name)

    # A wrong password is refused.
    refused = connect(clients, broker, "mqtt", "wrong-password", ca, username=user,
                      password="not it", expect_success=False)
    assert refused.refused
    assert refused.connack_reason.getName() == "Bad user name or password"
