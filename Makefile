# The two commands: `make run` and `make test`. Everything installs into .venv.
SHELL := /bin/bash
# The oldest supported Python found (3.11 to 3.13): override with PYTHON=python3.13. Another VENV keeps
# one virtualenv per Python side by side (CI: VENV=.venv-3.13 PYTHON=python3.13 make test).
SUPPORTED_PYTHONS := python3.11 python3.12 python3.13 python3
ifndef PYTHON
PYTHON := $(shell for p in $(SUPPORTED_PYTHONS); do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info < (3, 14))' \
	2>/dev/null && { command -v $$p; break; }; done)
endif
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
DEMO_MCP_PORT ?= 8765
# The service-backed suite's defaults: the local PostgreSQL and Redis.
SERVICES_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
SERVICES_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run run-services test test-services lint format install install-dev clean bench

$(VENV)/.runtime: pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no Python 3.11, 3.12 or 3.13 found; install one, or set PYTHON=..." >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

# Compressed, fingerprinted copies of the admin's CSS and JavaScript for WhiteNoise, collected once per install.
var/static/staticfiles.json: $(VENV)/.runtime
	$(PY) manage.py collectstatic --noinput --verbosity 0

install: $(VENV)/.runtime var/static/staticfiles.json
install-dev: $(VENV)/.dev

# Serve the API and the admin on the embedded defaults (SQLite, tasks in process), next to a demo MCP server on
# 127.0.0.1:$(DEMO_MCP_PORT) that is allowlisted for outbound calls; prints an API key and an admin login.
run: install
	@PY=$(PY) PORT=$(PORT) DEMO_MCP_PORT=$(DEMO_MCP_PORT) bash bin/serve

# The same demo on the real stack: gunicorn, a Celery worker and beat (the Procfile, run by honcho) against the
# local PostgreSQL (DATABASE_URL, default database mcp_connectors, created if missing) and Redis (REDIS_URL).
run-services: install
	@PY=$(PY) PORT=$(PORT) DEMO_MCP_PORT=$(DEMO_MCP_PORT) bash bin/serve services

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports --no-cache

format: install-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The whole suite on the embedded defaults. pytest's exit code 5 ("no tests collected") is a failure.
test: install-dev var/static/staticfiles.json lint
	@set +e; $(PY) -m pytest -m "not integration"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The service-backed suite: the whole suite again on PostgreSQL (tasks in process), then the tests that
# need Redis as the broker and a real Celery worker, which their fixtures start.
test-services: install-dev var/static/staticfiles.json
	@set +e; DATABASE_URL="$(SERVICES_DATABASE_URL)" $(PY) -m pytest -m "not integration"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-services: pytest collected no tests" >&2; exit 1; fi; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	DATABASE_URL="$(SERVICES_DATABASE_URL)" REDIS_URL="$(SERVICES_REDIS_URL)" $(PY) -m pytest -m integration; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-services: pytest collected no integration tests" >&2; exit 1; fi; exit $$rc

# Benchmarks (bench/): tool sync vs the bare SDK, DB queries, peak RSS, create/list under gunicorn, tool calls through
# the REST API and the MCP endpoint vs the bare SDK. Needs the local PostgreSQL (a throwaway bench_<pid> database) and
# Redis (db 13, flushed); about 8 minutes.
bench: install-dev
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache celerybeat-schedule*
