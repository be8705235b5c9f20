#!/usr/bin/env bash
# Starts the whole pipeline on this machine: the broker (tansu, installed if missing), the database and
# its migrations, the topics, and the three services (release builds). Stop it with scripts/down.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export FANLINE_DATABASE_URL="${FANLINE_DATABASE_URL:-postgres://root@127.0.0.1:5432/fanline}"
ensure_postgres
start_broker
cd "$FANLINE_ROOT"
log "building the services (release)"
cargo build --release --bins -p ingest -p fanout -p reader >&2
bin="$FANLINE_ROOT/target/release"
"$bin/fanout" migrate
"$bin/fanout" create-topics
mkdir -p "$FANLINE_STATE/logs"

start_service() {
  local name="$1" url="$2"; shift 2
  if [ -f "$FANLINE_STATE/$name.pid" ] && kill -0 "$(cat "$FANLINE_STATE/$name.pid")" 2>/dev/null; then
    log "$name is already running"
    return 0
  fi
  local program="$name"
  [ "$name" = lag-exporter ] && program=fanout
  nohup "$bin/$program" "$@" >"$FANLINE_STATE/logs/$name.log" 2>&1 &
  echo $! >"$FANLINE_STATE/$name.pid"
  wait_for "$name" 60 curl -fs -o /dev/null "$url/readyz" \
    || die "$name did not become ready; see $FANLINE_STATE/logs/$name.log"
}

start_service fanout "http://${FANLINE_FANOUT_LISTEN:-127.0.0.1:8082}" run --skip-setup
start_service lag-exporter "http://${FANLINE_LAG_EXPORTER_LISTEN:-127.0.0.1:8083}" \
  lag-exporter --listen "${FANLINE_LAG_EXPORTER_LISTEN:-127.0.0.1:8083}"
start_service ingest "http://${FANLINE_INGEST_LISTEN:-127.0.0.1:8080}"
start_service reader "http://${FANLINE_READER_LISTEN:-127.0.0.1:8081}"

cat <<EOT
Fanline is running.
  ingest  http://${FANLINE_INGEST_LISTEN:-127.0.0.1:8080}   (POST /v1/posts, PUT|DELETE /v1/users/{user}/following/{target})
  reader  http://${FANLINE_READER_LISTEN:-127.0.0.1:8081}   (GET /v1/users/{user}/feed|sync|posts)
  fanout  http://${FANLINE_FANOUT_LISTEN:-127.0.0.1:8082}   (/metrics, /readyz)
  lag     http://${FANLINE_LAG_EXPORTER_LISTEN:-127.0.0.1:8083}   (/metrics: the group's lag, also while fanout is down)
  broker  $FANLINE_KAFKA_BROKERS (tansu $TANSU_VERSION)    database $FANLINE_DATABASE_URL
  logs    $FANLINE_STATE/logs/
Stop with: scripts/down.sh
EOT
