#!/usr/bin/env bash
# Run the error-exporter demo with Debian's prometheus and prometheus-alertmanager on loopback,
# using the shipped alerts/rules.yml and alerts/alertmanager.yml (no Docker needed).
#
#   deploy/stack.sh            # or: make stack ; Ctrl-C stops everything
#
# Environment overrides:
#   APP_PORT (9718)  PROM_PORT (9090)  AM_PORT (9093)  SCRAPE_INTERVAL (5s)
#   STACK_DIR (.stack: configs, data and logs)  EXPORTER (.venv/bin/error-exporter)
#   PROMETHEUS (prometheus)  ALERTMANAGER (prometheus-alertmanager)
#   PG_PORT (5433)  STACK_POSTGRES (auto: 1 when the postgresql package and psycopg are
#   installed; 0 never)  ERROR_EXPORTER_DB_PASSWORD  GRAFANA_DB_PASSWORD
# With the local postgresql package (Debian: postgresql) the demo writes its reports to a
# PostgreSQL of the stack's own (the shared store; roles from deploy/postgres/roles.sql, as
# docker-compose's postgres service): `error-exporter serve --store URL` and Grafana's
# Reports dashboard read it. Without it the demo runs on memory, as `make demo` does.
# When something already answers http://127.0.0.1:$APP_PORT/healthz the demo is not started
# and that process is scraped instead.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APP_PORT=${APP_PORT:-9718}
PROM_PORT=${PROM_PORT:-9090}
AM_PORT=${AM_PORT:-9093}
SCRAPE_INTERVAL=${SCRAPE_INTERVAL:-5s}
STACK_DIR=${STACK_DIR:-$ROOT/.stack}
EXPORTER=${EXPORTER:-$ROOT/.venv/bin/error-exporter}
PROMETHEUS=${PROMETHEUS:-prometheus}
ALERTMANAGER=${ALERTMANAGER:-prometheus-alertmanager}

pids=()

log() { printf '[stack] %s\n' "$*" >&2; }

http_ok() {
    if command -v curl >/dev/null 2>&1; then
        curl -fs -o /dev/null --max-time 2 "$1"
    else
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
            "$1" >/dev/null 2>&1
    fi
}

wait_ready() {  # name url pid log
    local i
    for i in $(seq 1 150); do
        if http_ok "$2"; then
            log "$1 ready: ${2%/-/ready}"
            return 0
        fi
        if [ -n "$3" ] && ! kill -0 "$3" 2>/dev/null; then
            log "$1 exited; last lines of $4:"
            tail -n 20 "$4" >&2 || true
            return 1
        fi
        sleep 0.2
    done
    log "$1 not ready after 30s; see $4"
    return 1
}

cleanup() {
    trap - EXIT INT TERM
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    log "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in "$PROMETHEUS" "$ALERTMANAGER"; do
    command -v "$tool" >/dev/null 2>&1 || {
        log "$tool not found: apt-get install -y --no-install-recommends prometheus prometheus-alertmanager"
        exit 1
    }
done

mkdir -p "$STACK_DIR/prometheus" "$STACK_DIR/alertmanager"

# --- PostgreSQL: the demo's shared store, when the local package is there ---------------------
PG_PORT=${PG_PORT:-5433}
STACK_POSTGRES=${STACK_POSTGRES:-auto}
store_url=""

start_postgres() {
    local bin pgdir as=()
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$bin" ] && [ -x "$bin/initdb" ] || { log "no postgresql package: the demo runs on memory"; return 0; }
    "$(dirname "$EXPORTER")/python" -c 'import psycopg' 2>/dev/null \
        || { log "psycopg not installed (pip install 'error-exporter[postgres]'): no shared store"; return 0; }
    pgdir="$STACK_DIR/postgres"
    mkdir -p "$pgdir"
    if [ "$(id -u)" = 0 ]; then  # PostgreSQL refuses to run as root
        id postgres >/dev/null 2>&1 || { log "no postgres user: no shared store"; return 0; }
        chown postgres: "$pgdir" && chmod 700 "$pgdir"
        as=(runuser -u postgres --)
    fi
    if [ ! -f "$pgdir/data/PG_VERSION" ]; then
        "${as[@]}" "$bin/initdb" -D "$pgdir/data" -U postgres --auth-local=trust \
            --auth-host=scram-sha-256 -E UTF8 >"$STACK_DIR/postgres-init.log" 2>&1 \
            || { log "initdb failed; see $STACK_DIR/postgres-init.log"; return 1; }
        fresh=1
    fi
    "${as[@]}" "$bin/postgres" -D "$pgdir/data" -p "$PG_PORT" -c listen_addresses=127.0.0.1 \
        -c unix_socket_directories="$pgdir" >"$STACK_DIR/postgres.log" 2>&1 &
    pids+=("$!")
    for _ in $(seq 1 150); do
        "${as[@]}" psql -h "$pgdir" -p "$PG_PORT" -U postgres -d postgres -c 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.2
    done
    if [ -n "${fresh:-}" ]; then  # the roles of docker-compose's postgres service
        "${as[@]}" psql -h "$pgdir" -p "$PG_PORT" -U postgres -d postgres -q \
            -v app_password="${ERROR_EXPORTER_DB_PASSWORD:-change-me}" \
            -v grafana_password="${GRAFANA_DB_PASSWORD:-change-me-too}" -v database=errors \
            -f "$ROOT/deploy/postgres/roles.sql" >>"$STACK_DIR/postgres-init.log" 2>&1 \
            || { log "roles.sql failed; see $STACK_DIR/postgres-init.log"; return 1; }
    fi
    store_url="postgresql://error_exporter:${ERROR_EXPORTER_DB_PASSWORD:-change-me}@127.0.0.1:$PG_PORT/errors"
    log "postgresql ready: 127.0.0.1:$PG_PORT/errors (app role error_exporter, Grafana's grafana_errors)"
}

# --- the demo application -------------------------------------------------------------------
if http_ok "http://127.0.0.1:$APP_PORT/healthz"; then
    log "an exporter already answers on 127.0.0.1:$APP_PORT; not starting the demo"
else
    [ -x "$EXPORTER" ] || { log "$EXPORTER not found: create the venv first (make install)"; exit 1; }
    if [ "$STACK_POSTGRES" != 0 ]; then
        start_postgres
    fi
    ERROR_EXPORTER_STORE_URL="$store_url" \
        "$EXPORTER" demo --port "$APP_PORT" --no-live >"$STACK_DIR/demo.log" 2>&1 &
    pids+=("$!")
    wait_ready demo "http://127.0.0.1:$APP_PORT/healthz" "$!" "$STACK_DIR/demo.log"
fi

# --- Alertmanager (shipped config; its webhook placeholder is http://127.0.0.1:5001/) ---------
"$ALERTMANAGER" \
    --config.file="$ROOT/alerts/alertmanager.yml" \
    --storage.path="$STACK_DIR/alertmanager" \
    --web.listen-address="127.0.0.1:$AM_PORT" \
    --web.external-url="http://127.0.0.1:$AM_PORT" \
    --cluster.listen-address= \
    >"$STACK_DIR/alertmanager.log" 2>&1 &
pids+=("$!")
wait_ready alertmanager "http://127.0.0.1:$AM_PORT/-/ready" "$!" "$STACK_DIR/alertmanager.log"

# --- Prometheus (same jobs as deploy/prometheus.yml, loopback targets) -------------------------
cat >"$STACK_DIR/prometheus.yml" <<YAML
# Generated by deploy/stack.sh; see deploy/prometheus.yml for the docker-compose version.
global:
  scrape_interval: $SCRAPE_INTERVAL
  evaluation_interval: $SCRAPE_INTERVAL
rule_files:
  - $ROOT/alerts/rules.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$AM_PORT"]
scrape_configs:
  - job_name: error-exporter
    static_configs:
      - targets: ["127.0.0.1:$APP_PORT"]
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:$PROM_PORT"]
  - job_name: alertmanager
    static_configs:
      - targets: ["127.0.0.1:$AM_PORT"]
YAML
"$PROMETHEUS" \
    --config.file="$STACK_DIR/prometheus.yml" \
    --storage.tsdb.path="$STACK_DIR/prometheus" \
    --web.listen-address="127.0.0.1:$PROM_PORT" \
    --web.external-url="http://127.0.0.1:$PROM_PORT" \
    --enable-feature=exemplar-storage \
    --web.enable-lifecycle \
    >"$STACK_DIR/prometheus.log" 2>&1 &
pids+=("$!")
wait_ready prometheus "http://127.0.0.1:$PROM_PORT/-/ready" "$!" "$STACK_DIR/prometheus.log"

store_line="none (the demo runs on memory)"
if [ -n "$store_url" ]; then  # never the password
    store_line="postgresql://error_exporter:***@127.0.0.1:$PG_PORT/errors (serve --store reads it)"
fi
cat >&2 <<EOF2
[stack] up:
  exporter      http://127.0.0.1:$APP_PORT/metrics  (JSON API: /api/v1/statistics)
  prometheus    http://127.0.0.1:$PROM_PORT  (alerts: /alerts, targets: /targets)
  alertmanager  http://127.0.0.1:$AM_PORT
  shared store  $store_line
  logs and data $STACK_DIR
[stack] Ctrl-C to stop.
EOF2

# Block until Ctrl-C or until one of the processes exits (then stop the others).
set +e
wait -n "${pids[@]}"
status=$?
log "a process exited (status $status); stopping the stack"
exit "$status"
