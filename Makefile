# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# `make demo PORT=9800` when 9718 is taken (ERROR_EXPORTER_PORT=9800 works as well).
PORT ?=

.PHONY: demo test lint unit tools stack bench dashboards clean

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

# Real Prometheus / Alertmanager / redis-server binaries for the integration tests (Debian packages).
tools:
	@if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null \
	    || ! command -v redis-server >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends prometheus prometheus-alertmanager docker-compose \
	      redis-server >/dev/null; \
	  else \
	    echo "promtool/amtool/redis-server missing: install the Debian packages prometheus, prometheus-alertmanager and redis-server"; \
	  fi; \
	fi

lint: $(DEV_STAMP)
	$(BIN)/ruff check exporter tests bench dashboards examples alerts
	$(BIN)/mypy

test: $(DEV_STAMP) tools lint
	$(BIN)/pytest

unit: $(DEV_STAMP)
	$(BIN)/pytest -m "not slow and not tools"

stack: $(STAMP) tools
	bash deploy/stack.sh

bench: $(STAMP)
	$(BIN)/python bench/run.py

dashboards: $(DEV_STAMP)
	$(BIN)/python dashboards/build.py && $(BIN)/python alerts/build.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
