# The two commands: `make run` and `make test`. Everything else builds on `venv` and `services`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# A local .env (see .env.example) may set any of the variables below.
-include .env

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
LOCAL_PG_PORT ?= 54329
LOCAL_REDIS_PORT ?= 63799

# Without DATABASE_URL / REDIS_URL the project starts and uses its own servers under .local/.
ifeq ($(strip $(DATABASE_URL)),)
DATABASE_URL := postgres://credits@127.0.0.1:$(LOCAL_PG_PORT)/credits
USE_LOCAL_PG := 1
else
USE_LOCAL_PG := 0
endif
ifeq ($(strip $(REDIS_URL)),)
REDIS_URL := redis://127.0.0.1:$(LOCAL_REDIS_PORT)/0
USE_LOCAL_REDIS := 1
else
USE_LOCAL_REDIS := 0
endif
export DATABASE_URL REDIS_URL LOCAL_PG_PORT LOCAL_REDIS_PORT USE_LOCAL_PG USE_LOCAL_REDIS

.PHONY: help venv services stop migrate seed run test lint bench audit
help:
	@echo "make run      everything up with demo data on http://127.0.0.1:8000 (Ctrl-C stops it)"
	@echo "make test     everything the tests need, then ruff and the whole test suite"
	@echo "make bench    benchmarks, one JSON line each"
	@echo "make services start (or reuse) the local PostgreSQL and Redis;  make stop  stops them"

# The virtualenv is rebuilt only when the lock file changes.
$(BIN)/.installed: requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	@touch $@
venv: $(BIN)/.installed

services:
	@scripts/services.sh start

stop:
	@scripts/services.sh stop

migrate: venv services
	$(BIN)/python manage.py migrate --no-input

seed: migrate
	$(BIN)/python manage.py seed_demo

run: seed
	@echo "Starting web (http://127.0.0.1:8000), Celery worker and beat. Ctrl-C stops them all."
	$(BIN)/honcho --procfile Procfile.dev start

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: venv services
	@scripts/services.sh browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/pytest

audit: venv services
	$(BIN)/python manage.py credits_audit

bench: venv services
	DJANGO_SETTINGS_MODULE=config.settings.bench $(BIN)/python -m bench
