#!/usr/bin/env bash
# Installs everything scripts/test.sh needs on a fresh Debian machine that has only the Rust
# toolchain: Debian's mosquitto clients and broker (used by benchmarks and manual checks),
# python3 with venv support, and a virtualenv at target/test-venv holding
# tests/python/requirements.txt; node and npm with tests/js's packages (MQTT.js, pinned by
# tests/js/package-lock.json) in tests/js/node_modules. Idempotent: installs only
# what is missing, prints nothing on success, and shows the failing command's output on
# failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/target/test-venv"
REQUIREMENTS="$ROOT/tests/python/requirements.txt"
STAMP="$VENV/.requirements.sha256"
DEBIAN_PACKAGES=(mosquitto-clients mosquitto)
PYTHON_PACKAGES=(python3 python3-venv python3-pip)
NODE_PACKAGES=(nodejs npm)
JS_DIR="$ROOT/tests/js"
JS_STAMP="$JS_DIR/node_modules/.package-lock.sha256"

LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT

fail() {
    echo "install-test-deps: $*" >&2
    if [ -s "$LOG" ]; then
        echo "---- output of the failed step ----" >&2
        tail -n 60 "$LOG" >&2
    fi
    exit 1
}

# Runs a command quietly; on failure, names the step and shows its output.
quietly() {
    local step="$1"
    shift
    : >"$LOG"
    "$@" >"$LOG" 2>&1 || fail "$step failed: $*"
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        fail "need root (or sudo) to run: $*"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: install $* by hand"
    if [ "$APT_UPDATED" -eq 0 ]; then
        quietly "apt-get update" as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        APT_UPDATED=1
    fi
    quietly "apt-get install $*" as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@"
}

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
    is_installed "$package" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi

# The venv is healthy when its interpreter runs; a venv left by a removed Python is rebuilt.
venv_works() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1
}

create_venv() {
    local python="$1"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$python" -m venv "$VENV" >"$LOG" 2>&1
}

if ! venv_works; then
    python="$(command -v python3 || true)"
    if [ -z "$python" ] || ! create_venv "$python"; then
        apt_install "${PYTHON_PACKAGES[@]}"
        python="$(command -v python3 || true)"
        if [ -z "$python" ] || ! create_venv "$python"; then
            # A python3 earlier on PATH than Debian's may lack venv support: use Debian's.
            [ -x /usr/bin/python3 ] ||
                fail "python3 is still missing after installing ${PYTHON_PACKAGES[*]}"
            create_venv /usr/bin/python3 || fail "cannot create a virtualenv at $VENV"
        fi
    fi
fi

# The stamp records the requirements and interpreter the venv was filled for.
wanted="$(
    {
        cat "$REQUIREMENTS"
        "$VENV/bin/python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$wanted" ]; then
    quietly "pip install" "$VENV/bin/python" -m pip install --disable-pip-version-check -q \
        -r "$REQUIREMENTS"
    echo "$wanted" >"$STAMP"
fi

# node and npm: Debian's, unless some node and npm are already on PATH.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install "${NODE_PACKAGES[@]}"
fi

# tests/js/node_modules is filled from the lock file, again only when the lock file or node
# changed.
wanted_js="$(
    {
        cat "$JS_DIR/package-lock.json"
        node --version
    } | sha256sum | cut -d' ' -f1
)"
if [ ! -f "$JS_STAMP" ] || [ "$(cat "$JS_STAMP")" != "$wanted_js" ]; then
    quietly "npm ci" npm ci --prefix "$JS_DIR" --no-audit --no-fund --loglevel=error
    echo "$wanted_js" >"$JS_STAMP"
fi
