"""MQTT over TLS (`protocol = "mqtt+tls"`) with certificates the tests make themselves, seen
from Python's ssl module through paho-mqtt: TLS 1.2 and 1.3, every private key format the
contract names, a chain with an intermediate, client certificates (optional, required, and
their CN as the user name for the ACL), and a clear start-up error for bad files."""

import ssl
import subprocess

import pytest

from hydrant_process import broker_binary, listener_toml
from paho_client import MQTT_3_1_1, MQTT_5
from tls_material import KEY_FORMATS, CertificateAuthority

STARTUP_FAILURE_TIMEOUT = 15.0


@pytest.fixture
def ca(tmp_path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki")


def tls_config(server, **tls_keys) -> str:
    """A plain listener (the `--bind` one, without access rules) and a TLS listener."""
    return listener_toml("mqtt") + listener_toml(
        "mqtt+tls", certfile=server.cert, keyfile=server.key, **tls_keys)


def assert_delivered(publisher, subscriber, topic: str, payload: bytes) -> None:
    """`publisher` publishes at QoS 1; `subscriber` (already subscribed) receives it intact."""
    publisher.publish(topic, payload, qos=1)
    received = subscriber.expect_message()
    assert (received.topic, received.payload) == (topic, payload)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls1.2", "tls1.3"])
def test_tls_version_serves_mqtt_across_listeners(broker_factory, clients, ca, version):
    broker = broker_factory(tls_config(ca.issue_server()))
    tls_port = broker.port_of("mqtt+tls")
    secure = clients.connect_via(tls_port, f"tls-{version.name}", transport="mqtt+tls",
                                 ca_file=ca.ca_file, tls_version=version)
    assert secure.tls_version() == version.name.replace("_", ".")
    assert dict(item[0] for item in secure.peer_certificate()["subject"])["commonName"] \
        == "localhost"
    plain = clients.connect(broker.port, "plain-peer")

    assert secure.subscribe("tls/in", qos=1) == 1
    assert plain.subscribe("tls/out", qos=1) == 1
    assert_delivered(plain, secure, "tls/in", b"to the TLS client")
    assert_delivered(secure, plain, "tls/out", b"from the TLS client")


def test_tls_listener_speaks_mqtt_5(broker_factory, clients, ca):
    broker = broker_factory(tls_config(ca.issue_server()))
    secure = clients.connect_via(broker.port_of("mqtt+tls"), "tls-v5", transport="mqtt+tls",
                                 protocol=MQTT_5, ca_file=ca.ca_file)
    assert secure.subscribe_many([("tls/v5", 1)]) == [1]
    assert_delivered(secure, secure, "tls/v5", b"v5 over TLS")


@pytest.mark.parametrize("key_format", KEY_FORMATS)
def test_server_key_in_each_pem_format(broker_factory, clients, ca, key_format):
    broker = broker_factory(tls_config(ca.issue_server(key_format=key_format)))
    secure = clients.connect_via(broker.port_of("mqtt+tls"), f"key-{key_format}",
                                 transport="mqtt+tls", ca_file=ca.ca_file)
    secure.subscribe("keys/check", qos=1)
    assert_delivered(secure, secure, "keys/check", key_format.encode())


def test_chain_with_intermediate_verifies_against_the_root(broker_factory, clients, tmp_path):
    ca = CertificateAuthority(tmp_path / "chain", name="chain root", intermediate=True)
    broker = broker_factory(tls_config(ca.issue_server()))
    secure = clients.connect_via(broker.port_of("mqtt+tls"), "chained", transport="mqtt+tls",
                                 ca_file=ca.ca_file)
    secure.subscribe("chain/check", qos=1)
    assert_delivered(secure, secure, "chain/check", b"leaf + intermediate")


def test_plain_mqtt_on_the_tls_port_gets_no_connack(broker_factory, clients, ca):
    broker = broker_factory(tls_config(ca.issue_server()))
    tls_port = broker.port_of("mqtt+tls")
    plain_on_tls = clients.connect_via(tls_port, "no-tls", transport="mqtt",
                                       expect_success=False)
    assert plain_on_tls.refused
    assert plain_on_tls.connack_reason is None, "a CONNACK came back in clear text"
    secure = clients.connect_via(tls_port, "after-garbage", transport="mqtt+tls",
                                 ca_file=ca.ca_file)
    secure.subscribe("still/works", qos=1)
    assert_delivered(secure, secure, "still/works", b"yes")


def test_required_client_certificate(broker_factory, clients, ca, tmp_path):
    broker = broker_factory(tls_config(ca.issue_server(), cafile=ca.ca_file,
                                       require_certificate=True))
    tls_port = broker.port_of("mqtt+tls")

    without = clients.connect_via(tls_port, "no-cert", transport="mqtt+tls",
                                  ca_file=ca.ca_file, expect_success=False)
    assert without.refused, "a client without a certificate was accepted"

    stranger_ca = CertificateAuthority(tmp_path / "stranger", name="stranger CA")
    foreign = clients.connect_via(tls_port, "foreign-cert", transport="mqtt+tls",
                                  ca_file=ca.ca_file,
                                  client_cert=stranger_ca.issue_client("mallory"),
                                  expect_success=False)
    assert foreign.refused, "a certificate from an unknown CA was accepted"

    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        member = clients.connect_via(tls_port, f"with-cert-{version.name}",
                                     transport="mqtt+tls", ca_file=ca.ca_file,
                                     client_cert=ca.issue_client("alice"), tls_version=version)
        member.subscribe("mtls/check", qos=1)
        assert_delivered(member, member, "mtls/check", version.name.encode())
    broker.wait_for_connect("with-cert-TLSv1_3")


def test_optional_client_certificate_is_verified_when_sent(broker_factory, clients, ca,
                                                           tmp_path):
    broker = broker_factory(tls_config(ca.issue_server(), cafile=ca.ca_file,
                                       require_certificate=False))
    tls_port = broker.port_of("mqtt+tls")
    clients.connect_via(tls_port, "optional-none", transport="mqtt+tls", ca_file=ca.ca_file)
    clients.connect_via(tls_port, "optional-good", transport="mqtt+tls", ca_file=ca.ca_file,
                        client_cert=ca.issue_client("bob"))
    stranger_ca = CertificateAuthority(tmp_path / "stranger", name="stranger CA")
    foreign = clients.connect_via(tls_port, "optional-foreign", transport="mqtt+tls",
                                  ca_file=ca.ca_file,
                                  client_cert=stranger_ca.issue_client("mallory"),
                                  expect_success=False)
    assert foreign.refused, "an optional certificate from an unknown CA was accepted"


def test_certificate_cn_is_the_user_name_for_the_acl(broker_factory, clients, ca, tmp_path):
    acl = tmp_path / "acl"
    acl.write_text(
        "user meter-1\n"
        "topic write meters/meter-1/#\n"
        "topic read commands/meter-1/#\n"
        "user admin\n"
        "topic readwrite #\n"
    )
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "admin", "admin-secret"],
                   check=True, capture_output=True, timeout=20)
    broker = broker_factory(tls_config(
        ca.issue_server(), cafile=ca.ca_file, require_certificate=True,
        use_identity_as_username=True, acl_file=acl, password_file=passwords))
    tls_port = broker.port_of("mqtt+tls")
    observer = clients.connect(broker.port, "observer")
    observer.subscribe("#", qos=1)
    meter_cert = ca.issue_client("meter-1")

    # No user name at all: the CN is the user, and no password is asked for.
    meter = clients.connect_via(tls_port, "meter-by-cert", transport="mqtt+tls",
                                ca_file=ca.ca_file, client_cert=meter_cert)
    assert meter.subscribe_many([("commands/meter-1/#", 1), ("#", 1)]) == [1, 0x80]
    meter.publish("meters/meter-1/kwh", b"42", qos=1)
    assert observer.expect_message().topic == "meters/meter-1/kwh"
    meter.publish("meters/meter-2/kwh", b"forged", qos=1)
    observer.expect_no_message()

    # Claiming another user name (with a wrong password) changes nothing: the CN wins.
    impostor = clients.connect_via(tls_port, "meter-claims-admin", transport="mqtt+tls",
                                   ca_file=ca.ca_file, client_cert=meter_cert,
                                   username="admin", password="wrong", protocol=MQTT_5)
    assert impostor.subscribe_many([("#", 1)]) == [0x87]
    assert impostor.publish("meters/meter-2/kwh", b"forged again", qos=1) == 0x87
    observer.expect_no_message()
    assert impostor.publish("meters/meter-1/kwh", b"43", qos=1) == 0
    assert observer.expect_message().payload == b"43"


def run_until_exit(config_path) -> subprocess.CompletedProcess:
    """Runs the broker with a config that must not start; fails if it is still up."""
    try:
        return subprocess.run(
            [str(broker_binary()), "--bind", "127.0.0.1:0", "--cores", "1",
             "--config", str(config_path)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=STARTUP_FAILURE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as timeout:
        raise AssertionError(
            f"hydrant was still running {STARTUP_FAILURE_TIMEOUT}s after start with a broken "
            f"TLS file; stdout:\n{timeout.stdout}\nstderr:\n{timeout.stderr}"
        ) from None


BAD_PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"

BROKEN_FILES = ["missing-certfile", "missing-keyfile", "empty-certfile", "garbage-certfile",
                "garbage-keyfile", "mismatched-key", "missing-cafile", "garbage-cafile"]


@pytest.mark.parametrize("case", BROKEN_FILES)
def test_startup_fails_naming_the_bad_file(ca, tmp_path, case):
    server = ca.issue_server()
    other = ca.issue_server(stem="other")
    files = {"certfile": server.cert, "keyfile": server.key, "cafile": ca.ca_file}
    bad = {
        "missing-certfile": ("certfile", tmp_path / "no-such-cert.pem", None),
        "missing-keyfile": ("keyfile", tmp_path / "no-such-key.pem", None),
        "empty-certfile": ("certfile", tmp_path / "empty-cert.pem", ""),
        "garbage-certfile": ("certfile", tmp_path / "garbage-cert.pem", BAD_PEM_CERTIFICATE),
        "garbage-keyfile": ("keyfile", tmp_path / "garbage-key.pem", "not a key\n"),
        "mismatched-key": ("keyfile", other.key, None),
        "missing-cafile": ("cafile", tmp_path / "no-such-ca.pem", None),
        "garbage-cafile": ("cafile", tmp_path / "garbage-ca.pem", BAD_PEM_CERTIFICATE),
    }
    key, path, content = bad[case]
    if content is not None:
        path.write_text(content)
    files[key] = path
    config = tmp_path / "broken.toml"
    config.write_text(listener_toml("mqtt") + listener_toml(
        "mqtt+tls", require_certificate=True, **files))

    result = run_until_exit(config)
    assert result.returncode != 0, f"started anyway; stderr:\n{result.stderr}"
    assert "hydrant: ready" not in result.stdout
    assert path.name in result.stderr, (
        f"the error does not name {path.name}; stderr:\n{result.stderr}")
    assert "panicked" not in result.stderr, result.stderr


def test_tls_listener_requires_a_certificate_and_key(tmp_path):
    config = tmp_path / "no-cert.toml"
    config.write_text(listener_toml("mqtt") + listener_toml("mqtt+tls"))
    result = run_until_exit(config)
    assert result.returncode != 0, f"started anyway; stderr:\n{result.stderr}"
    assert "certfile" in result.stderr, result.stderr


@pytest.mark.parametrize("protocol", [MQTT_3_1_1, MQTT_5], ids=["3.1.1", "5"])
def test_tls_clients_and_plain_clients_share_retained_messages(broker_factory, clients, ca,
                                                              protocol):
    broker = broker_factory(tls_config(ca.issue_server()))
    plain = clients.connect(broker.port, "retain-writer")
    plain.publish("retained/tls", b"kept", qos=1, retain=True)
    secure = clients.connect_via(broker.port_of("mqtt+tls"), "retain-reader",
                                 transport="mqtt+tls", ca_file=ca.ca_file, protocol=protocol)
    secure.subscribe_many([("retained/tls", 1)])
    received = secure.expect_message()
    assert (received.topic, received.payload, received.retain) == ("retained/tls", b"kept", True)
