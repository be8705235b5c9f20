#!/usr/bin/env bash
# Stops what scripts/up.sh started: the three services (SIGTERM, so ingest flushes and fanout commits)
# and the broker if a Fanline script started it. Data stays in .fanline/ and Postgres.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_pid_file() {
  local name="$1" file="$FANLINE_STATE/$1.pid"
  [ -f "$file" ] || return 0
  local pid
  pid="$(cat "$file")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { log "$name did not stop in 30 s; killing it"; kill -KILL "$pid"; }
  fi
  rm -f "$file"
}

# Producers and readers first, the consumer next, the broker last.
stop_pid_file ingest
stop_pid_file reader
stop_pid_file fanout
stop_pid_file lag-exporter
stop_pid_file tansu
log "stopped"
