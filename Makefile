# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# `make demo PORT=9800` when 9718 is taken (ERROR_EXPORTER_PORT=9800 works as well).
PORT ?=

.PHONY: demo test lint docs unit compat tools stack bench dashboards clean

# What running the app needs (make demo): the package and its four dependencies.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

# The test, lint and dashboard tools on top (make test): the `dev` extra.
$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/error-exporter demo $(if $(PORT),--port $(PORT))

# Real Prometheus / Alertmanager / redis-server / PostgreSQL / nginx binaries for the integration
# tests (Debian packages).
tools:
	@if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null \
	    || ! command -v redis-server >/dev/null || ! command -v nginx >/dev/null \
	    || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends prometheus prometheus-alertmanager docker-compose \
	      redis-server postgresql nginx-light >/dev/null; \
	  else \
	    echo "promtool/amtool/redis-server/initdb/nginx missing: install the Debian packages prometheus, prometheus-alertmanager, redis-server, postgresql and nginx-light"; \
	  fi; \
	fi

# Formatting, lint and types: ruff format (checked, never rewritten here), ruff check, and
# mypy --strict on the whole package (pyproject.toml).
LINTED := exporter tests bench dashboards examples alerts deploy
lint: $(DEV_STAMP)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy

# The documentation site (mkdocs.yml, docs/): --strict, so a broken link, anchor or nav entry
# fails; the site goes to .site/ (gitignored).
docs: $(DEV_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir .site

test: $(DEV_STAMP) tools lint docs
	$(BIN)/pytest

unit: $(DEV_STAMP)
	$(BIN)/pytest -m "not slow and not tools"

stack: $(STAMP) tools
	bash deploy/stack.sh

# The benchmarks run in their own environment: the peers they compare against (Flask,
# Starlette, prometheus-flask-exporter, starlette-exporter, sentry-sdk) and the shared
# store's driver are installed there only, never in the app's (pytest too: bench_shared_store
# starts its PostgreSQL with the tests' own helper).
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -e '.[postgres]' flask starlette httpx \
	  prometheus-flask-exporter starlette-exporter 'sentry-sdk[flask]' pytest
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python bench/run.py

dashboards: $(DEV_STAMP)
	$(BIN)/python dashboards/build.py && $(BIN)/python alerts/build.py

clean:
	rm -rf $(VENV) .venv-3.* $(BENCH_VENV) .pytest_cache .mypy_cache .ruff_cache .site

# The fast unit tests on the oldest and the newest Python the package claims (pyenv's
# 3.10 and 3.13; CI runs this after `make test`).
COMPAT_PYTHONS ?= 3.10 3.13
compat:
	@for version in $(COMPAT_PYTHONS); do \
	  python=$$(ls -d "$${PYENV_ROOT:-$$HOME/.pyenv}"/versions/$$version.*/bin/python 2>/dev/null | sort -V | tail -1); \
	  if [ -z "$$python" ]; then echo "Python $$version is not installed (pyenv)"; exit 1; fi; \
	  echo "== unit tests on $$($$python --version)"; \
	  $$python -m venv .venv-$$version && \
	  .venv-$$version/bin/pip install --quiet --upgrade pip && \
	  .venv-$$version/bin/pip install --quiet -e '.[dev]' && \
	  .venv-$$version/bin/pytest -q -m "not slow and not tools" || exit 1; \
	done
