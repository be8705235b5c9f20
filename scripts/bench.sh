#!/usr/bin/env bash
# Measures Fanline against this machine's own limits, both sides in the same run, and prints one table:
# fan-out vs an in-server INSERT … SELECT of the same rows, ingest vs raw produce to the same broker,
# feed/sync/contact-list/history pages vs pgbench running the same SQL, p50/p99 at half rate, and the
# rows a post to 1M followers and a message to a 100k-member group write. Starts the broker if needed,
# installs wrk (Debian) if missing, builds in release. Arguments go to fanline-limits (see --help),
# e.g. scripts/bench.sh --only feed,sync --seconds 5
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_postgres
start_broker
ensure_wrk
command -v pgbench >/dev/null 2>&1 || die "pgbench not found (Debian: postgresql-client)"
export FANLINE_TEST_BROKERS="$FANLINE_KAFKA_BROKERS"
export FANLINE_TEST_DATABASE_URL="${FANLINE_TEST_DATABASE_URL:-postgres://root@127.0.0.1:5432/postgres}"
# The services' own default level (info: their spans are live, as in production); the fan-out statements
# are slow by design, sqlx's slow-statement warnings about them are noise here.
export RUST_LOG="${RUST_LOG:-info,sqlx::query=error}"
cd "$FANLINE_ROOT"
log "building fanline-limits (release)"
cargo build --release -p bench --bin fanline-limits >&2
log "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -r); Postgres $(psql "$FANLINE_TEST_DATABASE_URL" -Atc 'show server_version'); broker tansu $TANSU_VERSION"
exec "$FANLINE_ROOT/target/release/fanline-limits" "$@"
