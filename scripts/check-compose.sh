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
# The token key comes from the operator's environment or compose/.env: without one, compose refuses.
no_env_file="$(mktemp)"
trap 'rm -f "$no_env_file"' EXIT
if FANLINE_BLOB_SECRET=x env -u FANLINE_TOKEN_KEY docker-compose -f compose/docker-compose.yml --env-file "$no_env_file" config -q 2>/dev/null; then
  die "compose accepted a stack without FANLINE_TOKEN_KEY"
fi
# A throwaway key for the checks below; never written anywhere.
FANLINE_TOKEN_KEY="$(head -c 48 /dev/urandom | base64 | tr -d '\n')"
FANLINE_BLOB_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n')"
export FANLINE_TOKEN_KEY FANLINE_BLOB_SECRET
docker-compose -f compose/docker-compose.yml config -q
# Every long-running service restarts after a crash and says whether it is healthy; the one-shot setup
# job retries on failure.
docker-compose -f compose/docker-compose.yml config | python3 -c '
import sys, yaml
services = yaml.safe_load(sys.stdin)["services"]
bad = []
for name, service in services.items():
    restart = service.get("restart")
    if name == "setup":
        if restart != "on-failure":
            bad.append(f"{name}: restart {restart!r}, expected on-failure")
        continue
    if restart != "unless-stopped":
        bad.append(f"{name}: restart {restart!r}, expected unless-stopped")
    if "healthcheck" not in service:
        bad.append(f"{name}: no healthcheck")
if bad:
    sys.exit("compose: " + "; ".join(bad))
' || die "compose services lack restart policies or healthchecks"
# Every Fanline service's environment and command, as compose passes them, through that binary's own
# configuration check; then the same check on a copy without the reader's token key must fail.
cargo build -q --bins -p ingest -p reader -p fanout >&2
bin_dir="${CARGO_TARGET_DIR:-$FANLINE_ROOT/target}/debug"
docker-compose -f compose/docker-compose.yml config \
  | python3 scripts/check-compose-services.py "$bin_dir" >&2
docker-compose -f compose/docker-compose.yml config | python3 -c '
import sys, yaml
config = yaml.safe_load(sys.stdin)
del config["services"]["reader"]["environment"]["FANLINE_TOKEN_KEY"]
yaml.safe_dump(config, sys.stdout)
' | python3 scripts/check-compose-services.py "$bin_dir" --expect-failure >&2
# And without the attachment URL key (the directory store cannot sign without one).
docker-compose -f compose/docker-compose.yml config | python3 -c '
import sys, yaml
config = yaml.safe_load(sys.stdin)
del config["services"]["ingest"]["environment"]["FANLINE_BLOB_SECRET"]
yaml.safe_dump(config, sys.stdout)
' | python3 scripts/check-compose-services.py "$bin_dir" --expect-failure >&2
log "compose/docker-compose.yml is valid"
promtool check config compose/prometheus.yml >&2
promtool check rules compose/alerts.yml >&2
# Unit tests: every alert fires on a synthetic failure and stays quiet on a healthy series.
promtool test rules compose/alerts.test.yml >&2
for dashboard in compose/grafana/dashboards/*.json; do
  python3 -m json.tool "$dashboard" >/dev/null || die "$dashboard is not valid JSON"
done
log "compose/ checks passed"
