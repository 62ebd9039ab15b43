#!/usr/bin/env bash
# svcflow in production on one machine: a Prefect server on PostgreSQL, the svcflow store on
# PostgreSQL, a process work pool with the case-flow and sweep deployments, and workers.
#
#   scripts/prefect_stack.sh start          # databases, server (free port), pool, deployments, workers
#   scripts/prefect_stack.sh status         # what runs, where; `source $STACK_DIR/env` to use it
#   scripts/prefect_stack.sh stop [--drop]  # workers, then the server; --drop also drops both databases
#                                           # (and waits only 2 s, not 20, for each to stop)
#   scripts/prefect_stack.sh restart-server # stop the server and start it again on the same port
#   scripts/prefect_stack.sh kill-worker N  # SIGKILL worker N and the flow runs it started (a machine dies)
#   scripts/prefect_stack.sh start-worker N # (re)start worker N
#
# Settings (environment, defaults in brackets):
#   STACK_NAME [svcflow]   databases prefect_$STACK_NAME and svcflow_$STACK_NAME
#   STACK_DIR  [./.prefect-stack/$STACK_NAME]  pids, logs, PREFECT_HOME and the env file
#   PG_URL     [postgresql://postgres@127.0.0.1:5432]  server to create the databases on
#   PORT       [first free from 4200]   WORKERS [2]   POOL [svcflow]
#   POOL_LIMIT [8]         most flow runs at once on the pool (a work-pool concurrency limit: Prefect
#                          3.8 workers started with --limit crash when a suspended run comes back)
#   WORKER_POLL_SECONDS [5]   how often workers ask for runs (Prefect's default is 10)
#   SWEEP_INTERVAL [60]       seconds between escalation sweeps
#   HEARTBEAT_SECONDS [30]    flow-run heartbeats (what `svcflow reconcile --stale-after` judges by)
#   PYTHON     [.venv/bin/python of the checkout, else python3]
#   SVCFLOW_* variables (SVCFLOW_CLOCK, SVCFLOW_ARTIFACTS ...) are passed on to the flow runs.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STACK_NAME=${STACK_NAME:-svcflow}
STACK_DIR=${STACK_DIR:-$ROOT/.prefect-stack/$STACK_NAME}
PG_URL=${PG_URL:-postgresql://postgres@127.0.0.1:5432}
WORKERS=${WORKERS:-2}
POOL_LIMIT=${POOL_LIMIT:-8}
WORKER_POLL_SECONDS=${WORKER_POLL_SECONDS:-5}
POOL=${POOL:-svcflow}
SWEEP_INTERVAL=${SWEEP_INTERVAL:-60}
HEARTBEAT_SECONDS=${HEARTBEAT_SECONDS:-30}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
PREFECT_DB="prefect_${STACK_NAME}"
STORE_DB="svcflow_${STACK_NAME}"
PG_HOSTPART="${PG_URL#postgresql://}"

log() { printf '[stack %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stop a process group started with setsid: TERM, then KILL after a grace period.
stop_group() {
  local pidfile=$1 grace=${2:-15} sig=${3:-TERM}
  [[ -f "$pidfile" ]] || return 0
  local pid; pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "-$sig" -- "-$pid" 2>/dev/null || kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((grace * 5))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# A process and all its descendants (flow-run processes may live in sessions of their own).
tree() {
  local pid=$1 child
  echo "$pid"
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do tree "$child"; done
}

# SIGKILL a process and its descendants at once: what a machine that dies does to them.
kill_tree() {
  local pidfile=$1
  [[ -f "$pidfile" ]] || return 0
  local pids; pids=$(tree "$(cat "$pidfile")")
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  rm -f "$pidfile"
}

create_databases() {
  "$PYTHON" - "$PG_URL" "$PREFECT_DB" "$STORE_DB" <<'EOF'
import sys
import psycopg
url, *names = sys.argv[1:]
with psycopg.connect(url + "/postgres", autocommit=True, connect_timeout=5) as conn:
    for name in names:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")
EOF
}

drop_databases() {
  "$PYTHON" - "$PG_URL" "$PREFECT_DB" "$STORE_DB" <<'EOF'
import sys
import psycopg
url, *names = sys.argv[1:]
with psycopg.connect(url + "/postgres", autocommit=True, connect_timeout=5) as conn:
    for name in names:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"dropped database {name}")
EOF
}

# A port nobody listens on and we can bind, starting at a place that depends on the stack's name
# (two stacks started at the same moment do not pick the same one); PORT wins when set.
free_port() {
  if [[ -n "${PORT:-}" ]]; then echo "$PORT"; return; fi
  "$PYTHON" - "$STACK_NAME" <<'EOF'
import socket
import sys
import zlib
start = 4200 + zlib.crc32(sys.argv[1].encode()) % 400
for port in [*range(start, 4700), *range(4200, start)]:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            continue
    print(port)
    break
EOF
}

wait_healthy() {
  local url=$1 deadline=$((SECONDS + ${2:-120}))
  until "$PYTHON" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1] + '/health', timeout=2)" "$url" 2>/dev/null; do
    (( SECONDS < deadline )) || die "the Prefect server at $url is not healthy after ${2:-120} s (see $STACK_DIR/logs/server.log)"
    alive "$STACK_DIR/server.pid" || die "the Prefect server exited (see $STACK_DIR/logs/server.log)"
    sleep 0.5
  done
}

start_server() {
  local port; port=$(cat "$STACK_DIR/port")
  log "Prefect server on PostgreSQL ($PREFECT_DB) at http://127.0.0.1:$port"
  PREFECT_HOME="$STACK_DIR/home" \
  PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://${PG_HOSTPART}/${PREFECT_DB}" \
  PREFECT_UI_API_URL="http://127.0.0.1:$port/api" \
  PREFECT_SERVER_ANALYTICS_ENABLED=false \
    setsid "$PYTHON" -m prefect server start --host 127.0.0.1 --port "$port" \
      >>"$STACK_DIR/logs/server.log" 2>&1 < /dev/null &
  echo $! >"$STACK_DIR/server.pid"
  wait_healthy "http://127.0.0.1:$port/api"
  sleep 1
  alive "$STACK_DIR/server.pid" || die "the Prefect server exited: port $port taken? (see $STACK_DIR/logs/server.log)"
}

start_worker() {
  local n=$1
  alive "$STACK_DIR/worker-$n.pid" && { log "worker $n already runs"; return 0; }
  # shellcheck disable=SC1091
  source "$STACK_DIR/env"
  PREFECT_WORKER_QUERY_SECONDS="$WORKER_POLL_SECONDS" PREFECT_WORKER_PREFETCH_SECONDS=5 \
  PREFECT_FLOWS_HEARTBEAT_FREQUENCY="$HEARTBEAT_SECONDS" \
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
    setsid "$PYTHON" -m prefect worker start --pool "$POOL" --name "$STACK_NAME-worker-$n" \
      --type process >>"$STACK_DIR/logs/worker-$n.log" 2>&1 < /dev/null &
  echo $! >"$STACK_DIR/worker-$n.pid"
  log "worker $n (pid $!) on pool $POOL"
}

cmd_start() {
  mkdir -p "$STACK_DIR/logs" "$STACK_DIR/home"
  alive "$STACK_DIR/server.pid" && die "the stack $STACK_NAME already runs (scripts/prefect_stack.sh stop first)"
  create_databases
  free_port >"$STACK_DIR/port"
  local port; port=$(cat "$STACK_DIR/port")
  {
    echo "export PREFECT_API_URL=http://127.0.0.1:$port/api"
    echo "export PREFECT_HOME=$STACK_DIR/home"
    echo "export SVCFLOW_DATABASE_URL=postgresql+psycopg://${PG_HOSTPART}/${STORE_DB}"
    env | grep '^SVCFLOW_' | grep -v '^SVCFLOW_DATABASE_URL=' | sed 's/^/export /; s/=\(.*\)$/="\1"/' || true
  } >"$STACK_DIR/env"
  start_server
  # shellcheck disable=SC1091
  source "$STACK_DIR/env"
  log "deploying run-case and the sweep (every ${SWEEP_INTERVAL}s) to the process pool $POOL"
  (cd "$ROOT" && PYTHONPATH="$ROOT" "$PYTHON" -m svcflow deploy --pool "$POOL" --pool-limit "$POOL_LIMIT" \
    --sweep-interval "$SWEEP_INTERVAL") \
    >>"$STACK_DIR/logs/deploy.log" 2>&1 || die "deploying failed (see $STACK_DIR/logs/deploy.log)"
  for n in $(seq 1 "$WORKERS"); do start_worker "$n"; done
  cmd_status
}

cmd_stop() {
  # with --drop nothing of the stack is kept, so nothing is worth a graceful shutdown's wait
  local grace=20; [[ "${1:-}" == "--drop" ]] && grace=2
  for pidfile in "$STACK_DIR"/worker-*.pid; do
    [[ -e "$pidfile" ]] || continue
    local pids; pids=$(tree "$(cat "$pidfile")")
    stop_group "$pidfile" "$grace"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
  done
  stop_group "$STACK_DIR/server.pid" "$grace"
  log "stopped $STACK_NAME"
  if [[ "${1:-}" == "--drop" ]]; then drop_databases; fi
}

cmd_status() {
  [[ -f "$STACK_DIR/env" ]] || { echo "stack $STACK_NAME: not started"; return 1; }
  local state="down"; alive "$STACK_DIR/server.pid" && state="up (pid $(cat "$STACK_DIR/server.pid"))"
  echo "stack $STACK_NAME ($STACK_DIR)"
  echo "  server:  $state  http://127.0.0.1:$(cat "$STACK_DIR/port")  db $PREFECT_DB"
  echo "  store:   db $STORE_DB"
  for pidfile in "$STACK_DIR"/worker-*.pid; do
    [[ -e "$pidfile" ]] || continue
    local name; name=$(basename "$pidfile" .pid)
    if alive "$pidfile"; then echo "  $name: up (pid $(cat "$pidfile"))"; else echo "  $name: down"; fi
  done
  echo "  logs:    $STACK_DIR/logs    use it: source $STACK_DIR/env"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) shift; cmd_stop "$@" ;;
  status) cmd_status ;;
  restart-server)
    stop_group "$STACK_DIR/server.pid" 20
    start_server ;;
  kill-worker) [[ -n "${2:-}" ]] || die "kill-worker N"; kill_tree "$STACK_DIR/worker-$2.pid" ;;
  start-worker) [[ -n "${2:-}" ]] || die "start-worker N"; start_worker "$2" ;;
  *) echo "usage: $0 start|stop [--drop]|status|restart-server|kill-worker N|start-worker N" >&2; exit 2 ;;
esac
