#!/usr/bin/env bash
# The black-box security suite (scripts/security.py, issue 19): starts a private stack with
# scripts/up.sh (its own broker on 29092, database fanline_security, ports 28080-28086, state in
# .fanline/security), runs the attacks against its public ports, and stops it. Exits non-zero on any
# failed check. The stack trusts 127.0.0.2 as a reverse proxy and has smaller login budgets (debug
# builds hash slowly); every other limit is the default.
#   scripts/security.sh                 # FANLINE_PROFILE=debug reuses the test build
#   scripts/security.sh --only slow     # one group of checks
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export FANLINE_STATE_DIR="$FANLINE_STATE/security"
export FANLINE_BROKER_PORT=29092 FANLINE_KAFKA_BROKERS=127.0.0.1:29092
export FANLINE_DATABASE_URL=postgres://root@127.0.0.1:5432/fanline_security
export FANLINE_INGEST_LISTEN=127.0.0.1:28080 FANLINE_READER_LISTEN=127.0.0.1:28081
export FANLINE_FANOUT_LISTEN=127.0.0.1:28082 FANLINE_LAG_EXPORTER_LISTEN=127.0.0.1:28083
export FANLINE_INGEST_OPS_LISTEN=127.0.0.1:28085 FANLINE_READER_OPS_LISTEN=127.0.0.1:28086
export FANLINE_TRUSTED_PROXIES=127.0.0.2
export FANLINE_OPERATORS=secop
export FANLINE_LOGIN_PER_ACCOUNT_ADDRESS_PER_MINUTE=3 FANLINE_LOGIN_FAILURES_PER_ACCOUNT_PER_HOUR=8
# Below the 64 attempts the proxy check makes: one budget for all its clients would run out.
export FANLINE_LOGIN_PER_ADDRESS_PER_MINUTE=20
unset FANLINE_EVENTS_TOPIC FANLINE_DLQ_TOPIC FANLINE_FANOUT_GROUP FANLINE_TOKEN_KEY

ensure_postgres
psql -h 127.0.0.1 -U root -d postgres -qc 'DROP DATABASE IF EXISTS fanline_security WITH (FORCE)' >&2
rm -rf "$FANLINE_STATE_DIR"
trap '"$FANLINE_ROOT/scripts/down.sh" >&2 || true' EXIT
"$FANLINE_ROOT/scripts/up.sh" >&2
# The operator's key, for the checks that use operator tools (claim codes, the raw producer).
FANLINE_TOKEN_KEY="$(cat "$FANLINE_STATE_DIR/token.key")"
export FANLINE_TOKEN_KEY
python3 "$FANLINE_ROOT/scripts/security.py" --ingest "http://$FANLINE_INGEST_LISTEN" \
  --reader "http://$FANLINE_READER_LISTEN" --binaries "$FANLINE_BIN" "$@"
