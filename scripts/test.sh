#!/usr/bin/env bash
# Runs the whole test suite against the real broker (tansu, installed and started if missing) and the
# machine's Postgres. Each test creates its own database and topic. Extra arguments go to the runner.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_postgres
start_broker
ensure_prometheus
ensure_schemathesis
ensure_chromium
ensure_moto
export FANLINE_SCHEMATHESIS="$FANLINE_STATE/venv/bin/st"
export FANLINE_TEST_BROKERS="$FANLINE_KAFKA_BROKERS"
export FANLINE_TEST_DATABASE_URL="${FANLINE_TEST_DATABASE_URL:-postgres://root@127.0.0.1:5432/postgres}"
cd "$FANLINE_ROOT"
# nextest runs each test in its own process and ends a hung one (.config/nextest.toml).
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --profile ci "$@"
else
  cargo test --workspace "$@"
fi
# The whole suite (no filter given) ends with a short fault suite: one round of every fault against a
# private stack from scripts/up.sh --watch, on the debug build the tests already compiled. The full
# run is scripts/fault.sh (README, "Crash recovery").
# Then the black-box security suite (scripts/security.sh) against a private stack of the same build.
if [ "$#" -eq 0 ]; then
  FANLINE_PROFILE=debug "$FANLINE_ROOT/scripts/fault.sh" --rounds 1 --authors 2 --followers 10 \
    --devices 2 --settle-secs 2
  FANLINE_PROFILE=debug "$FANLINE_ROOT/scripts/security.sh"
fi
