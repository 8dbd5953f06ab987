"""Shared fixtures. See tests/dbs.py for how scratch databases work."""

from __future__ import annotations

import importlib
import shutil
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from tests import dbs

ROOT = Path(__file__).resolve().parent.parent


def _skip_if_no_postgres(vendor: str) -> None:
    if vendor == "postgresql" and settings.POSTGRES_UNAVAILABLE:
        pytest.skip(settings.POSTGRES_UNAVAILABLE)


@pytest.fixture(params=dbs.ENGINES)
def engine(request) -> str:
    """Parametrises a test over both engines; PostgreSQL skips (with the reason) when unreachable."""
    _skip_if_no_postgres(request.param)
    return request.param


@pytest.fixture(scope="session")
def _templates(tmp_path_factory, django_db_blocker):
    """Per engine, lazily: a database migrated to the head, and one at the baseline."""
    made: dict[tuple[str, str], str] = {}
    created: list[tuple[str, str]] = []
    directory = tmp_path_factory.mktemp("templates")

    def get(vendor: str, state: str) -> str:
        key = (vendor, state)
        if key not in made:
            with django_db_blocker.unblock():
                db = dbs.new_database(vendor, directory)
                if state == "head":
                    db.migrate()
                else:
                    db.migrate("accounts:0001_initial", "billing:0001_initial")
                dbs.unregister(db.alias)
            made[key] = db.name
            created.append((vendor, db.name))
        return made[key]

    yield get
    with django_db_blocker.unblock():
        for vendor, name in created:
            if vendor == "postgresql":
                dbs.drop_postgres_database(name)


def _scratch(request, vendor: str, state: str | None):
    _skip_if_no_postgres(vendor)
    tmp_path = request.getfixturevalue("tmp_path")
    blocker = request.getfixturevalue("django_db_blocker")
    template = request.getfixturevalue("_templates")(vendor, state) if state else None
    blocker.unblock()
    db = dbs.new_database(vendor, tmp_path, template=template)

    def finish():
        dbs.dispose(db)
        blocker.restore()

    request.addfinalizer(finish)
    return db


@pytest.fixture
def empty_db(request, engine) -> dbs.ScratchDatabase:
    """A fresh, empty database of the parametrised engine."""
    return _scratch(request, engine, None)


@pytest.fixture
def migrated_db(request, engine) -> dbs.ScratchDatabase:
    """A fresh database of the parametrised engine, migrated to the head."""
    return _scratch(request, engine, "head")


@pytest.fixture
def baseline_db(request, engine) -> dbs.ScratchDatabase:
    """A fresh database at the baseline (accounts 0001, billing 0001), as production was before the upgrade."""
    return _scratch(request, engine, "baseline")


@pytest.fixture
def pg_migrated_db(request) -> dbs.ScratchDatabase:
    """A fresh PostgreSQL database migrated to the head (for PostgreSQL-only tests)."""
    return _scratch(request, "postgresql", "head")


@pytest.fixture
def analytics_migrations_copy(tmp_path, monkeypatch):
    """A test-only copy of analytics' migrations package, used instead of the real one."""
    package = f"copy_{uuid.uuid4().hex[:8]}"
    target = tmp_path / package / "analytics_migrations"
    shutil.copytree(ROOT / "analytics" / "migrations", target, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    modules = {**settings.MIGRATION_MODULES, "analytics": f"{package}.analytics_migrations"}
    with override_settings(MIGRATION_MODULES=modules):
        yield target / "0001_initial.py"
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


@pytest.fixture
def pg_baseline_db(request) -> dbs.ScratchDatabase:
    """A fresh PostgreSQL database at the baseline (for PostgreSQL-only tests)."""
    return _scratch(request, "postgresql", "baseline")


@pytest.fixture
def sqlite_migrated_db(request) -> dbs.ScratchDatabase:
    """A fresh SQLite file migrated to the head (for SQLite-only tests)."""
    return _scratch(request, "sqlite", "head")
