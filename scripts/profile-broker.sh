#!/usr/bin/env bash
# Profiles where hydrant's time goes under one load-generator scenario: builds hydrant and
# hydrant-loadtest in release, starts hydrant on a loopback port (connection log lines off, as
# scripts/bench-vs-mosquitto.sh runs it), runs the scenario against it while `perf record -g`
# samples the broker process, and writes the generator's report, the kernel/user split and
# perf's top entries to OUT.
#
#   scripts/profile-broker.sh fanin --publishers 100 --subscribers 1 --qos 0 --size 64
#   scripts/profile-broker.sh fanout --subscribers 100 --qos 1 --rate 500 --size 1024
#   scripts/profile-broker.sh run loadtest/scenarios/fanout-qos1.toml
#   OUT=/tmp/fanin.txt CORES=2 PORT=18885 scripts/profile-broker.sh fanin
#   CALL_GRAPH=dwarf scripts/profile-broker.sh fanin     # with callers of Rust functions
#
# Everything after the script name goes to hydrant-loadtest (the script adds --port,
# --broker-pid, --quiet and --json). OUT defaults to target/profile/<scenario>.txt; perf's data
# and the run's JSON report are kept beside it. CALL_GRAPH=fp (the default, `perf record -g`)
# gives kernel call chains only, as Rust release builds keep no frame pointers; dwarf unwinds
# user stacks too (bigger data, slower report). Installs Debian's linux-perf when `perf` is
# missing. Every step is bounded in time and every process it started is stopped on exit. If
# perf cannot sample the broker with kernel stacks here (kernel.perf_event_paranoid, no root),
# it says so and fails rather than write an empty or user-only profile.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# Where cargo puts the binaries (CARGO_TARGET_DIR is honoured).
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"

if [ "$#" -eq 0 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
fi

SCENARIO="$1"
NAME="$SCENARIO"
if [ "$SCENARIO" = "run" ] && [ "$#" -ge 2 ]; then
    NAME="$(basename "$2" .toml)"
fi
OUT="${OUT:-target/profile/$NAME.txt}"
PORT="${PORT:-18885}"
CORES="${CORES:-2}"
FREQ="${FREQ:-999}"
CALL_GRAPH="${CALL_GRAPH:-fp}"
RUN_TIMEOUT="${RUN_TIMEOUT:-300}"
BUILD_TIMEOUT="${BUILD_TIMEOUT:-1800}"
REPORT_TIMEOUT=300
STEM="${OUT%.txt}"
DATA="$STEM.perf.data"
JSON="$STEM.json"

say() { printf 'profile-broker: %s\n' "$*" >&2; }
fail() {
    say "$*"
    exit 1
}

WORK="$(mktemp -d)"
BROKER_PID=""
PERF_PID=""
GEN_PID=""

# Stops what this script started, each by its own id: the generator, perf (SIGINT, so it
# writes its data), then the broker (TERM, then KILL).
cleanup() {
    local status=$?
    if [ -n "$GEN_PID" ] && kill -0 "$GEN_PID" 2>/dev/null; then
        kill -TERM "$GEN_PID" 2>/dev/null || true
    fi
    if [ -n "$PERF_PID" ] && kill -0 "$PERF_PID" 2>/dev/null; then
        kill -INT "$PERF_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$PERF_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$PERF_PID" 2>/dev/null || true
    fi
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$BROKER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        fail "need root (or sudo) to run: $*"
    fi
}

# Installs Debian's linux-perf when no working perf is on PATH (idempotent).
install_perf() {
    if command -v perf >/dev/null 2>&1 && perf --version >/dev/null 2>&1; then
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || fail "perf is missing and apt-get is not here: install perf by hand"
    say "installing Debian's linux-perf"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$WORK/apt.log" 2>&1 ||
        { tail -n 30 "$WORK/apt.log" >&2; fail "apt-get update failed"; }
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        linux-perf >"$WORK/apt.log" 2>&1 ||
        { tail -n 30 "$WORK/apt.log" >&2; fail "apt-get install linux-perf failed"; }
    perf --version >/dev/null 2>&1 || fail "perf still does not run after installing linux-perf"
}

# perf as root when it must be: root runs it directly, others through sudo when sudo works
# without a password, else as themselves (and the probe below decides).
PERF=(perf)
choose_perf() {
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        PERF=(sudo -n perf)
    fi
}

# Fails clearly unless perf can sample here with kernel frames: a profile of a broker that
# spends most of its time in syscalls is misleading without them.
probe_perf() {
    local paranoid uid hint
    paranoid="$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo unknown)"
    uid="$(id -u)"
    hint="kernel.perf_event_paranoid is $paranoid and this runs as uid $uid: run as root (or with passwordless sudo), or lower it with 'sysctl kernel.perf_event_paranoid=1'"
    if ! timeout -k 5 60 "${PERF[@]}" record -q -e cpu-clock -F "$FREQ" -g -o "$WORK/probe.data" \
        -- dd if=/dev/zero of=/dev/null bs=1 count=300000 >"$WORK/probe.log" 2>&1; then
        tail -n 20 "$WORK/probe.log" >&2
        fail "perf cannot sample on this machine ($hint)"
    fi
    local kernel_lines
    kernel_lines="$(timeout -k 5 60 "${PERF[@]}" report -i "$WORK/probe.data" --no-children \
        --sort sym --stdio -g none 2>/dev/null | grep -c '\[k\]' || true)"
    if [ "${kernel_lines:-0}" -eq 0 ]; then
        fail "perf samples here but records no kernel frames ($hint)"
    fi
}

install_perf
choose_perf
probe_perf

say "building hydrant and hydrant-loadtest (release)"
timeout -k 10 "$BUILD_TIMEOUT" cargo build --release -q -p hydrant -p hydrant-loadtest ||
    fail "the release build failed"

mkdir -p "$(dirname "$OUT")"
rm -f "$DATA" "$JSON"
# Thousands of connections need descriptors on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

printf 'connection_messages = false\n' >"$WORK/hydrant.toml"
"$BIN_DIR/hydrant" --config "$WORK/hydrant.toml" --bind "127.0.0.1:$PORT" \
    --cores "$CORES" >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 200); do
    grep -q '^hydrant: ready' "$WORK/broker.log" 2>/dev/null && break
    kill -0 "$BROKER_PID" 2>/dev/null || break
    sleep 0.05
done
if ! grep -q '^hydrant: ready' "$WORK/broker.log"; then
    tail -n 20 "$WORK/broker.log" >&2
    fail "hydrant did not come up on 127.0.0.1:$PORT"
fi

say "sampling hydrant (pid $BROKER_PID) at $FREQ Hz while: hydrant-loadtest $*"
"${PERF[@]}" record -q -e cpu-clock -F "$FREQ" --call-graph "$CALL_GRAPH" -p "$BROKER_PID" -o "$DATA" \
    >"$WORK/perf-record.log" 2>&1 &
PERF_PID=$!
sleep 0.5
kill -0 "$PERF_PID" 2>/dev/null || {
    cat "$WORK/perf-record.log" >&2
    fail "perf record could not attach to the broker"
}

set +e
timeout -k 5 "$RUN_TIMEOUT" "$BIN_DIR/hydrant-loadtest" "$@" --port "$PORT" \
    --broker-pid "$BROKER_PID" --quiet --json "$JSON" >"$WORK/generator.txt" 2>&1 &
GEN_PID=$!
wait "$GEN_PID"
generator_status=$?
GEN_PID=""
set -e

kill -INT "$PERF_PID" 2>/dev/null || true
for _ in $(seq 1 300); do
    kill -0 "$PERF_PID" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$PERF_PID" 2>/dev/null; then
    fail "perf record did not stop within 30 s"
fi
wait "$PERF_PID" 2>/dev/null || true
PERF_PID=""

if [ "$generator_status" -ne 0 ]; then
    cat "$WORK/generator.txt" >&2
    fail "hydrant-loadtest failed (exit $generator_status); no profile written"
fi

report() {
    timeout -k 5 "$REPORT_TIMEOUT" "${PERF[@]}" report -i "$DATA" --no-children --stdio "$@" \
        2>/dev/null
}

# Exact sample counts per symbol ('-n'): each line is
# '<percent>%  <samples>  <command>  <object>  [k]|[.] <symbol>', [k] marking the kernel.
report --sort comm,dso,sym -g none -n --percent-limit 0 >"$WORK/symbols.txt"
read -r samples kernel_samples < <(awk '
    /^ *[0-9.]+%/ { total += $2; if ($0 ~ /\[k\]/) kernel += $2 }
    END { print total + 0, kernel + 0 }' "$WORK/symbols.txt")
if [ "$samples" -eq 0 ]; then
    cat "$WORK/perf-record.log" >&2
    fail "perf recorded no samples of the broker"
fi

{
    echo "# hydrant profile: $NAME"
    echo
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "hydrant: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)'), release build, --cores $CORES, connection_messages = false"
    echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), kernel $(uname -r), $(perf --version)"
    echo "generator: hydrant-loadtest $* --port $PORT --broker-pid $BROKER_PID --quiet --json $JSON"
    echo "profiler: perf record -e cpu-clock -F $FREQ --call-graph $CALL_GRAPH -p <hydrant> over the whole generator run (set-up, warm-up, window, drain)"
    echo "data: $DATA"
    echo
    echo "## Generator report"
    echo
    cat "$WORK/generator.txt"
    echo
    echo "## Where the broker's time goes"
    echo
    echo "samples: $samples"
    awk -v total="$samples" -v kernel="$kernel_samples" 'BEGIN {
        printf "kernel %.1f%%   user %.1f%%   (%d and %d samples)\n",
            100 * kernel / total, 100 * (total - kernel) / total, kernel, total - kernel }'
    echo
    echo "### By shared object"
    echo
    echo '```'
    report --sort dso -g none --percent-limit 0.5 | sed '/^#/d;/^$/d'
    echo '```'
    echo
    echo "### Top entries per thread (perf report --no-children --percent-limit 1.5 --stdio -g none)"
    echo
    echo '```'
    report --percent-limit 1.5 -g none | sed '/^#/d;/^$/d'
    echo '```'
    echo
    echo "### Top symbols, all threads together (--sort dso,sym)"
    echo
    echo '```'
    report --sort dso,sym --percent-limit 1.5 -g none | sed '/^#/d;/^$/d'
    echo '```'
    echo
    echo "### Top entries with their callers (perf report --no-children --percent-limit 1.5 --stdio)"
    echo
    if [ "$CALL_GRAPH" = "fp" ]; then
        echo "(Frame-pointer call chains: complete for kernel frames; Rust frames stop at the"
        echo "sampled function. CALL_GRAPH=dwarf unwinds them.)"
        echo
    fi
    echo '```'
    report --percent-limit 1.5 -g caller,0.5,callee,function,percent | sed '/^#/d' |
        sed '/^$/N;/^\n$/D'
    echo '```'
} >"$OUT"

say "profile written to $OUT ($samples samples; perf data in $DATA)"
