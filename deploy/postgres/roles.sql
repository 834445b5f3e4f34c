-- The shared store's database and its two least-privilege roles (README: "Least-privilege
-- roles"): the app's role owns its own schema and nothing else; Grafana's reads it.
--
--   psql -v app_password=... -v grafana_password=... -v database=errors -f roles.sql
--
-- Run as an administrator. docker-compose runs it at the first start of its postgres
-- service (deploy/postgres/init.sh), deploy/stack.sh on the local server, and
-- tests/test_reports_dashboard.py on the test server before the demo writes and every
-- panel's query runs as grafana_errors.
-- The role names may be given too (-v app_role=... -v grafana_role=...); the tables live in
-- the schema error_exporter, owned by the app's role.
\set ON_ERROR_STOP on
\if :{?app_role}
\else
  \set app_role error_exporter
\endif
\if :{?grafana_role}
\else
  \set grafana_role grafana_errors
\endif
CREATE ROLE :"app_role" LOGIN PASSWORD :'app_password';
CREATE ROLE :"grafana_role" LOGIN PASSWORD :'grafana_password';
CREATE DATABASE :"database";
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"database" TO :"app_role", :"grafana_role";
\connect :"database"
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA error_exporter AUTHORIZATION :"app_role";
ALTER ROLE :"app_role" IN DATABASE :"database" SET search_path = error_exporter;
GRANT USAGE ON SCHEMA error_exporter TO :"grafana_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"app_role" IN SCHEMA error_exporter
    GRANT SELECT ON TABLES TO :"grafana_role";
ALTER ROLE :"grafana_role" IN DATABASE :"database" SET search_path = error_exporter;
ALTER ROLE :"grafana_role" SET default_transaction_read_only = on;
