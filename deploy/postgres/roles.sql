-- The shared store's database and its two least-privilege roles (README: "Least-privilege
-- roles"): the app's role owns its own schema and nothing else; Grafana's reads it.
--
--   psql -v app_password=... -v grafana_password=... -v database=errors -f roles.sql
--
-- Run as an administrator. docker-compose runs it at the first start of its postgres
-- service (deploy/postgres/init.sh), deploy/stack.sh on the local server, and
-- tests/test_reports_dashboard.py on the test server before the demo writes and every
-- panel's query runs as grafana_errors.
\set ON_ERROR_STOP on
CREATE ROLE error_exporter LOGIN PASSWORD :'app_password';
CREATE ROLE grafana_errors LOGIN PASSWORD :'grafana_password';
CREATE DATABASE :"database";
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"database" TO error_exporter, grafana_errors;
\connect :"database"
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA error_exporter AUTHORIZATION error_exporter;
ALTER ROLE error_exporter IN DATABASE :"database" SET search_path = error_exporter;
GRANT USAGE ON SCHEMA error_exporter TO grafana_errors;
ALTER DEFAULT PRIVILEGES FOR ROLE error_exporter IN SCHEMA error_exporter
    GRANT SELECT ON TABLES TO grafana_errors;
ALTER ROLE grafana_errors IN DATABASE :"database" SET search_path = error_exporter;
ALTER ROLE grafana_errors SET default_transaction_read_only = on;
