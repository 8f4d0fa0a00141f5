"""Fixtures for hydrant's black-box tests with paho-mqtt.

- `broker`: a fresh hydrant (`--bind 127.0.0.1:0 --cores 2`) for each test, stopped with
  SIGTERM at teardown, which must make it exit 0.
- `broker_factory(config=None, cores=2, extra_args=())`: more brokers, e.g. one started with
  a TOML config written to a temporary file.
- `clients.connect(port, client_id, ...)`: connected `MqttClient`s over any listener
  transport (`mqtt`, `mqtt+tls`, `ws`, `wss`), released at teardown before the brokers stop;
  `clients.connect_via` is the same call.
"""

import itertools

import pytest

from hydrant_process import Broker, broker_binary
from paho_client import MqttClient

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


class Clients:
    """Connects paho clients and remembers them so teardown can release them all."""

    def __init__(self):
        self._all: list[MqttClient] = []

    def connect(self, port: int, client_id: str = "", **options) -> MqttClient:
        """A connected client; `options` are MqttClient's (protocol, clean_session, transport,
        username, ca_file, session_expiry, ...)."""
        client = MqttClient(port, client_id, **options)
        self._all.append(client)
        return client

    connect_via = connect
    """The same as `connect`: the name the transport and authentication tests use."""

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
