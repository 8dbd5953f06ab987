# Two commands on a fresh machine (see README.md):
#   make migrate   install into .venv and run safe_migrate on the database (SQLite by default)
#   make test      install into .venv and run the whole test suite (lint included)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: migrate test lint install

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

migrate: $(VENV)/.installed
	$(PY) manage.py safe_migrate --noinput

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)
