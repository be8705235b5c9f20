#!/usr/bin/env bash
# Validates compose/ without Docker: the compose file with Debian's docker-compose, the Prometheus
# config and alert rules with promtool (including the rules' unit tests), the dashboards as JSON.
# Installs the two Debian packages when missing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FANLINE_ROOT"

need=()
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]} from Debian's packages"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi
docker-compose -f compose/docker-compose.yml config -q
log "compose/docker-compose.yml is valid"
promtool check config compose/prometheus.yml >&2
promtool check rules compose/alerts.yml >&2
# Unit tests: every alert fires on a synthetic failure and stays quiet on a healthy series.
promtool test rules compose/alerts.test.yml >&2
for dashboard in compose/grafana/dashboards/*.json; do
  python3 -m json.tool "$dashboard" >/dev/null || die "$dashboard is not valid JSON"
done
log "compose/ checks passed"
