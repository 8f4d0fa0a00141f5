"""Fixtures for hydrant's black-box tests with paho-mqtt.

- `broker`: a fresh hydrant (`--bind 127.0.0.1:0 --cores 2`) for each test, stopped with
  SIGTERM at teardown, which must make it exit 0.
- `broker_factory(config=None, cores=2, extra_args=())`: more brokers, e.g. one started with
  a TOML config written to a temporary file.
- `clients.connect(port, client_id, ...)`: connected `MqttClient`s, released at teardown
  before the brokers stop.
- `clients.connect_via(port, client_id, transport=..., ...)`: a `TransportClient`, the same
  client over any listener transport (`mqtt`, `mqtt+tls`, `ws`, `wss`) with a user name,
  password, CA file, client certificate or pinned TLS version.
"""

import itertools
import queue
import ssl
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from hydrant_process import Broker, broker_binary
from paho_client import ACK_TIMEOUT, MQTT_3_1_1, MQTT_5, MqttClient, Will, _PromptClient

LOG_TAIL_ON_FAILURE = 200


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remembers each phase's outcome so fixtures can print broker logs for failed tests."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def broker_factory(request, tmp_path):
    """Starts brokers on demand; stops each at teardown and asserts a clean exit."""
    started: list[Broker] = []
    config_names = (f"hydrant-{n}.toml" for n in itertools.count())

    def start(config: str | None = None, cores: int = 2, extra_args: tuple = ()) -> Broker:
        config_path = None
        if config is not None:
            config_path = tmp_path / next(config_names)
            config_path.write_text(config)
        try:
            binary = broker_binary()
        except AssertionError as missing:
            pytest.fail(str(missing), pytrace=False)
        broker = Broker(binary, cores=cores, config=config_path, extra_args=extra_args)
        started.append(broker)
        return broker

    yield start

    call_report = getattr(request.node, "report_call", None)
    failed = call_report is not None and call_report.failed
    errors = []
    for broker in started:
        try:
            broker.stop(check=True)
        except AssertionError as error:
            errors.append(str(error))
        if failed:
            tail = broker.log_lines()[-LOG_TAIL_ON_FAILURE:]
            print(f"---- hydrant log (port {broker.port}, last {len(tail)} lines) ----")
            print("\n".join(tail))
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A hydrant with two cores on a free loopback port and the default configuration."""
    return broker_factory()


class TransportClient(MqttClient):
    """An `MqttClient` over any of hydrant's listener transports, with credentials.

    `transport` is the listener protocol: `mqtt`, `mqtt+tls`, `ws` (paho's websocket transport
    on `ws_path`) or `wss`. For TLS, `ca_file` verifies the broker (its certificate must name
    127.0.0.1), `client_cert` (an object with `cert` and `key` paths) is presented when given,
    and `tls_version` (an `ssl.TLSVersion`) pins both the lowest and highest version offered.
    `will` registers a will message.

    A connection the broker refuses before any CONNACK (a TLS handshake failure, a WebSocket
    upgrade answered with an HTTP error, a closed socket) is recorded in `connect_error` (the
    exception, or a description) when `expect_success=False`; a refusing CONNACK is recorded
    as by `MqttClient`. `refused` is true in either case.
    """

    def __init__(self, port: int, client_id: str = "", *, transport: str = "mqtt",
                 protocol: int = MQTT_3_1_1, clean_session: bool = True, keepalive: int = 60,
                 username: str | None = None, password: str | None = None,
                 ca_file=None, client_cert=None, tls_version: ssl.TLSVersion | None = None,
                 ws_path: str = "/mqtt", ws_headers: dict | None = None,
                 will: Will | None = None, expect_success: bool = True):
        if transport not in ("mqtt", "mqtt+tls", "ws", "wss"):
            raise ValueError(f"unknown transport {transport!r}")
        self.client_id = client_id
        self.protocol = protocol
        self.transport = transport
        self.messages: queue.Queue = queue.Queue()
        self.disconnected = threading.Event()
        self.disconnect_reason = None
        self.disconnect_properties = None
        self.connack_failure = False
        self.connack_reason = None
        self.connack_properties = None
        self.connect_error = None
        self.session_present = False
        self._state = threading.Condition()
        self._connected = False
        self._answered = False
        self._acks: dict[int, list[int]] = {}
        self._publish_reasons: dict[int, int] = {}
        self._client = _PromptClient(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if protocol == MQTT_5 else clean_session,
            protocol=protocol,
            transport="websockets" if transport in ("ws", "wss") else "tcp",
            reconnect_on_failure=False,
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_unsubscribe = self._on_unsubscribe
        self._client.on_publish = self._on_publish
        if username is not None:
            self._client.username_pw_set(username, password)
        if will is not None:
            self._client.will_set(will.topic, will.payload, will.qos, will.retain)
        if transport in ("ws", "wss"):
            self._client.ws_set_options(path=ws_path, headers=ws_headers)
        if transport in ("mqtt+tls", "wss"):
            context = ssl.create_default_context(
                cafile=None if ca_file is None else str(ca_file))
            if client_cert is not None:
                context.load_cert_chain(str(client_cert.cert), str(client_cert.key))
            if tls_version is not None:
                context.minimum_version = tls_version
                context.maximum_version = tls_version
            self._client.tls_set_context(context)
        try:
            if protocol == MQTT_5:
                self._client.connect("127.0.0.1", port, keepalive, clean_start=clean_session)
            else:
                self._client.connect("127.0.0.1", port, keepalive)
        except OSError as error:
            self.connect_error = error
            self.disconnected.set()
            if expect_success:
                raise AssertionError(
                    f"{client_id!r}: {transport} connection to port {port} failed: {error!r}"
                ) from error
            return
        self.connected_at = time.monotonic()
        self._client.loop_start()
        with self._state:
            if not self._state.wait_for(lambda: self._answered or self.disconnected.is_set(),
                                        ACK_TIMEOUT):
                raise AssertionError(f"{client_id!r}: no CONNACK within {ACK_TIMEOUT}s")
        if not self._answered and self.connect_error is None:
            self.connect_error = (
                f"connection closed before any CONNACK (reason {self.disconnect_reason})")
        if expect_success and not self._connected:
            raise AssertionError(
                f"{client_id!r}: {transport} connection closed before a successful CONNACK "
                f"(CONNACK {self.connack_reason}, disconnect {self.disconnect_reason}, "
                f"error {self.connect_error})"
            )

    @property
    def refused(self) -> bool:
        """Whether the broker refused the connection (any way) instead of accepting it."""
        return not self._connected

    def tls_version(self) -> str | None:
        """The TLS version the connection negotiated (`TLSv1.2`, `TLSv1.3`), or None."""
        sock = self._client.socket()
        version = getattr(sock, "version", None)
        return version() if callable(version) else None

    def peer_certificate(self) -> dict | None:
        """The broker's certificate as `ssl.SSLSocket.getpeercert()` returns it, or None."""
        sock = self._client.socket()
        getter = getattr(sock, "getpeercert", None)
        return getter() if callable(getter) else None


class Clients:
    """Connects paho clients and remembers them so teardown can release them all."""

    def __init__(self):
        self._all: list[MqttClient] = []

    def connect(self, port: int, client_id: str = "", **options) -> MqttClient:
        """A connected client; `options` are MqttClient's (protocol, clean_session, ...)."""
        client = MqttClient(port, client_id, **options)
        self._all.append(client)
        return client

    def connect_via(self, port: int, client_id: str = "", **options) -> TransportClient:
        """A `TransportClient` (any transport, credentials, TLS); see its options."""
        client = TransportClient(port, client_id, **options)
        self._all.append(client)
        return client

    def connect_on_each_core(self, broker, prefix: str, attempts: int = 40,
                             **options) -> dict[int, MqttClient]:
        """One connected client per broker core, found by connecting until every core has one.

        The kernel spreads connections over the cores' SO_REUSEPORT listeners by a hash of
        the source port, so a test cannot choose a core; the `client connected ... core=K`
        log line tells where each landed. Clients on an already covered core are closed.
        """
        placed: dict[int, MqttClient] = {}
        for attempt in range(attempts):
            client_id = f"{prefix}-{attempt}"
            client = self.connect(broker.port, client_id, **options)
            core = int(broker.wait_for_connect(client_id)["core"])
            if core in placed:
                client.disconnect()
            else:
                placed[core] = client
            if len(placed) == broker.cores:
                return placed
        raise AssertionError(
            f"{attempts} connections all landed on cores {sorted(placed)}, "
            f"expected every core of {broker.cores} to get one"
        )

    def close_all(self) -> None:
        for client in self._all:
            client.close()


@pytest.fixture
def clients(broker_factory):
    """The client factory; it depends on broker_factory so clients close before brokers stop."""
    factory = Clients()
    yield factory
    factory.close_all()
