# The two commands: `make run` and `make test`. Everything installs into .venv.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
DEMO_MCP_PORT ?= 8765
# The service-backed suite's defaults: the local PostgreSQL and Redis.
SERVICES_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
SERVICES_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test test-services lint format install install-dev clean bench

$(VENV)/.runtime: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

# Serve the API and the admin on the embedded defaults (SQLite, tasks in process), next to a demo
# MCP server on 127.0.0.1:$(DEMO_MCP_PORT) that is allowlisted for outbound calls.
run: install
	@$(PY) manage.py migrate --noinput
	@set -euo pipefail; \
	export MCP_OUTBOUND_ALLOWLIST="$${MCP_OUTBOUND_ALLOWLIST:-127.0.0.1:$(DEMO_MCP_PORT)}"; \
	$(PY) -m core.demo_mcp_server --host 127.0.0.1 --port $(DEMO_MCP_PORT) >var/demo-mcp.log 2>&1 & demo=$$!; \
	trap 'kill $$demo 2>/dev/null || true' EXIT INT TERM; \
	creds=$$($(PY) manage.py create_api_key --email demo@example.com --organization "Demo organization" --json); \
	org=$$($(PY) -c 'import json,sys; print(json.load(sys.stdin)["organizationId"])' <<<"$$creds"); \
	key=$$($(PY) -c 'import json,sys; print(json.load(sys.stdin)["apiKey"])' <<<"$$creds"); \
	echo; echo "Demo organization: $$org"; echo "Demo API key (shown once): $$key"; echo; \
	echo "Try:"; \
	echo "  curl -s -X POST http://127.0.0.1:$(PORT)/api/public/organizations/$$org/mcp-servers \\"; \
	echo "    -H 'Authorization: Bearer $$key' -H 'Content-Type: application/json' \\"; \
	echo "    -d '{\"displayName\": \"Demo tools\", \"serverUrl\": \"http://127.0.0.1:$(DEMO_MCP_PORT)/mcp\"}'"; \
	echo; \
	$(PY) manage.py runserver 127.0.0.1:$(PORT) --noreload

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

format: install-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The whole suite on the embedded defaults. pytest's exit code 5 ("no tests collected") is a failure.
test: install-dev lint
	@set +e; $(PY) -m pytest -m "not services"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The service-backed suite: the whole suite again on PostgreSQL (tasks in process), then the tests that
# need Redis as the broker and a real Celery worker, which their fixtures start.
test-services: install-dev
	@set +e; DATABASE_URL="$(SERVICES_DATABASE_URL)" $(PY) -m pytest -m "not services"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-services: pytest collected no tests" >&2; exit 1; fi; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	DATABASE_URL="$(SERVICES_DATABASE_URL)" REDIS_URL="$(SERVICES_REDIS_URL)" $(PY) -m pytest -m services; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-services: pytest collected no service tests" >&2; exit 1; fi; exit $$rc

# Benchmarks (bench/): tool sync vs the bare SDK, DB queries, peak RSS, create/list under gunicorn. Needs the local
# PostgreSQL (a throwaway bench_<pid> database) and Redis (db 13, flushed); about 5 minutes.
bench: install-dev
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
