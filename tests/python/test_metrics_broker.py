"""The running broker's metrics, as an operator reads them: `/metrics` scraped over HTTP and
parsed by `prometheus_client`'s own text parser, `/healthz`, the listener's credentials, and a
slow subscriber (a paused reader) showing up among the slow clients with its queue and its
drops, with one log line when it starts dropping and one when it stops.

Each broker publishes its figures every second (`sys_interval = 1`); a scrape shows the last
completed round, so the tests poll (bounded) until the traffic they made is counted.
"""

import base64
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import parser

from hydrant_process import log_fields

SCRAPE_TIMEOUT = 5.0
ROUND_WAIT = 15.0

METRICS_CONFIG = """
[metrics]
sys_interval = 1
http_listener = "127.0.0.1:0"
"""


def http_get(port: int, path: str, authorization: str | None = None) -> tuple[int, str]:
    """Status and body of GET `path` on the metrics listener."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=SCRAPE_TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def scrape(port: int, authorization: str | None = None) -> dict:
    """The families of one scrape, by name (a counter's family name has no `_total`)."""
    status, body = http_get(port, "/metrics", authorization)
    assert status == 200, f"/metrics answered {status}: {body}"
    return {family.name: family for family in parser.text_string_to_metric_families(body)}


def total(families: dict, family: str, sample: str | None = None, **labels) -> float:
    """The sum over cores of the samples named `sample` (default: the family's name, plus
    `_total` for a counter) whose labels include `labels`."""
    found = families[family]
    name = sample or (family + "_total" if found.type == "counter" else family)
    return sum(
        s.value for s in found.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def scrape_until(port: int, ready, what: str, authorization: str | None = None) -> dict:
    """Scrapes until `ready(families)` holds; fails after ROUND_WAIT seconds."""
    deadline = time.monotonic() + ROUND_WAIT
    while True:
        families = scrape(port, authorization)
        if ready(families):
            return families
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen in /metrics within {ROUND_WAIT}s")
        time.sleep(0.2)


def test_scrape_parses_and_counts_the_traffic_exactly(broker_factory, clients):
    broker = broker_factory(METRICS_CONFIG)
    http = broker.port_of("http")
    status, body = http_get(http, "/healthz")
    assert (status, body) == (200, "ok\n")

    subscriber = clients.connect(broker.port, "count-sub")
    assert subscriber.subscribe("count/#", qos=0) == 0
    publisher = clients.connect(broker.port, "count-pub")
    payloads = [bytes([65 + n % 26]) * 100 for n in range(30)]
    publisher.publish_many("count/t", payloads, qos=1)
    assert len(subscriber.expect_messages(30)) == 30
    subscriber.expect_no_message()

    families = scrape_until(
        http,
        lambda f: total(f, "hydrant_publish_messages_sent") == 30,
        "30 PUBLISH packets sent",
    )
    # A later round must not count anything more: nothing else happened.
    time.sleep(1.5)
    families = scrape(http)
    assert len(families) > 30
    for family in families.values():
        assert family.documentation, family.name
    exact = {
        "hydrant_publish_messages_received": 30,
        "hydrant_publish_messages_sent": 30,
        "hydrant_publish_bytes_received": 3000,
        "hydrant_publish_bytes_sent": 3000,
        # CONNECT x2, SUBSCRIBE, 30 PUBLISH.
        "hydrant_messages_received": 33,
        # CONNACK x2, SUBACK, 30 PUBACK, 30 PUBLISH.
        "hydrant_messages_sent": 63,
        "hydrant_sockets_accepted": 2,
        "hydrant_connects": 2,
        "hydrant_clients_connected": 2,
        "hydrant_subscriptions": 1,
        "hydrant_publish_messages_dropped": 0,
        "hydrant_publish_messages_denied": 0,
    }
    seen = {name: total(families, name) for name in exact}
    assert seen == exact
    # Bytes on the wire: every PUBLISH is 2 + 2 + 7 ("count/t") + 100 bytes, plus its packet id
    # towards the broker (QoS 1).
    assert total(families, "hydrant_bytes_received") > 30 * 113
    assert total(families, "hydrant_bytes_sent") > 30 * 111
    assert total(families, "hydrant_cores") == 2

    histogram = "hydrant_auth_check_duration_seconds"
    assert total(families, histogram, histogram + "_count") == 2, "one check per CONNECT"
    delivery = "hydrant_publish_delivery_latency_seconds"
    timed = total(families, delivery, delivery + "_count")
    assert 1 <= timed <= 30, f"{timed} timed deliveries"
    assert total(families, delivery, delivery + "_sum") < timed * 1.0
    lag = "hydrant_event_loop_lag_seconds"
    assert total(families, lag, lag + "_count") > 0
    persistence = "hydrant_persistence_sync_duration_seconds"
    assert total(families, persistence, persistence + "_count") == 0, "persistence is off"


def test_persistence_syncs_are_timed(broker_factory, clients, tmp_path):
    """With `sync = "always"` every retained QoS 1 publish is on disk before its PUBACK, so
    each acknowledged one costs at least one timed `fdatasync` (group commit may share one
    between publishes that arrive together, never more than one per publish here: the
    publisher waits for each PUBACK)."""
    store = tmp_path / "store"
    broker = broker_factory(
        METRICS_CONFIG
        + f"""
[persistence]
persistence = true
persistence_location = "{store}"
sync = "always"
"""
    )
    http = broker.port_of("http")
    publisher = clients.connect(broker.port, "sync-pub")
    for n in range(5):
        publisher.publish(f"kept/{n}", b"state", qos=1, retain=True)
    histogram = "hydrant_persistence_sync_duration_seconds"
    families = scrape_until(
        http,
        lambda f: total(f, histogram, histogram + "_count") >= 5,
        "five timed syncs",
    )
    count = total(families, histogram, histogram + "_count")
    assert total(families, histogram, histogram + "_sum") < count * 10.0
    buckets = [s for s in families[histogram].samples if s.name == histogram + "_bucket"]
    assert buckets, "the histogram has buckets"


def test_credentials_guard_metrics_but_not_health(broker_factory):
    broker = broker_factory(METRICS_CONFIG + 'http_username = "prom"\nhttp_password = "s3cret"\n')
    http = broker.port_of("http")
    assert http_get(http, "/metrics")[0] == 401
    assert http_get(http, "/metrics", basic("prom", "wrong"))[0] == 401
    assert http_get(http, "/metrics", basic("other", "s3cret"))[0] == 401
    families = scrape(http, basic("prom", "s3cret"))
    assert "hydrant_build_info" in families
    assert http_get(http, "/healthz") == (200, "ok\n")
    assert http_get(http, "/nothing-here")[0] == 404


def test_bearer_token_guards_metrics(broker_factory):
    broker = broker_factory(METRICS_CONFIG + 'http_bearer_token = "t0ken"\n')
    http = broker.port_of("http")
    assert http_get(http, "/metrics", "Bearer nope")[0] == 401
    assert "hydrant_cores" in scrape(http, "Bearer t0ken")


def test_no_http_listener_by_default(broker_factory):
    broker = broker_factory("[metrics]\nsys_interval = 1\n")
    assert "http" not in broker.ports
    assert "(http)" not in broker.stdout()


@pytest.mark.timeout(120)
def test_a_paused_reader_is_listed_with_its_queue_and_drops(broker_factory, clients):
    broker = broker_factory(METRICS_CONFIG + "[limits]\nmax_queued_messages = 20\n")
    http = broker.port_of("http")
    slow = clients.connect(broker.port, "slow-reader")
    assert slow.subscribe("firehose/#", qos=0) == 0
    slow.stall()
    publisher = clients.connect(broker.port, "flood")

    mark = broker.log_mark()
    payload = b"x" * 2048
    sent = 0
    started = None
    while started is None and sent < 20000:
        publisher.publish_many("firehose/t", [payload] * 250, qos=0)
        sent += 250
        try:
            started = broker.wait_for_log("dropping messages for slow client", 0.2, since=mark)
        except AssertionError:
            started = None
    assert started is not None, f"no drop after {sent} messages"
    assert log_fields(started)["client_id"] == "slow-reader"
    assert "WARN" in started

    def slow_listed(families):
        dropped = total(families, "hydrant_slow_client_dropped_messages",
                        client_id="slow-reader")
        queued = total(families, "hydrant_slow_client_queued_messages",
                       client_id="slow-reader")
        return dropped > 0 and queued >= 20

    # The kernel keeps growing the stalled socket's buffers for a while (several MiB on
    # loopback), so the first drops may come before they are full and the broker's queue may
    # drain into them again: go on flooding until the kernel buffers are full, the broker's
    # own queue for the reader (20 messages) stays full and its drops show.
    deadline = time.monotonic() + ROUND_WAIT * 2
    while True:
        families = scrape(http)
        if slow_listed(families):
            break
        assert time.monotonic() < deadline, "the paused reader not listed with a full queue and drops"
        publisher.publish_many("firehose/t", [payload] * 250, qos=0)
        time.sleep(0.3)
    listed = {s.labels["client_id"]
              for s in families["hydrant_slow_client_queued_messages"].samples}
    assert listed == {"slow-reader"}, "clients with nothing queued or lost are not listed"
    assert total(families, "hydrant_publish_messages_dropped",
                 reason="connection_queue_full") > 0

    # Nothing more is published: the episode ends (one line, a second or so later).
    stopped = broker.wait_for_log("client stopped dropping messages", 10.0, since=mark)
    fields = log_fields(stopped)
    assert fields["client_id"] == "slow-reader"
    episode = int(fields["dropped"])
    assert episode > 0
    assert len([line for line in broker.log_lines()[mark:]
                if "dropping messages for slow client" in line]) == 1, "one line per episode"

    # Its oldest queued message keeps ageing while it does not read; the drops it suffered
    # are the episode's.
    def aged(families):
        age = total(families, "hydrant_slow_client_oldest_queued_seconds",
                    client_id="slow-reader")
        return age >= 1.0
    families = scrape_until(http, aged, "the paused reader's oldest message a second old")
    assert total(families, "hydrant_slow_client_dropped_messages",
                 client_id="slow-reader") == episode
    assert total(families, "hydrant_publish_messages_dropped") == episode
