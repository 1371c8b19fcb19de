# Two commands matter: `make run` (the platform on embedded servers) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REQUIREMENTS := requirements.txt requirements-dev.txt requirements-embedded.txt
REQS_HASH := $(shell cat $(REQUIREMENTS) | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(REQS_HASH)
PYTEST_ARGS ?=
# Everything mypy checks: the platform, the toolkit, the generation service and the load tests.
TYPED := quantumquill shardrouter apps migrations_tooling contentgen_service locustfiles

.PHONY: run observe test test-fast system-deps lint typecheck check clean-stack dist

# requirements-embedded.txt: the PostgreSQL and Redis wheels of the embedded stack (never in the images).
$(STAMP): $(REQUIREMENTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -r requirements-embedded.txt
	@touch $(STAMP)

## run: start PostgreSQL x3 and Redis (embedded unless configured), migrate, seed demo users, serve :8000
## (PGBOUNCER=1: the app goes through one PgBouncer per server in transaction mode; docs/connections.md)
run: $(STAMP)
	$(BIN)/python -m quantumquill.devstack run $(if $(PGBOUNCER),--pgbouncer)

## observe: Prometheus (when installed) scraping what `make run` started, alert rules loaded; prints its URL
observe: $(STAMP)
	$(BIN)/python -m quantumquill.devstack observe

## test: the whole suite on private, real servers: TEST_WORKERS (3) in parallel, then the `serial` tests alone (docs/testing.md)
test: $(STAMP) system-deps
	$(BIN)/python -m quantumquill.devstack exec --profile test -- $(BIN)/python -m tests.support.suite $(PYTEST_ARGS)

## test-fast: the quick loop, every test not marked slow (no servers or processes of their own); under 2 minutes
test-fast: $(STAMP)
	$(BIN)/python -m quantumquill.devstack exec --profile test -- $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## system-deps: nginx and Chromium for the end-to-end tests (installed with apt when missing)
system-deps:
	@./scripts/system-deps.sh

## lint: ruff's rules and its formatting, checked (`ruff format .` fixes the formatting)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## typecheck: mypy with the Django plugin (which reads the settings, hence a private stack)
typecheck: $(STAMP)
	$(BIN)/python -m quantumquill.devstack exec --profile test -- $(BIN)/mypy $(TYPED)

## check: what CI runs (.ci/run): lint, types, then the whole suite
check: lint typecheck test

## dist: the toolkit's wheels (django-shardrouter, django-shardmove) in dist/ (docs/adopting.md)
dist: $(STAMP)
	$(BIN)/python scripts/build_dists.py --out dist

clean-stack:
	-$(BIN)/python -m quantumquill.devstack down --profile dev
	rm -rf var/devstack var/teststack

# --- Load tests (locustfiles/, docs/load-testing.md) -------------------------------------------------
# The CI gate (a short headless baseline) runs inside `make test`: tests/loadtest/test_gate.py.
SHAPE ?= baseline
LOADTEST_ARGS ?=
.PHONY: loadtest loadtest-headless loadtest-migration

## loadtest: Locust's web UI on http://127.0.0.1:8089 (starts the platform unless one answers; HOST=URL to aim elsewhere; WORKERS=N: a master and N worker processes)
loadtest: $(STAMP)
	$(BIN)/python -m locustfiles.run $(if $(HOST),--host $(HOST)) $(if $(WORKERS),--workers $(WORKERS)) $(LOADTEST_ARGS)

## loadtest-headless: SHAPE=baseline|stress|spike|soak without the UI; reports in reports/, exit status = verdict
loadtest-headless: $(STAMP)
	$(BIN)/python -m locustfiles.run --headless --shape $(SHAPE) $(if $(HOST),--host $(HOST)) $(if $(WORKERS),--workers $(WORKERS)) $(LOADTEST_ARGS)

## loadtest-migration: baseline load while a shard move copies and cuts over; report in reports/migration-*
loadtest-migration: $(STAMP)
	$(BIN)/python scripts/migration_under_load.py $(LOADTEST_ARGS)
