#!/usr/bin/env bash
# Measures hydrant against Mosquitto on this machine with the built-in load generator:
# the same scenarios against each broker, alternating, each run against a freshly started
# broker on a loopback port, and prints one table with the ratio hydrant/Mosquitto per figure.
#
#   scripts/bench-vs-mosquitto.sh                 # one round, 8 s per measured run (~6 min)
#   ROUNDS=2 DURATION=10s scripts/bench-vs-mosquitto.sh
#   SCENARIOS="fanout-qos0 light-qos1" scripts/bench-vs-mosquitto.sh
#   PIN_CORES=true scripts/bench-vs-mosquitto.sh  # hydrant's executors pinned (pin_cores)
#
# Installs Debian's mosquitto if it is missing. Results (per-run JSON and .hgrm files, the
# table as summary.md) go to target/bench/<date>/, or OUT=DIR. Every run is bounded in time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# Where cargo puts the binaries (CARGO_TARGET_DIR is honoured).
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"

ROUNDS="${ROUNDS:-1}"
DURATION="${DURATION:-8s}"
WARMUP="${WARMUP:-2s}"
CORES="${CORES:-2}"
PIN_CORES="${PIN_CORES:-false}"
case "$PIN_CORES" in
    true | false) ;;
    *)
        echo "PIN_CORES must be true or false, not '$PIN_CORES'" >&2
        exit 2
        ;;
esac
OUT="${OUT:-target/bench/$(date -u +%Y%m%dT%H%M%SZ)}"
HYDRANT_PORT="${HYDRANT_PORT:-18883}"
MOSQUITTO_PORT="${MOSQUITTO_PORT:-18884}"
RUN_TIMEOUT=120

# name | generator arguments (everything but host, port and outputs)
ALL_SCENARIOS=(
    "fanout-qos0|fanout --publishers 1 --subscribers 100 --qos 0 --size 64 --rate 0"
    "fanout-qos1|fanout --publishers 1 --subscribers 100 --qos 1 --size 64 --rate 0 --window 64"
    "fanin-qos0|fanin --publishers 100 --subscribers 1 --qos 0 --size 64 --rate 0"
    "light-qos1|fanout --publishers 1 --subscribers 100 --qos 1 --size 1024 --rate 500"
    # The same light load read by two generator threads: one thread reads the 100 deliveries
    # of each publish one after the other, and its own queueing shows in the latency.
    "light-qos1-gen2|fanout --publishers 1 --subscribers 100 --qos 1 --size 1024 --rate 500 --cores 2"
    "churn|churn --publishers 10 --subscribers 10 --qos 0 --size 64 --rate 0"
    "conns|conns --connections 5000 --connect-rate 0 --duration 3s"
    "firehose|firehose --publishers 20 --rate 50"
)

# shellcheck source=scripts/bench-common.sh
. "$ROOT/scripts/bench-common.sh"

BROKER_PID=""
stop_broker() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$BROKER_PID" 2>/dev/null || true
    fi
    BROKER_PID=""
}
trap stop_broker EXIT

start_broker() {
    local broker=$1 log=$2
    case "$broker" in
        hydrant)
            # Defaults but for connection log lines, off for both brokers (as on the firehose).
            printf 'connection_messages = false\npin_cores = %s\n' "$PIN_CORES" >"$OUT/hydrant.toml"
            "$BIN_DIR/hydrant" --config "$OUT/hydrant.toml" \
                --bind "127.0.0.1:$HYDRANT_PORT" --cores "$CORES" >"$log" 2>&1 &
            BROKER_PID=$!
            wait_port "$HYDRANT_PORT"
            ;;
        mosquitto)
            write_mosquitto_conf "$OUT/mosquitto.conf" "$MOSQUITTO_PORT"
            mosquitto -c "$OUT/mosquitto.conf" >"$log" 2>&1 &
            BROKER_PID=$!
            wait_port "$MOSQUITTO_PORT"
            ;;
    esac
}

install_mosquitto
say "building release binaries"
cargo build --release -q -p hydrant -p hydrant-loadtest
mkdir -p "$OUT"
# Thousands of connections need descriptors on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

selected=()
for entry in "${ALL_SCENARIOS[@]}"; do
    name="${entry%%|*}"
    if [ -z "${SCENARIOS:-}" ] || [[ " $SCENARIOS " == *" $name "* ]]; then
        selected+=("$entry")
    fi
done

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r)"
    echo "hydrant: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), --cores $CORES, pin_cores = $PIN_CORES; mosquitto: $(mosquitto -h 2>&1 | head -n 1 | sed 's/mosquitto version //')"
    echo "command: ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP PIN_CORES=$PIN_CORES scripts/bench-vs-mosquitto.sh"
} >"$OUT/machine.txt"

for round in $(seq 1 "$ROUNDS"); do
    for entry in "${selected[@]}"; do
        name="${entry%%|*}"
        args="${entry#*|}"
        for broker in hydrant mosquitto; do
            port=$HYDRANT_PORT
            [ "$broker" = mosquitto ] && port=$MOSQUITTO_PORT
            base="$OUT/r$round-$name-$broker"
            start_broker "$broker" "$base.broker.log"
            timing=(--warmup "$WARMUP" --duration "$DURATION")
            [[ "$args" == conns* ]] && timing=()
            say "round $round: $name against $broker"
            # shellcheck disable=SC2086
            if ! timeout "$RUN_TIMEOUT" "$BIN_DIR/hydrant-loadtest" $args "${timing[@]}" \
                --port "$port" --broker-pid "$BROKER_PID" --quiet \
                --json "$base.json" --hgrm "$base.hgrm" >"$base.txt" 2>&1; then
                say "  run failed (see $base.txt)"
            fi
            stop_broker
        done
    done
done

python3 - "$OUT" <<'PY'
import glob, json, os, statistics, sys

out = sys.argv[1]
runs = {}
for path in sorted(glob.glob(os.path.join(out, "r*-*.json"))):
    stem = os.path.basename(path)[:-5]
    _, rest = stem.split("-", 1)
    name, broker = rest.rsplit("-", 1)
    with open(path) as f:
        runs.setdefault((name, broker), []).append(json.load(f))

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def figure(reports, get):
    values = []
    for r in reports:
        try:
            values.append(get(r))
        except (KeyError, TypeError):
            values.append(None)
    return median(values)

MIB = 1024 * 1024
figures = [
    ("delivered msg/s", lambda r: r["messages"]["received_per_s"], "higher"),
    ("lost %", lambda r: r["messages"]["loss_percent"], "lower"),
    ("latency p50 ms", lambda r: r["latency"]["p50_ms"], "lower"),
    ("latency p99 ms", lambda r: r["latency"]["p99_ms"], "lower"),
    ("broker peak RSS MiB", lambda r: r["broker_usage"]["peak_rss_bytes"] / MIB, "lower"),
    ("broker CPU s", lambda r: r["broker_usage"]["cpu_seconds"], "lower"),
]
special = {
    "churn": [("connections/s", lambda r: r["messages"]["sent_per_s"], "higher")],
    "conns": [
        ("connects/s", lambda r: r["conns"]["connects_per_s"], "higher"),
        ("broker bytes/connection", lambda r: r["conns"]["broker_bytes_per_connection"], "lower"),
        ("broker peak RSS MiB", lambda r: r["broker_usage"]["peak_rss_bytes"] / MIB, "lower"),
    ],
}

def fmt(v):
    if v is None:
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"

lines = [open(os.path.join(out, "machine.txt")).read().strip(), "",
         "| scenario | figure | hydrant | mosquitto | hydrant/mosquitto | better is |",
         "|---|---|---|---|---|---|"]
names = []
for (name, _broker) in runs:
    if name not in names:
        names.append(name)
for name in names:
    rows = special.get(name, [])
    if name != "conns":
        rows = rows + figures
    for label, get, better in rows:
        h = figure(runs.get((name, "hydrant"), []), get)
        m = figure(runs.get((name, "mosquitto"), []), get)
        ratio = f"{h / m:.2f}" if h is not None and m not in (None, 0) else "n/a"
        lines.append(f"| {name} | {label} | {fmt(h)} | {fmt(m)} | {ratio} | {better} |")
table = "\n".join(lines)
with open(os.path.join(out, "summary.md"), "w") as f:
    f.write(table + "\n")
print(table)
PY
say "results in $OUT"
