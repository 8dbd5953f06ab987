"""migrations_ops as a package any Django project installs: built from this checkout, installed into a
directory of its own, and run by a brand-new `django-admin startproject` site that knows nothing of
this project (its packages are not even importable there) on SQLite and PostgreSQL.

No network: the checkout is built with the venv's own setuptools (`--no-build-isolation`, `--no-deps`,
`--no-index`); Django and the drivers come from the venv, the app only from the install directory.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from tests import dbs, postgres

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("config", "common", "accounts", "billing", "loyalty", "analytics", "seeding", "tests", "bench")
# What the copy of the checkout leaves out: nothing the build reads, only weight and local state.
NOT_COPIED = shutil.ignore_patterns(
    ".venv", ".git", "var", "build", "*.egg-info", "__pycache__", ".*_cache", "test-output", "db.sqlite3*"
)
HOST_MIGRATED = {"admin", "auth", "contenttypes", "sessions", "migrations_ops"}  # startproject's apps + ours


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The directory `pip install --target` filled from this checkout (built from a copy of it, so
    the build's own files, build/ and *.egg-info, never land in the working tree)."""
    tmp = tmp_path_factory.mktemp("packaging")
    source, target = tmp / "checkout", tmp / "site"
    shutil.copytree(ROOT, source, ignore=NOT_COPIED)
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet", "--no-deps"]
        + ["--no-build-isolation", "--no-index", "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stderr
    return target


def host_env(site: Path) -> dict[str, str]:
    """The environment of the new project's manage.py: the install directory is the only addition to
    the venv's path, and nothing of this process's configuration leaks in (settings module, URL, dirs)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "BACKUP_DIR", "MIGRATION_LOG", "PYTHONPATH")
    }
    return {**env, "PYTHONPATH": str(site)}


@pytest.fixture
def host(site, tmp_path) -> Path:
    """A new project from `startproject` with migrations_ops, and nothing else, added to INSTALLED_APPS."""
    directory = tmp_path / "host"
    directory.mkdir()
    made = subprocess.run(
        [sys.executable, "-m", "django", "startproject", "hostsite", str(directory)],
        cwd=tmp_path,
        env=host_env(site),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    module = directory / "hostsite" / "settings.py"
    module.write_text(module.read_text() + '\nINSTALLED_APPS += ["migrations_ops"]\n')
    return directory


def run(host: Path, site: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", code] if code is not None else [sys.executable, "manage.py", *args]
    return subprocess.run(argv, cwd=host, env=host_env(site), capture_output=True, text=True, timeout=120)


def manage(host: Path, site: Path, *args: str) -> subprocess.CompletedProcess:
    done = run(host, site, *args)
    assert done.returncode == 0, f"manage.py {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def test_the_distribution_is_the_app_alone(site):
    top = {path.name for path in site.iterdir()}
    (dist_info,) = (name for name in top if name.endswith(".dist-info"))
    assert dist_info.startswith("django_migrations_ops-")
    assert top == {"migrations_ops", dist_info}, top
    app = site / "migrations_ops"
    assert {p.name for p in (app / "migrations").glob("0*.py")} >= {"0001_initial.py"}
    commands = {p.stem for p in (app / "management" / "commands").glob("*.py")}
    assert {"safe_migrate", "backup_db", "restore_db", "validate_db", "migration_status"} <= commands
    # What pip recorded as installed: the app's files and the metadata, nothing of the project.
    recorded = [line.split(",")[0] for line in (site / dist_info / "RECORD").read_text().splitlines() if line]
    assert recorded and all(path.startswith(("migrations_ops/", f"{dist_info}/")) for path in recorded), recorded
    assert not [path for path in recorded if path.split("/")[0] in PROJECT_PACKAGES]
    assert not [path for path in recorded if path.startswith("migrations_ops/") and not path.endswith((".py", ".pyc"))]


def test_the_new_project_cannot_import_this_one(site, host):
    probe = "import importlib.util as u, migrations_ops; print(migrations_ops.__file__); "
    probe += f"print([p for p in {PROJECT_PACKAGES!r} if u.find_spec(p)])"
    done = run(host, site, code=probe)
    assert done.returncode == 0, done.stderr
    location, importable = done.stdout.splitlines()
    assert Path(location).is_relative_to(site)
    assert importable == "[]"
    assert run(host, site, code="import billing").returncode != 0


def migrated_apps_sqlite(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {app for (app,) in conn.execute("SELECT DISTINCT app FROM django_migrations")}


def migrated_apps_postgres(url: str) -> set[str]:
    conn = postgres.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT DISTINCT app FROM django_migrations")
            return {app for (app,) in cur.fetchall()}
    finally:
        conn.close()


def test_a_new_sqlite_project_migrates_backs_up_validates_and_restores(site, host):
    manage(host, site, "safe_migrate", "--noinput")
    assert migrated_apps_sqlite(host / "db.sqlite3") == HOST_MIGRATED
    manage(host, site, "backup_db", "--name", "b1")
    manage(host, site, "validate_db")
    manage(host, site, "restore_db", "b1", "--noinput")
    manage(host, site, "validate_db")
    # The settings the project does not define got their defaults, under its BASE_DIR.
    assert (host / "var" / "backups" / "b1.json").is_file()
    assert (host / "var" / "log" / "migration.log").is_file()


def test_a_new_project_operates_on_postgresql_by_database_url(site, host):
    """The project's manage.py has no hook for --database-url: the commands apply it themselves, and
    the project's own database (SQLite, its default) is never touched."""
    if settings.POSTGRES_UNAVAILABLE:
        pytest.skip(settings.POSTGRES_UNAVAILABLE)
    name = f"scratch_pkg_{uuid.uuid4().hex[:10]}"
    dbs.create_postgres_database(name)
    url = dbs.postgres_url(name)
    try:
        manage(host, site, "safe_migrate", "--noinput", "--database-url", url)
        assert migrated_apps_postgres(url) == HOST_MIGRATED
        manage(host, site, "backup_db", "--name", "b1", "--database-url", url)
        manage(host, site, "validate_db", "--database-url", url)
        manage(host, site, "restore_db", "b1", "--noinput", "--database-url", url)
        manage(host, site, "validate_db", "--database-url", url)
        assert (host / "var" / "backups" / "b1.json").is_file()
        assert not (host / "db.sqlite3").exists()
    finally:
        dbs.drop_postgres_database(name)
