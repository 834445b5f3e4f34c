# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit tools stack bench dashboards clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/error-exporter demo

# Real Prometheus / Alertmanager binaries for the integration tests (Debian packages).
tools:
	@if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends prometheus prometheus-alertmanager docker-compose >/dev/null; \
	  else \
	    echo "promtool/amtool missing: install the Debian packages prometheus and prometheus-alertmanager"; \
	  fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check exporter tests bench dashboards examples
	$(BIN)/mypy

test: $(STAMP) tools lint
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest -m "not slow and not tools"

stack: $(STAMP) tools
	bash deploy/stack.sh

bench: $(STAMP)
	$(BIN)/python bench/run.py

dashboards: $(STAMP)
	$(BIN)/python dashboards/build.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
