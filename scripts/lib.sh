# Shared by Fanline's scripts: installs and starts what the pipeline and the tests need on this machine.
# Source it; it does not run anything by itself.

FANLINE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FANLINE_STATE="${FANLINE_STATE_DIR:-$FANLINE_ROOT/.fanline}"
TANSU_VERSION="0.6.0"
SCHEMATHESIS_VERSION="4.32.5"
MOTO_VERSION="5.2.1"
FANLINE_BROKER_HOST="${FANLINE_BROKER_HOST:-127.0.0.1}"
FANLINE_BROKER_PORT="${FANLINE_BROKER_PORT:-9092}"
export FANLINE_KAFKA_BROKERS="${FANLINE_KAFKA_BROKERS:-$FANLINE_BROKER_HOST:$FANLINE_BROKER_PORT}"
PATH="$HOME/.cargo/bin:$PATH"

# The services' build: release (default) or debug (FANLINE_PROFILE=debug; CI's short fault suite uses
# it to reuse the test build).
FANLINE_PROFILE="${FANLINE_PROFILE:-release}"
case "$FANLINE_PROFILE" in
  release) FANLINE_BUILD_FLAGS=(--release) ;;
  debug) FANLINE_BUILD_FLAGS=() ;;
  *) printf '[fanline] error: FANLINE_PROFILE must be release or debug, not %s\n' "$FANLINE_PROFILE" >&2; exit 1 ;;
esac
# FANLINE_BIN_DIR: prebuilt binaries to run instead (up.sh then builds nothing).
FANLINE_BIN="${FANLINE_BIN_DIR:-$FANLINE_ROOT/target/$FANLINE_PROFILE}"

log() { printf '[fanline] %s\n' "$*" >&2; }
die() { printf '[fanline] error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND every half second.
wait_for() {
  local what="$1" seconds="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
  log "$what is up"
}

# The command a service's process runs: its pid file alone proves nothing, since a pid can be reused.
service_command() {
  case "$1" in
    tansu) printf 'tansu' ;;
    lag-exporter | fanout-*) printf '%s' "$FANLINE_BIN/fanout" ;;
    *) printf '%s' "$FANLINE_BIN/$1" ;;
  esac
}

# Whether PID is a live (not zombie) process running COMMAND.
process_is() {
  local pid="$1" command="$2" state
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  state="$(ps -o stat= -p "$pid" 2>/dev/null)" || return 1
  case "$state" in Z*) return 1 ;; esac
  [ "$(tr '\0' '\n' <"/proc/$pid/cmdline" | head -n 1)" = "$command" ]
}

# Stops PID if it runs COMMAND: SIGTERM, SIGKILL after SECONDS; returns once it is gone.
stop_process() {
  local pid="$1" command="$2" seconds="$3" waited=0
  process_is "$pid" "$command" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while process_is "$pid" "$command"; do
    if [ "$waited" -ge $((seconds * 2)) ]; then
      log "pid $pid did not stop in $seconds s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    [ "$waited" -ge $((seconds * 2 + 20)) ] && return 1
    sleep 0.5
    waited=$((waited + 1))
  done
}

# tansu: an Apache-Kafka-compatible broker from crates.io, pinned. --locked is required (a newer
# deadpool breaks some storage features); libsql gives the sqlite:// engine, whose high watermarks are
# right (the memory engine's are not). The build takes ~9 minutes, so skip it when the pin is installed.
ensure_tansu() {
  if command -v tansu >/dev/null 2>&1 && tansu --version 2>/dev/null | grep -qx "tansu $TANSU_VERSION"; then
    return 0
  fi
  log "installing tansu $TANSU_VERSION (cargo install, about 9 minutes on 2 cores)"
  cargo install tansu --version "$TANSU_VERSION" --locked --features libsql >&2 \
    || die "cargo install tansu failed"
}

start_broker() {
  if port_open "$FANLINE_BROKER_HOST" "$FANLINE_BROKER_PORT"; then
    log "a broker already listens on $FANLINE_KAFKA_BROKERS"
    return 0
  fi
  ensure_tansu
  mkdir -p "$FANLINE_STATE/tansu" "$FANLINE_STATE/logs"
  log "starting tansu on $FANLINE_KAFKA_BROKERS (data in $FANLINE_STATE/tansu)"
  # Advertise the IPv4 address: librdkafka may resolve "localhost" to ::1 where nothing listens.
  (cd "$FANLINE_STATE/tansu" || exit 1
    nohup tansu broker \
      --listener-url "tcp://$FANLINE_BROKER_HOST:$FANLINE_BROKER_PORT" \
      --advertised-listener-url "tcp://$FANLINE_BROKER_HOST:$FANLINE_BROKER_PORT" \
      --storage-engine "sqlite://tansu.db" \
      >>"$FANLINE_STATE/logs/tansu.log" 2>&1 &
    echo $! >"$FANLINE_STATE/tansu.pid")
  wait_for "tansu" 60 port_open "$FANLINE_BROKER_HOST" "$FANLINE_BROKER_PORT" \
    || die "tansu did not start; see $FANLINE_STATE/logs/tansu.log"
}

# Postgres runs as a machine service here; start the cluster if it is down.
ensure_postgres() {
  if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then return 0; fi
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    log "starting Postgres"
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
  fi
  wait_for "Postgres" 30 pg_isready -h 127.0.0.1 -p 5432 -q \
    || die "Postgres is not reachable on 127.0.0.1:5432"
}

# Debian's prometheus: the operations test runs a real one against the services.
ensure_prometheus() {
  if command -v prometheus >/dev/null 2>&1; then return 0; fi
  log "installing prometheus from Debian's packages"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >&2 \
    || die "cannot install prometheus"
}

# Debian's chromium and chromedriver: the web client's test drives a real headless browser.
ensure_chromium() {
  # A Chinese font too (the search test's screenshots show Chinese messages; without one, boxes).
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 \
    && dpkg -s fonts-wqy-zenhei >/dev/null 2>&1; then return 0; fi
  log "installing chromium, chromium-driver and a Chinese font from Debian's packages"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
    fonts-wqy-zenhei >&2 || die "cannot install chromium, chromium-driver and fonts-wqy-zenhei"
}

# wrk, the HTTP load generator of scripts/bench.sh (Debian's package).
ensure_wrk() {
  if command -v wrk >/dev/null 2>&1; then return 0; fi
  log "installing wrk from Debian's packages"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2 \
    || die "cannot install wrk"
}

# schemathesis (PyPI), pinned, in the project's own virtualenv: the OpenAPI test runs it against the
# services. Skipped when the pinned version is installed.
ensure_schemathesis() {
  local venv="$FANLINE_STATE/venv"
  if [ -x "$venv/bin/st" ] && "$venv/bin/st" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
    return 0
  fi
  log "installing schemathesis $SCHEMATHESIS_VERSION into $venv (PyPI)"
  python3 -m venv "$venv" >&2 || die "python3 -m venv $venv failed"
  "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION" >&2 \
    || die "pip install schemathesis==$SCHEMATHESIS_VERSION failed"
}

# An S3-compatible server for the attachment tests: moto's server mode (PyPI). The machine's own
# Python may already have it; otherwise the pinned version goes into the project's virtualenv.
# Exports FANLINE_TEST_S3_SERVER, the command that starts one (it takes `-p PORT`).
ensure_moto() {
  local venv="$FANLINE_STATE/venv"
  if python3 -c 'import moto.server, flask_cors' 2>/dev/null; then
    export FANLINE_TEST_S3_SERVER="python3 -m moto.server"
    return 0
  fi
  if ! "$venv/bin/python" -c 'import moto.server, flask_cors' 2>/dev/null; then
    log "installing moto[server] $MOTO_VERSION into $venv (PyPI)"
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2 || die "python3 -m venv $venv failed"
    "$venv/bin/pip" install -q "moto[server]==$MOTO_VERSION" >&2 \
      || die "pip install moto[server]==$MOTO_VERSION failed"
  fi
  export FANLINE_TEST_S3_SERVER="$venv/bin/python -m moto.server"
}
