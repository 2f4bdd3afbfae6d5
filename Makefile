# Two commands matter: `make demo` and `make test` (see README). The rest are their parts.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

# The test suite's own secrets: never used outside tests.
TEST_ENV := SECRET_KEY=test-only-secret-key FIELD_ENCRYPTION_KEYS=dGVzdC1vbmx5LWZpZWxkLWtleS0wMDAwMDAwMDAwMDA= \
	SALTO_KS_CLIENT_ID=test-client SALTO_KS_CLIENT_SECRET=test-client-secret DEBUG=0
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/ireserve
REDIS_TEST_URL ?= redis://127.0.0.1:6379/9
PYTEST_ARGS ?=

.PHONY: demo test lint format install system-deps services test-postgres test-sqlite bench mutation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	DEBUG=1 $(PY) manage.py demo

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
system-deps:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

services:
	@bash scripts/ensure-services.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(TEST_ENV) $(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-postgres: $(STAMP)
	$(TEST_ENV) DATABASE_URL=$(PG_TEST_URL) REDIS_URL=$(REDIS_TEST_URL) $(PY) -m pytest $(PYTEST_ARGS)

# The quicker second pass: the embedded default (SQLite, no Redis, tasks in-process).
test-sqlite: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -m "not postgres and not e2e and not browser" $(PYTEST_ARGS)

test: $(STAMP) system-deps services lint test-postgres test-sqlite

# Benchmarks that print their figures (bench/README.md): a dedicated database (dropped and re-created) and Redis DB.
BENCH_PG_URL ?= postgres://postgres@127.0.0.1:5432/ireserve_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/15
BENCH_SCALE_PG_URL ?= postgres://postgres@127.0.0.1:5432/ireserve_bench_scale

bench: $(STAMP) services
	$(TEST_ENV) BENCH_DATABASE_URL=$(BENCH_PG_URL) BENCH_REDIS_URL=$(BENCH_REDIS_URL) $(PY) -m bench.open_latency
	$(TEST_ENV) BENCH_REDIS_URL=$(BENCH_REDIS_URL) $(PY) -m bench.token_concurrency
	$(TEST_ENV) BENCH_DATABASE_URL=$(BENCH_SCALE_PG_URL) BENCH_REDIS_URL=$(BENCH_REDIS_URL) $(PY) -m bench.scale
	$(TEST_ENV) BENCH_REDIS_URL=$(BENCH_REDIS_URL) $(PY) -m bench.open_path
	$(TEST_ENV) $(PY) -m bench.burst

# Mutation testing (docs/testing.md): cosmic-ray on the modules that decide opens, each against the tests that cover
# it, on SQLite without Redis; not part of `make test` (about an hour on two shared cores). MUTATION_ARGS='--module
# locks/tokens.py' runs one module.
MUTATION_ARGS ?=

mutation: $(STAMP)
	$(PY) scripts/mutation.py $(MUTATION_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles .pytest_cache .mypy_cache .ruff_cache .import_linter_cache test-artifacts
