#!/usr/bin/env bash
# Measures how fast hydrant accepts CONNECTs that carry a user name and password, with and
# without the credential cache (`[auth] credential_cache_size`), for both kinds of password
# hash: Mosquitto's `$7$` (PBKDF2-SHA512) and hydrant's default argon2id. Each run opens
# CONNECTIONS connections as fast as the load generator can (`conns --connect-rate 0`), all with
# the same user and password, as the firehose's once-per-message publishers do, against a
# freshly started broker on a loopback port. Mosquitto (Debian's, installed if missing) is
# measured in the same rounds with the same `$7$` file, for comparison. Prints one table;
# per-run JSON goes to OUT.
#
#   scripts/bench-connect-auth.sh
#   CONNECTIONS=5000 ROUNDS=3 scripts/bench-connect-auth.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"

ROUNDS="${ROUNDS:-2}"
CONNECTIONS="${CONNECTIONS:-3000}"
CORES="${CORES:-2}"
PORT="${PORT:-18893}"
MOSQUITTO_PORT="${MOSQUITTO_PORT:-18894}"
OUT="${OUT:-target/bench/auth-$(date -u +%Y%m%dT%H%M%SZ)}"
RUN_TIMEOUT=120

# shellcheck source=scripts/bench-common.sh
. "$ROOT/scripts/bench-common.sh"

if ! command -v mosquitto >/dev/null 2>&1; then
    say "installing Debian's mosquitto"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
fi

# Opens the connections against the broker BROKER_PID, listening on port $2; writes
# OUT/r<round>-<name>.json.
measure() {
    local name=$1 port=$2
    timeout -k 5 "$RUN_TIMEOUT" "$BIN_DIR/hydrant-loadtest" conns --port "$port" \
        --connections "$CONNECTIONS" --connect-rate 0 --duration 1s \
        --username bench --password secret --broker-pid "$BROKER_PID" \
        --json "$OUT/r$round-$name.json" >"$OUT/r$round-$name.txt"
    kill "$BROKER_PID"
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
}

say "building release binaries"
cargo build --release -q --bin hydrant -p hydrant
cargo build --release -q -p hydrant-loadtest
mkdir -p "$OUT"
WORK="$(mktemp -d)"
BROKER_PID=""
cleanup() {
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# One password file per hash kind, each with the user "bench" and password "secret".
printf 'secret\n' | "$BIN_DIR/hydrant" passwd -c --pbkdf2 "$WORK/pbkdf2.passwd" bench
printf 'secret\n' | "$BIN_DIR/hydrant" passwd -c "$WORK/argon2id.passwd" bench

for round in $(seq 1 "$ROUNDS"); do
    for hash in pbkdf2 argon2id; do
        for cache in 0 1024; do
            config="$WORK/$hash-$cache.toml"
            cat >"$config" <<EOF
[[listener]]
bind = "127.0.0.1:$PORT"
allow_anonymous = false
password_file = "$WORK/$hash.passwd"
[auth]
credential_cache_size = $cache
EOF
            "$BIN_DIR/hydrant" --config "$config" --cores "$CORES" >/dev/null 2>"$OUT/r$round-$hash-$cache.log" &
            BROKER_PID=$!
            wait_port "$PORT"
            say "round $round: $hash, credential_cache_size = $cache"
            measure "$hash-$cache" "$PORT"
        done
    done
    {
        # Its own port: the hydrant runs leave the other one's connections in TIME_WAIT, and
        # Mosquitto cannot listen beside them.
        echo "listener $MOSQUITTO_PORT 127.0.0.1"
        echo "allow_anonymous false"
        echo "password_file $WORK/pbkdf2.passwd"
        echo "persistence false"
        echo "connection_messages false"
        echo "log_dest stderr"
    } >"$WORK/mosquitto.conf"
    # Started as root, Mosquitto drops to its own user, which must be able to read the file.
    chmod 755 "$WORK"
    chmod 644 "$WORK/pbkdf2.passwd"
    mosquitto -c "$WORK/mosquitto.conf" 2>"$OUT/r$round-mosquitto.log" &
    BROKER_PID=$!
    wait_port "$MOSQUITTO_PORT"
    say "round $round: mosquitto, the same \$7\$ file"
    measure "mosquitto-pbkdf2" "$MOSQUITTO_PORT"
done

python3 - "$OUT" <<'EOF'
import glob, json, os, statistics, sys
out = sys.argv[1]
rates = {}
for path in sorted(glob.glob(os.path.join(out, "r*-*.json"))):
    _, first, second = os.path.basename(path)[:-5].split("-")
    with open(path) as f:
        report = json.load(f)
    rates.setdefault((first, second), []).append(report["conns"]["connects_per_s"])
mosquitto = statistics.median(rates[("mosquitto", "pbkdf2")])
lines = ["| password hash | hydrant, cache off (connects/s) | hydrant, cache on (connects/s) "
         "| on/off | Mosquitto (connects/s) | hydrant cache on / Mosquitto |",
         "|---|---:|---:|---:|---:|---:|"]
for hash_kind in ("pbkdf2", "argon2id"):
    off = statistics.median(rates[(hash_kind, "0")])
    on = statistics.median(rates[(hash_kind, "1024")])
    theirs = (f"{mosquitto:,.0f} | {on / mosquitto:.2f}x" if hash_kind == "pbkdf2"
              else "n/a (reads no argon2id) | n/a")
    lines.append(f"| {hash_kind} | {off:,.0f} | {on:,.0f} | {on / off:.1f}x | {theirs} |")
table = "\n".join(lines)
print(table)
with open(os.path.join(out, "summary.md"), "w") as f:
    f.write(table + "\n")
EOF
