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

# Running means: the service's own /healthz answers and the process up.sh recorded is alive. A pid alone
# proves nothing: right after kill -9 the dying process still answers `kill -0`, and a pid can be reused.
service_healthy() { curl -fs -m 2 -o /dev/null "$1/healthz"; }

# Alive and not a zombie (ps reports state Z for a process that exited but was not reaped).
process_alive() {
  local state
  state="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [ -n "$state" ] && [ "${state#Z}" = "$state" ]
}

start_service() {
  local name="$1" url="$2"; shift 2
  local pid_file="$FANLINE_STATE/$name.pid" pid=""
  [ -f "$pid_file" ] && pid="$(cat "$pid_file")"
  if service_healthy "$url"; then
    log "$name is already running"
    return 0
  fi
  if [ -n "$pid" ] && process_alive "$pid"; then
    # Recorded, alive, but not healthy: hung or on its way out. Replace it.
    log "$name (pid $pid) does not answer /healthz; stopping it"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do process_alive "$pid" || break; sleep 0.5; done
    process_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  fi
  local program="$name"
  [ "$name" = lag-exporter ] && program=fanout
  log "starting $name"
  nohup "$bin/$program" "$@" >>"$FANLINE_STATE/logs/$name.log" 2>&1 &
  echo $! >"$pid_file"
  wait_for "$name" 60 curl -fs -o /dev/null "$url/readyz" \
    || die "$name did not become ready; see $FANLINE_STATE/logs/$name.log"
}

start_service fanout "http://${FANLINE_FANOUT_LISTEN:-127.0.0.1:8082}" run --skip-setup
start_service lag-exporter "http://${FANLINE_LAG_EXPORTER_LISTEN:-127.0.0.1:8083}" \
  lag-exporter --listen "${FANLINE_LAG_EXPORTER_LISTEN:-127.0.0.1:8083}"
start_service ingest "http://${FANLINE_INGEST_LISTEN:-127.0.0.1:8080}"
start_service reader "http://${FANLINE_READER_LISTEN:-127.0.0.1:8081}"

# A database URL may carry a password: print it without.
redact_url() { printf '%s' "$1" | sed -E 's#//([^:/@]+):[^@/]*@#//\1:***@#'; }

cat <<EOT
Fanline is running.
  ingest  http://${FANLINE_INGEST_LISTEN:-127.0.0.1:8080}   (POST /v1/posts, PUT|DELETE /v1/users/{user}/following/{target})
  reader  http://${FANLINE_READER_LISTEN:-127.0.0.1:8081}   (GET /v1/users/{user}/feed|sync|posts)
  fanout  http://${FANLINE_FANOUT_LISTEN:-127.0.0.1:8082}   (/metrics, /readyz)
  lag     http://${FANLINE_LAG_EXPORTER_LISTEN:-127.0.0.1:8083}   (/metrics: the group's lag, also while fanout is down)
  broker  $FANLINE_KAFKA_BROKERS (tansu $TANSU_VERSION)    database $(redact_url "$FANLINE_DATABASE_URL")
  logs    $FANLINE_STATE/logs/
Stop with: scripts/down.sh
EOT
