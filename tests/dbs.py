"""Scratch databases for tests: real PostgreSQL databases and real SQLite files.

Tests that migrate back and forth, back up or restore need a database of their own rather than
pytest-django's transaction-wrapped one. A `ScratchDatabase` is registered as a Django connection
alias (so library code is called with `using=alias`) and also has a URL (for `manage.py`
subprocesses). Migrated templates are built once per session; copies are cheap
(`CREATE DATABASE ... TEMPLATE` on PostgreSQL, a file copy on SQLite).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connections

from migrations_ops.aliases import register_alias, unregister_alias
from migrations_ops.database_url import parse_database_url
from tests import postgres

ENGINES = ("sqlite", "postgresql")
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ScratchDatabase:
    alias: str
    vendor: str
    url: str
    name: str  # PostgreSQL database name, or SQLite file path

    @property
    def connection(self):
        return connections[self.alias]

    def migrate(self, *targets: str) -> None:
        """Run Django's migrate to each (app_label, name) target given as 'app:name', or to head."""
        if not targets:
            call_command("migrate", database=self.alias, verbosity=0, interactive=False)
        for target in targets:
            app, name = target.split(":")
            call_command("migrate", app, name, database=self.alias, verbosity=0, interactive=False)

    def query(self, sql: str, params=None) -> list[tuple]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params or [])
            return cursor.fetchall() if cursor.description else []

    def scalar(self, sql: str, params=None):
        return self.query(sql, params)[0][0]


def _admin_connection():
    conn = postgres.connect(settings.TEST_DATABASE_URL)
    conn.autocommit = True
    return conn


def postgres_url(dbname: str) -> str:
    cfg = parse_database_url(settings.TEST_DATABASE_URL)
    auth = cfg.get("USER") or ""
    if cfg.get("PASSWORD"):
        auth += f":{cfg['PASSWORD']}"
    host = cfg.get("HOST") or "127.0.0.1"
    port = cfg.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{dbname}"


def create_postgres_database(name: str, template: str | None = None) -> None:
    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            tmpl = f' TEMPLATE "{template}"' if template else ""
            cur.execute(f'CREATE DATABASE "{name}"{tmpl}')
    finally:
        conn.close()


def drop_postgres_database(name: str) -> None:
    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


def register(alias: str, url: str) -> None:
    """Make `url` available as Django connection `alias` for the rest of the process."""
    register_alias(url, alias)


def unregister(alias: str) -> None:
    unregister_alias(alias)


def new_database(vendor: str, directory: Path, template: str | None = None) -> ScratchDatabase:
    """Create an empty (or template-copied) scratch database and register it."""
    token = uuid.uuid4().hex[:10]
    alias = f"scratch_{token}"
    if vendor == "postgresql":
        name = f"scratch_{token}"
        create_postgres_database(name, template=template)
        url = postgres_url(name)
    else:
        path = directory / f"scratch_{token}.sqlite3"
        if template:
            shutil.copyfile(template, path)
        name = str(path)
        url = f"sqlite:///{path}"
    register(alias, url)
    return ScratchDatabase(alias=alias, vendor=vendor, url=url, name=name)


def dispose(db: ScratchDatabase) -> None:
    unregister(db.alias)
    if db.vendor == "postgresql":
        drop_postgres_database(db.name)
    else:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(db.name + suffix).unlink(missing_ok=True)


def skip_if_no_postgres(vendor: str) -> None:
    """Skip the test (with the reason) when it needs PostgreSQL and the server is unreachable."""
    if vendor == "postgresql" and settings.POSTGRES_UNAVAILABLE:
        pytest.skip(settings.POSTGRES_UNAVAILABLE)


def scratch(request, vendor: str, state: str | None) -> ScratchDatabase:
    """A fresh database of ``vendor`` for the requesting test: empty (``state`` None), or a copy of the
    session's template at ``state`` ("head" or "baseline"); disposed of when the test ends.

    What the empty_db/migrated_db/baseline_db fixtures return; a fixture of its own calls it for
    another engine or state (``request`` is the fixture's or the test's pytest request)."""
    skip_if_no_postgres(vendor)
    tmp_path = request.getfixturevalue("tmp_path")
    blocker = request.getfixturevalue("django_db_blocker")
    template = request.getfixturevalue("database_templates")(vendor, state) if state else None
    blocker.unblock()
    db = new_database(vendor, tmp_path, template=template)

    def finish():
        dispose(db)
        blocker.restore()

    request.addfinalizer(finish)
    return db


def latest_migration(app_label: str) -> str:
    """The name of the app's leaf migration on disk (so tests do not hard-code the head)."""
    from django.db.migrations.loader import MigrationLoader

    leaves = [
        name for app, name in MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes() if app == app_label
    ]
    assert len(leaves) == 1, leaves
    return leaves[0]


# --- manage.py in a subprocess (signals, exit codes, concurrency) ---------------------------------


def manage_env(settings_module: str = "tests.settings_subprocess", **variables: str) -> dict[str, str]:
    """This process's environment with the settings module and `variables` for a manage.py child."""
    return {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module, **variables}


def manage_argv(url: str, *args: str) -> list[str]:
    return [sys.executable, "manage.py", *args, "--database-url", url]


def run_manage(url: str, *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """`manage.py <args> --database-url url` to completion, output captured as text."""
    return subprocess.run(manage_argv(url, *args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def start_manage(url: str, *args: str, env: dict[str, str]) -> subprocess.Popen:
    """The same, started and left running (stdout and stderr piped, as text)."""
    return subprocess.Popen(
        manage_argv(url, *args), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
