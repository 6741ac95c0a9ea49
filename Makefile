# The two commands: `make run` and `make test`. Everything else builds on `venv` and `services`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

# The servers' URLs and ports come from config/servers.py, the one place that derives them
# (from the environment, then .env, then defaults) for Django and Celery as well. Without
# DATABASE_URL / REDIS_URL, the project starts and uses its own servers (scripts/services.sh).
# Make's command-line variables (`make run PORT=8123`) are passed on explicitly.
SERVER_VARS := DATABASE_URL DATABASE_REPLICA_URL REDIS_URL LOCAL_PG_PORT LOCAL_PG_REPLICA_PORT \
	LOCAL_REDIS_PORT PORT SITE_URL APT_LOCK_WAIT
SERVERS := $(shell $(foreach v,$(SERVER_VARS),$(v)='$($(v))') $(PYTHON) config/servers.py)
ifneq ($(.SHELLSTATUS),0)
$(error config/servers.py could not derive the server settings (see above))
endif
$(foreach setting,$(SERVERS),$(eval export $(setting)))

.PHONY: help venv services stop migrate seed run test lint bench audit screenshots
help:
	@echo "make run      everything up with demo data on $(SITE_URL) (Ctrl-C stops it; PORT moves it)"
	@echo "make test     everything the tests need, then ruff and the whole test suite"
	@echo "make bench    benchmarks, one JSON line each"
	@echo "make screenshots  every page at 1280 and 390 px, into screenshots/"
	@echo "make services start (or reuse) the local PostgreSQL and Redis;  make stop  stops them (and the replica)"
	@echo "make lock     relock requirements/ after editing pyproject.toml (ARGS=\"--upgrade-package NAME\")"

# The virtualenv is rebuilt only when a lock file changes. dev.txt is runtime.txt plus the dev
# tools, every line hash-pinned; pip refuses any file, or any dependency, the lock does not pin.
$(BIN)/.installed: requirements/dev.txt requirements/runtime.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements/dev.txt
	@touch $@
venv: $(BIN)/.installed

# Both hash-pinned locks from pyproject.toml with the uv that .venv pins (see scripts/lock.sh).
.PHONY: lock
lock: venv
	scripts/lock.sh $(ARGS)

services:
	@scripts/services.sh start

stop:
	@scripts/services.sh stop

migrate: venv services
	$(BIN)/python manage.py migrate --no-input

seed: migrate
	$(BIN)/python manage.py seed_demo

run: seed
	@echo "Starting web ($(SITE_URL)), Celery worker and beat. Ctrl-C stops them all."
	$(BIN)/honcho --procfile Procfile.dev start --port $(PORT)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The local streaming replica is for tests/config/test_replica.py, which finds it by its port.
# TEST_WORKERS pytest processes share the suite a file at a time (one per core here); each has
# its own test database and Redis database (config/settings/test.py). At most 14.
TEST_WORKERS ?= 2
test: venv services
	@scripts/services.sh browser
	@scripts/services.sh replica
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

audit: venv services
	$(BIN)/python manage.py credits_audit

# Every page of every role at 1280 and 390 px, into screenshots/ (git-ignored).
screenshots: venv services
	@scripts/services.sh browser
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/pytest -q -s -p no:cacheprovider \
		-o python_files=screenshots.py tests/browser/screenshots.py

bench: venv services
	DJANGO_SETTINGS_MODULE=config.settings.bench $(BIN)/python -m bench
