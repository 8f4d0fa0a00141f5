#!/usr/bin/env bash
# Runs every test of hydrant: the Rust unit and integration tests (`cargo test --workspace --all-targets
# --no-fail-fast`, so every test binary runs even after one fails) and the black-box Python
# tests in tests/python (paho-mqtt against the real broker binary). This is the README's test
# command and what CI runs. Both suites run even if the first fails; the exit status is
# non-zero if any step failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV_PYTHON="$ROOT/target/test-venv/bin/python"
OUTPUT_DIR="$(mktemp -d)"
trap 'rm -rf "$OUTPUT_DIR"' EXIT

failures=()
cargo_summary="not run"
pytest_summary="not run"
passed_total=0
failed_total=0

step() {
    echo
    echo "==> $*"
}

# Sums one count (`passed` or `failed`) over cargo's `test result:` lines.
sum_cargo_counts() {
    { grep -E '^test result: ' "$2" || true; } | { grep -oE "[0-9]+ $1" || true; } \
        | awk '{s += $1} END {print s + 0}'
}

# Adds up cargo's `test result: ... N passed; M failed; ...` lines.
count_cargo() {
    local passed failed
    passed="$(sum_cargo_counts passed "$1")"
    failed="$(sum_cargo_counts failed "$1")"
    cargo_summary="$passed passed, $failed failed"
    passed_total=$((passed_total + passed))
    failed_total=$((failed_total + failed))
}

# Reads pytest's closing line (`3 failed, 26 passed, 1 error in 4.2s`).
count_pytest() {
    local closing passed failed errors
    closing="$(grep -E ' in [0-9.]+s( \([0-9:]+\))?$' "$1" \
        | grep -E 'passed|failed|error|no tests ran' | tail -n 1 || true)"
    passed="$(grep -oE '[0-9]+ passed' <<<"$closing" | grep -oE '[0-9]+' || echo 0)"
    failed="$(grep -oE '[0-9]+ failed' <<<"$closing" | grep -oE '[0-9]+' || echo 0)"
    errors="$(grep -oE '[0-9]+ errors?' <<<"$closing" | grep -oE '[0-9]+' || echo 0)"
    pytest_summary="$passed passed, $failed failed, $errors errors"
    passed_total=$((passed_total + passed))
    failed_total=$((failed_total + failed + errors))
}

step "installing test dependencies (scripts/install-test-deps.sh)"
if ! scripts/install-test-deps.sh; then
    echo "test.sh: installing the test dependencies failed" >&2
    exit 1
fi

# On a fresh CI checkout incremental compilation only costs disk: nothing is rebuilt twice.
if [ -n "${CI:-}" ]; then
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi

# One build of every target (broker, load generator, tests) with the test feature set, so the
# test step below compiles nothing again.
step "cargo test --workspace --all-targets --no-run"
if ! cargo test --workspace --all-targets --no-run; then
    echo
    echo "test.sh: FAILED: building the broker and the tests (no test can run without them)" >&2
    exit 1
fi

step "cargo test --workspace --all-targets --no-fail-fast"
set +e
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee "$OUTPUT_DIR/cargo.txt"
cargo_status="${PIPESTATUS[0]}"
set -e
count_cargo "$OUTPUT_DIR/cargo.txt"
if [ "$cargo_status" -ne 0 ]; then
    failures+=("cargo test --workspace --all-targets --no-fail-fast (exit $cargo_status)")
fi

step "pytest tests/python (HYDRANT_BIN=$TARGET_DIR/debug/hydrant)"
set +e
HYDRANT_BIN="$TARGET_DIR/debug/hydrant" "$VENV_PYTHON" -m pytest tests/python -q 2>&1 \
    | tee "$OUTPUT_DIR/pytest.txt"
pytest_status="${PIPESTATUS[0]}"
set -e
count_pytest "$OUTPUT_DIR/pytest.txt"
if [ "$pytest_status" -eq 5 ]; then
    failures+=("pytest collected no tests (exit 5)")
elif [ "$pytest_status" -ne 0 ]; then
    failures+=("pytest tests/python (exit $pytest_status)")
fi

echo
echo "==> summary"
echo "cargo test:  $cargo_summary (exit $cargo_status)"
echo "pytest:      $pytest_summary (exit $pytest_status)"
for failure in "${failures[@]}"; do
    echo "FAILED: $failure"
done
if [ "${#failures[@]}" -gt 0 ]; then
    echo "tests: $passed_total passed, $failed_total failed"
    exit 1
fi
echo "tests: $passed_total passed, $failed_total failed"
