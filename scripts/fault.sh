#!/usr/bin/env bash
# The fault suite: starts a private stack with scripts/up.sh --watch (its own broker, Postgres cluster,
# ports 18080-18092/19092/15432 and state in .fanline/fault), posts and polls continuously, kills
# fanout (1 worker, then 1 of 2), the broker, ingest and the reader with SIGKILL and restarts Postgres
# in immediate mode, round after round, and prints one table: acknowledged, delivered, lost, duplicated,
# longest stall, 5xx. Exits non-zero on any loss, duplicate, client giving up or stall over the bound.
#   scripts/fault.sh                      # the full run (3 rounds per fault, release build)
#   scripts/fault.sh --rounds 1 --authors 2 --followers 10   # short; see --help for every option
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_postgres
ensure_tansu
cd "$FANLINE_ROOT"
cargo build ${FANLINE_BUILD_FLAGS[@]+"${FANLINE_BUILD_FLAGS[@]}"} --bins -p ingest -p fanout -p reader -p faults >&2
exec "$FANLINE_BIN/fanline-fault" --profile "$FANLINE_PROFILE" "$@"
