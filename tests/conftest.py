"""Shared fixtures. See tests/dbs.py for how scratch databases work, tests/helpers.py for the
helper functions the test modules share."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections
from django.test import override_settings

from seeding import seed
from tests import dbs
from tests.helpers import SEEDED_SUBSCRIPTIONS, SEEDED_USERS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=dbs.ENGINES)
def engine(request) -> str:
    """Parametrises a test over both engines; PostgreSQL skips (with the reason) when unreachable."""
    dbs.skip_if_no_postgres(request.param)
    return request.param


@pytest.fixture(scope="session")
def database_templates(tmp_path_factory, django_db_blocker):
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


@pytest.fixture
def empty_db(request, engine) -> dbs.ScratchDatabase:
    """A fresh, empty database of the parametrised engine."""
    return dbs.scratch(request, engine, None)


@pytest.fixture
def migrated_db(request, engine) -> dbs.ScratchDatabase:
    """A fresh database of the parametrised engine, migrated to the head."""
    return dbs.scratch(request, engine, "head")


@pytest.fixture
def baseline_db(request, engine) -> dbs.ScratchDatabase:
    """A fresh database at the baseline (accounts 0001, billing 0001), as production was before the upgrade."""
    return dbs.scratch(request, engine, "baseline")


@pytest.fixture
def pg_migrated_db(request) -> dbs.ScratchDatabase:
    """A fresh PostgreSQL database migrated to the head (for PostgreSQL-only tests)."""
    return dbs.scratch(request, "postgresql", "head")


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
    return dbs.scratch(request, "postgresql", "baseline")


@pytest.fixture
def sqlite_migrated_db(request) -> dbs.ScratchDatabase:
    """A fresh SQLite file migrated to the head (for SQLite-only tests)."""
    return dbs.scratch(request, "sqlite", "head")


@pytest.fixture
def backup_env(settings, tmp_path) -> dict[str, str]:
    """Backups and the audit log inside tmp_path (in-process settings and subprocess environment)."""
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    settings.MIGRATION_LOCK_TIMEOUT = "1s"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        BACKUP_DIR=str(settings.BACKUP_DIR),
        MIGRATION_LOG=str(settings.MIGRATION_LOG),
        MIGRATION_LOCK_TIMEOUT="1s",
    )
    return env


# ---------------------------------------------------------------- the online tests (PostgreSQL)


@pytest.fixture
def online_settings(settings, tmp_path) -> None:
    """Backups and the audit log inside tmp_path, online batches of 500 rows (the online test modules use it)."""
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    settings.MIGRATION_ONLINE_BATCH_SIZE = 500


@pytest.fixture(scope="module")
def seeded_baseline_template(request, django_db_blocker):
    """The name of a PostgreSQL database at the baseline with SEEDED_USERS users and SEEDED_SUBSCRIPTIONS
    subscriptions (tests.helpers), built once per module: pg_seeded_db's template."""
    if settings.POSTGRES_UNAVAILABLE:
        pytest.skip(settings.POSTGRES_UNAVAILABLE)
    template = request.getfixturevalue("database_templates")("postgresql", "baseline")
    with django_db_blocker.unblock():
        db = dbs.new_database("postgresql", ROOT, template=template)
        seed(users=SEEDED_USERS, subscriptions=SEEDED_SUBSCRIPTIONS, using=db.alias)
        connections[db.alias].close()
        dbs.unregister(db.alias)
    yield db.name
    with django_db_blocker.unblock():
        dbs.drop_postgres_database(db.name)


@pytest.fixture
def pg_seeded_db(seeded_baseline_template, tmp_path, django_db_blocker):
    """A fresh PostgreSQL copy of the seeded baseline (seeded_baseline_template), for the online tests."""
    django_db_blocker.unblock()
    db = dbs.new_database("postgresql", tmp_path, template=seeded_baseline_template)
    yield db
    dbs.dispose(db)
    django_db_blocker.restore()
