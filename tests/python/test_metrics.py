"""hydrant's Prometheus exposition read by a parser we did not write.

The Rust test `exposition_of_an_aggregator_is_served` (tests/metrics_http.rs) scrapes the
metrics HTTP listener serving a sample aggregator (two cores, known counters, latency
histograms, a slow client whose id needs escaping) and, with HYDRANT_METRICS_EXPOSITION_OUT
set, writes the body it received. This test runs it that way and parses the text with
`prometheus_client`'s own text-format parser.
"""

import os
import subprocess
from pathlib import Path

import pytest

# Installed by scripts/install-test-deps.sh (tests/python/requirements.txt): a missing parser
# is a failure, never a skip.
from prometheus_client import parser

REPO_ROOT = Path(__file__).resolve().parents[2]
RUST_TEST = "exposition_of_an_aggregator_is_served"
SLOW_CLIENT_ONE = 'sensor "1"\\east\nline'


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """The families of the sample exposition, by name."""
    out = tmp_path_factory.mktemp("metrics") / "exposition.prom"
    env = dict(os.environ, HYDRANT_METRICS_EXPOSITION_OUT=str(out))
    cargo = os.environ.get("CARGO", "cargo")
    run = subprocess.run(
        [cargo, "test", "-q", "--test", "metrics_http", "--", "--exact", RUST_TEST],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, f"cargo test failed:\n{run.stdout}\n{run.stderr}"
    assert out.exists(), "the Rust test wrote no exposition"
    text = out.read_text()
    return {family.name: family for family in parser.text_string_to_metric_families(text)}


def samples(family, name=None):
    return [s for s in family.samples if name is None or s.name == name]


@pytest.mark.timeout(900)
def test_every_family_parses_with_help_and_type(families):
    assert len(families) > 30
    for family in families.values():
        assert family.documentation, family.name
        assert family.type in ("counter", "gauge", "histogram"), family.name


@pytest.mark.timeout(900)
def test_counters_sum_over_cores_to_the_traffic(families):
    received = families["hydrant_publish_messages_received"]
    assert received.type == "counter"
    by_core = {s.labels["core"]: s.value for s in samples(received, received.name + "_total")}
    assert by_core == {"0": 100.0, "1": 200.0}
    dropped = families["hydrant_publish_messages_dropped"]
    queue_full = [
        s.value
        for s in samples(dropped, dropped.name + "_total")
        if s.labels["reason"] == "connection_queue_full"
    ]
    assert sum(queue_full) == 15.0


@pytest.mark.timeout(900)
def test_gauges_per_core_and_replicated(families):
    connected = families["hydrant_clients_connected"]
    assert connected.type == "gauge"
    assert sum(s.value for s in connected.samples) == 9.0
    (retained,) = families["hydrant_retained_messages"].samples
    assert retained.labels == {} and retained.value == 12.0
    (maximum,) = families["hydrant_clients_maximum"].samples
    assert maximum.value == 9.0


@pytest.mark.timeout(900)
def test_histograms_are_cumulative_and_consistent(families):
    latency = families["hydrant_publish_delivery_latency_seconds"]
    assert latency.type == "histogram"
    for core in ("0", "1"):
        buckets = [
            s
            for s in samples(latency, latency.name + "_bucket")
            if s.labels["core"] == core
        ]
        bounds = [float(s.labels["le"]) for s in buckets]
        counts = [s.value for s in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == float("inf")
        assert counts == sorted(counts)
        (count,) = [
            s.value
            for s in samples(latency, latency.name + "_count")
            if s.labels["core"] == core
        ]
        (total,) = [
            s.value
            for s in samples(latency, latency.name + "_sum")
            if s.labels["core"] == core
        ]
        assert counts[-1] == count == 4.0
        scale = int(core) + 1
        assert total == pytest.approx((3 + 40 + 900 + 20_000) * scale / 1e6)


@pytest.mark.timeout(900)
def test_slow_client_ids_survive_escaping(families):
    queued = families["hydrant_slow_client_queued_messages"]
    by_client = {s.labels["client_id"]: s.value for s in queued.samples}
    assert by_client[SLOW_CLIENT_ONE] == 80.0
    assert len(by_client) == 2
