#!/usr/bin/env bash
# Measures what pinning hydrant's executors to CPUs changes on this machine: one generator
# scenario against hydrant with `pin_cores = true`, hydrant unpinned (the default) and
# Mosquitto, in rotation, each run against a freshly started broker; one line per run.
#
#   scripts/ab-placement.sh                      # churn, 3 rotations of 5 s (about 2 min)
#   ROTATIONS=2 scripts/ab-placement.sh fanout --publishers 1 --subscribers 100 --qos 0 --size 64 --rate 0
#
# Installs Debian's mosquitto if it is missing. Per-run JSON and logs go to
# OUT (default target/bench/placement-<date>/). Every run is bounded in time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"

ROTATIONS="${ROTATIONS:-3}"
DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-1s}"
CORES="${CORES:-2}"
OUT="${OUT:-target/bench/placement-$(date -u +%Y%m%dT%H%M%SZ)}"
HYDRANT_PORT="${HYDRANT_PORT:-18885}"
MOSQUITTO_PORT="${MOSQUITTO_PORT:-18886}"
# shellcheck source=scripts/bench-common.sh
. "$ROOT/scripts/bench-common.sh"
if [ "$#" -eq 0 ]; then
    set -- churn --publishers 10 --subscribers 10 --qos 0 --size 64 --rate 0
fi

install_mosquitto
cargo build --release -q -p hydrant -p hydrant-loadtest
mkdir -p "$OUT"
write_mosquitto_conf "$OUT/mosquitto.conf" "$MOSQUITTO_PORT"
printf 'connection_messages = false\npin_cores = true\n' >"$OUT/pinned.toml"
printf 'connection_messages = false\npin_cores = false\n' >"$OUT/unpinned.toml"
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) hydrant $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "--cores $CORES; generator: $* --warmup $WARMUP --duration $DURATION" | tee "$OUT/command.txt"

for rotation in $(seq 1 "$ROTATIONS"); do
    for broker in pinned unpinned mosquitto; do
        label="r$rotation-$broker"
        if [ "$broker" = mosquitto ]; then
            port=$MOSQUITTO_PORT
            mosquitto -c "$OUT/mosquitto.conf" >"$OUT/$label.log" 2>&1 &
        else
            port=$HYDRANT_PORT
            "$BIN_DIR/hydrant" --config "$OUT/$broker.toml" --bind "127.0.0.1:$port" \
                --cores "$CORES" >"$OUT/$label.log" 2>&1 &
        fi
        pid=$!
        wait_port "$port"
        if ! timeout 120 "$BIN_DIR/hydrant-loadtest" "$@" --warmup "$WARMUP" --duration "$DURATION" \
            --port "$port" --broker-pid "$pid" --quiet --json "$OUT/$label.json" >"$OUT/$label.txt" 2>&1; then
            echo "$label: the generator failed, see $OUT/$label.txt" >&2
        fi
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        [ -f "$OUT/$label.json" ] || continue
        python3 - "$OUT/$label.json" "$label" <<'PY'
import json
import sys

run = json.load(open(sys.argv[1]))
messages, latency = run["messages"], run.get("latency") or {}
connect = (run.get("connect") or {}).get("latency") or {}
def ms(figure):
    return "n/a" if figure is None else f"{figure:.3f}"
# Nothing sent in the measured window (a broker that stopped reading its publisher): no loss
# can be counted.
lost = f"{messages['loss_percent']:5.1f}%" if messages["sent"] else "  n/a "
print(f"{sys.argv[2]:14} sent/s {messages['sent_per_s']:>10,.0f}  received/s {messages['received_per_s']:>11,.0f}"
      f"  lost {lost}  latency p50 {ms(latency.get('p50_ms'))} p99 {ms(latency.get('p99_ms'))} ms"
      f"  connect p50 {ms(connect.get('p50_ms'))} ms  broker CPU {run['broker_usage']['cpu_seconds']:.2f} s")
PY
    done
done
echo "results in $OUT"
