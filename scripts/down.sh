#!/usr/bin/env bash
# Stops what scripts/up.sh started: the services (SIGTERM, so ingest flushes and fanout commits)
# and the broker if a Fanline script started it. Data stays in .fanline/ and Postgres.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_pid_file() {
  local name="$1" file="$FANLINE_STATE/$1.pid"
  [ -f "$file" ] || return 0
  local pid
  pid="$(cat "$file")"
  if process_is "$pid" "$(service_command "$name")"; then
    log "stopping $name (pid $pid)"
    stop_process "$pid" "$(service_command "$name")" 30
  fi
  rm -f "$file"
}

# Producers and readers first, the consumer next, the broker last.
stop_pid_file ingest
stop_pid_file reader
stop_pid_file fanout
for file in "$FANLINE_STATE"/fanout-*.pid; do
  [ -e "$file" ] && stop_pid_file "$(basename "$file" .pid)"
done
stop_pid_file lag-exporter
stop_pid_file tansu
log "stopped"
