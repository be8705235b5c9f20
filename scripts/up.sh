#!/usr/bin/env bash
# Starts the whole pipeline on this machine: the broker (tansu, installed if missing), the database and
# its migrations, the topics, and the services (ingest, fanout, its lag exporter, reader; release builds,
# or FANLINE_PROFILE=debug).
# Run it again to restart whatever crashed or hangs; with --watch it stays in the foreground and does
# that every 5 s by itself (the broker included). Stop the stack with scripts/down.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

watch=false
quiet=false # in the watch loop only actions are logged
case "${1:-}" in
  --watch) watch=true ;;
  "") ;;
  *) die "usage: scripts/up.sh [--watch]" ;;
esac

export FANLINE_DATABASE_URL="${FANLINE_DATABASE_URL:-postgres://root@127.0.0.1:5432/fanline}"
ensure_postgres
start_broker
cd "$FANLINE_ROOT"
if [ -z "${FANLINE_BIN_DIR:-}" ]; then
  log "building the services ($FANLINE_PROFILE)"
  cargo build ${FANLINE_BUILD_FLAGS[@]+"${FANLINE_BUILD_FLAGS[@]}"} --bins -p ingest -p fanout -p reader >&2
fi
"$FANLINE_BIN/fanout" migrate
"$FANLINE_BIN/fanout" create-topics
mkdir -p "$FANLINE_STATE/logs"

# Access tokens are signed with one key shared by ingest and reader. Secure by default: a random key is
# generated once per state directory (kept, so tokens survive restarts); FANLINE_TOKEN_KEY overrides it.
if [ -z "${FANLINE_TOKEN_KEY:-}" ]; then
  key_file="$FANLINE_STATE/token.key"
  if [ ! -s "$key_file" ]; then
    (umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$key_file")
    log "generated the token signing key $key_file"
  fi
  FANLINE_TOKEN_KEY="$(cat "$key_file")"
fi
export FANLINE_TOKEN_KEY

# Attachments: a local directory behind the same interface as S3, with its own URL-signing key (kept
# like the token key). FANLINE_BLOB_STORE=s3://BUCKET (and AWS_* credentials, FANLINE_S3_ENDPOINT for
# MinIO/Garage) uses object storage instead.
export FANLINE_BLOB_STORE="${FANLINE_BLOB_STORE:-dir:$FANLINE_STATE/blobs}"
if [ -z "${FANLINE_BLOB_SECRET:-}" ]; then
  blob_key_file="$FANLINE_STATE/blob.key"
  if [ ! -s "$blob_key_file" ]; then
    (umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$blob_key_file")
    log "generated the attachment URL signing key $blob_key_file"
  fi
  FANLINE_BLOB_SECRET="$(cat "$blob_key_file")"
fi
export FANLINE_BLOB_SECRET
# Where clients reach the services (signed upload and download URLs of the directory store point there).
export FANLINE_PUBLIC_INGEST_URL="${FANLINE_PUBLIC_INGEST_URL:-http://${FANLINE_INGEST_LISTEN:-127.0.0.1:8080}}"
export FANLINE_PUBLIC_READER_URL="${FANLINE_PUBLIC_READER_URL:-http://${FANLINE_READER_LISTEN:-127.0.0.1:8081}}"

# Running means: the service's own /healthz answers. A pid alone proves nothing: right after kill -9 the
# dying process still answers `kill -0`, and a pid can be reused by an unrelated process.
service_healthy() { curl -fs -m 2 -o /dev/null "$1/healthz"; }

start_service() {
  local name="$1" url="$2"; shift 2
  local command pid_file="$FANLINE_STATE/$name.pid" pid="" age
  command="$(service_command "$name")"
  [ -f "$pid_file" ] && pid="$(cat "$pid_file")"
  if service_healthy "$url"; then
    $quiet || log "$name is already running"
    return 0
  fi
  if process_is "$pid" "$command"; then
    # Ours but not answering: still starting (another up.sh just started it) or hung. A young process
    # gets the rest of a minute; then it is replaced.
    age="$(ps -o etimes= -p "$pid" | tr -d ' ')"
    if [ "${age:-60}" -lt 60 ] && wait_for "$name" $((60 - age)) service_healthy "$url"; then
      return 0
    fi
    log "$name (pid $pid) does not answer /healthz; stopping it"
    stop_process "$pid" "$command" 10
  fi
  log "starting $name"
  nohup "$command" "$@" >>"$FANLINE_STATE/logs/$name.log" 2>&1 &
  echo $! >"$pid_file"
  wait_for "$name" 60 curl -fs -m 2 -o /dev/null "$url/readyz" || {
    log "$name did not become ready; see $FANLINE_STATE/logs/$name.log"
    return 1
  }
}

lag_url="http://${FANLINE_LAG_EXPORTER_LISTEN:-127.0.0.1:8083}"
# FANLINE_FANOUT_WORKERS workers share the consumer group (default 1). Worker 1 is "fanout" on
# FANLINE_FANOUT_LISTEN; worker k is "fanout-k" on that port + 10·(k−1).
fanout_workers="${FANLINE_FANOUT_WORKERS:-1}"
case "$fanout_workers" in
  '' | *[!0-9]* | 0) die "FANLINE_FANOUT_WORKERS must be a positive number, not '$fanout_workers'" ;;
esac
fanout_listen="${FANLINE_FANOUT_LISTEN:-127.0.0.1:8082}"
fanout_worker_listen() { printf '%s:%s' "${fanout_listen%:*}" $((${fanout_listen##*:} + 10 * ($1 - 1))); }
# Each service on its own: one that cannot become ready (fanout while Postgres is down) must not keep
# the others from being started.
start_services() {
  local ok=0
  local worker
  for worker in $(seq 1 "$fanout_workers"); do
    if [ "$worker" = 1 ]; then
      start_service fanout "http://$fanout_listen" run --skip-setup || ok=1
    else
      start_service "fanout-$worker" "http://$(fanout_worker_listen "$worker")" \
        run --skip-setup --listen "$(fanout_worker_listen "$worker")" || ok=1
    fi
  done
  start_service lag-exporter "$lag_url" \
    lag-exporter --listen "${FANLINE_LAG_EXPORTER_LISTEN:-127.0.0.1:8083}" || ok=1
  start_service ingest "http://${FANLINE_INGEST_LISTEN:-127.0.0.1:8080}" || ok=1
  start_service reader "http://${FANLINE_READER_LISTEN:-127.0.0.1:8081}" || ok=1
  return "$ok"
}
if ! start_services; then
  # Watching, keep trying (Postgres may come back); otherwise say so.
  $watch || die "a service did not start; see $FANLINE_STATE/logs/"
  log "a service did not start yet; see $FANLINE_STATE/logs/ (retrying every 5 s)"
fi

# A database URL may carry a password (user:password@ or ?password=): print it without.
redact_url() { printf '%s' "$1" | sed -E 's#//([^:/@]*):[^@/]*@#//\1:***@#; s#([?&]password=)[^&]*#\1***#g'; }

cat <<EOT
Fanline is running.
  web     http://${FANLINE_READER_LISTEN:-127.0.0.1:8081}/   (the chat client: register, log in, chat)
  ingest  http://${FANLINE_INGEST_LISTEN:-127.0.0.1:8080}   (POST /v1/accounts, /v1/posts, /v1/messages, /v1/groups; PUT|DELETE /v1/users/{user}/following/{target}; /openapi.json)
  reader  http://${FANLINE_READER_LISTEN:-127.0.0.1:8081}   (POST /v1/sessions; GET /v1/users/{user}/feed|sync|posts|conversations|events, /v1/conversations/{id}/messages, /v1/ws; /openapi.json)
  metrics http://${FANLINE_INGEST_OPS_LISTEN:-127.0.0.1:9080}/metrics (ingest), http://${FANLINE_READER_OPS_LISTEN:-127.0.0.1:9081}/metrics (reader): operations ports, not public
  fanout  http://$fanout_listen   (/metrics, /readyz; $fanout_workers worker(s))
  lag     http://${FANLINE_LAG_EXPORTER_LISTEN:-127.0.0.1:8083}   (/metrics: the group's lag, also while fanout is down)
  broker  $FANLINE_KAFKA_BROKERS (tansu $TANSU_VERSION)    database $(redact_url "$FANLINE_DATABASE_URL")
  logs    $FANLINE_STATE/logs/
Every route but registration and login needs a token:
  curl -s -XPOST http://${FANLINE_INGEST_LISTEN:-127.0.0.1:8080}/v1/accounts -H 'content-type: application/json' -d '{"user":"alice","password":"correct horse alice"}'
  curl -s -XPOST http://${FANLINE_READER_LISTEN:-127.0.0.1:8081}/v1/sessions -H 'content-type: application/json' -d '{"user":"alice","password":"correct horse alice"}'
  then send its access_token as: -H "Authorization: Bearer \$TOKEN"
Stop with: scripts/down.sh
EOT

if $watch; then
  log "watching: every 5 s, whatever crashed or hangs is started again (Ctrl-C stops watching, not the stack)"
  # A broker can accept connections yet fail every request (tansu 0.6 after its storage task died):
  # the lag exporter, which needs only the broker, then cannot measure. Six checks in a row (30 s; a
  # slow broker on a loaded machine is not a dead one) and the broker is restarted, if it is ours.
  broker_failures=0
  quiet=true
  while sleep 5; do
    (ensure_postgres) || log "Postgres is down; retrying"
    port_open "$FANLINE_BROKER_HOST" "$FANLINE_BROKER_PORT" \
      || (start_broker) || log "the broker did not start; retrying"
    if curl -fs -m 2 -o /dev/null "$lag_url/healthz" && ! curl -fs -m 4 -o /dev/null "$lag_url/readyz"; then
      broker_failures=$((broker_failures + 1))
    else
      broker_failures=0
    fi
    if [ "$broker_failures" -ge 6 ]; then
      broker_pid="$(cat "$FANLINE_STATE/tansu.pid" 2>/dev/null || true)"
      if process_is "$broker_pid" tansu; then
        log "the broker fails requests; restarting it"
        stop_process "$broker_pid" tansu 5 || true
        (start_broker) || log "the broker did not start; retrying"
      else
        log "the broker on $FANLINE_KAFKA_BROKERS fails requests, and scripts/up.sh did not start it: restart it yourself"
      fi
      broker_failures=0
    fi
    start_services || log "not everything is up yet; retrying"
  done
fi
