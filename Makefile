# Two commands on a fresh machine (see README.md):
#   make migrate   install into .venv and run safe_migrate on the database (SQLite by default)
#   make test      install into .venv and run the whole test suite (lint included)
#   make serve     collectstatic, safe_migrate --noinput, then gunicorn; not started if migrating fails
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: migrate serve test lint install

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

migrate: $(VENV)/.installed
	$(PY) manage.py safe_migrate --noinput

# make serve BIND=0.0.0.0:8000 WORKERS=4 (default workers: WEB_CONCURRENCY, else 2); the exit code is serve's.
BIND ?= 127.0.0.1:8000
serve: $(VENV)/.installed
	$(PY) manage.py serve --bind $(BIND) $(if $(WORKERS),--workers $(WORKERS))

# ruff, then the import contracts of pyproject.toml (the layers of docs/architecture.md; no cache dir left behind).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache --no-logo

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)
