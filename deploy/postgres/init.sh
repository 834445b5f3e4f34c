#!/usr/bin/env bash
# docker-entrypoint-initdb.d hook of docker-compose's postgres service (first start only):
# the errors database and the roles of deploy/postgres/roles.sql, passwords from the
# environment (ERROR_EXPORTER_DB_PASSWORD, GRAFANA_DB_PASSWORD).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v app_password="$ERROR_EXPORTER_DB_PASSWORD" \
    -v grafana_password="$GRAFANA_DB_PASSWORD" \
    -v database="${ERROR_EXPORTER_DB:-errors}" \
    -f /etc/error-exporter/roles.sql
