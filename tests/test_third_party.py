"""Third-party apps, as a user adds them to INSTALLED_APPS: django-taggit, django-celery-beat and
django-oauth-toolkit, each on its own, on both engines, against what plain `migrate` does on an
identical database (anything it does that safe_migrate refuses is a defect, unless the refusal
protects data and says how):

- an injected failure right after the app's last migration rolls the whole plan back;
- a rehearsal of the app's migrations reports success, finds the reverse loses nothing, and leaves
  the live database as it was;
- forwards: the same schema and records (django_migrations, content types, permissions, migration
  checksums and origins) as plain `migrate`, and validate_db passes;
- backwards to zero, with a row in the app's table: the same schema and records as plain
  `migrate <app> zero` (the plan drops the table, so the row goes with it, as under migrate).
All three reverse cleanly under plain `migrate`, so no refusal is expected anywhere.

Every app runs on PostgreSQL; on SQLite taggit and celery-beat (oauth2_provider there added 55-65 s
and no engine path the other two do not take). With all six cases the group took 3.5 to 4 minutes
serially on 2 shared cores (210-242 s at load average 2-4; oauth2_provider's 22 migrations are most
of it: 55-75 s per engine, as each test migrates the app eight times: the failed run, the
rehearsal's forward, reverse and forward, then forwards and backwards under safe_migrate and under
plain `migrate`).

Wagtail is not in this group, measured (December 2026, same machine): `pip download --no-deps
wagtail` is wagtail-8.0.1, 9.8 MB, in 2.4 s; `pip install wagtail` adds 28 packages in 33 s; plain
`migrate` of its apps (214 migrations on an empty database, 173 of them wagtail's) takes 42 s on
SQLite and 59 s on PostgreSQL forwards alone, and `migrate wagtailcore zero` fails inside wagtail
itself ("Cannot query "Permission object": Must be "Permission" instance") after 25-34 s. One
forward per engine is already past the ~60 s this group may spend on it, and the test below
migrates each app eight times; so wagtail stays out of requirements-dev.txt and this group.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest
from django.apps import apps as django_apps
from django.db.migrations.loader import MigrationLoader

from migrations_ops.status import current_migrations
from migrations_ops.validation import run_validation
from tests import dbs
from tests.helpers import fingerprint, run_safe_migrate, write_app

# App label -> the distribution (pip package) that ships it.
APPS = {
    "taggit": "django-taggit",
    "django_celery_beat": "django-celery-beat",
    "oauth2_provider": "django-oauth-toolkit",
}

# One row per app, in the table the reverse drops (so plain migrate and safe_migrate both lose it).
ROWS: dict[str, tuple[str, dict]] = {
    "taggit": ("Tag", {"name": "red", "slug": "red"}),
    "django_celery_beat": ("IntervalSchedule", {"every": 10, "period": "seconds"}),
    "oauth2_provider": (
        "Application",
        {
            "name": "billing-portal",
            "client_type": "confidential",
            "authorization_grant_type": "authorization-code",
            "redirect_uris": "https://example.com/callback",
        },
    ),
}


@pytest.fixture
def twins(request, engine, settings, tmp_path) -> Iterator[tuple[dbs.ScratchDatabase, dbs.ScratchDatabase]]:
    """Two identical migrated databases: one for safe_migrate, one for plain `migrate`."""
    db = request.getfixturevalue("migrated_db")
    plain = dbs.new_database(engine, tmp_path, template=request.getfixturevalue("database_templates")(engine, "head"))
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    yield db, plain
    dbs.dispose(plain)


@pytest.fixture
def failing_after(settings, tmp_path, monkeypatch) -> Iterator[Callable[[str], str]]:
    """``failing_after(app)`` installs an app whose one migration depends on ``app``'s last one and
    raises: the failure comes after every migration of ``app`` in the plan. Returns its label."""
    made: list[str] = []

    def install(app: str) -> str:
        label = f"fails_after_{uuid.uuid4().hex[:8]}"
        source = (
            "from django.db import migrations\n\n\n"
            "def fail(apps, schema_editor):\n"
            f"    raise RuntimeError('{label} fails on purpose after {app}')\n\n\n"
            "class Migration(migrations.Migration):\n"
            f"    dependencies = [({app!r}, {dbs.latest_migration(app)!r})]\n"
            "    operations = [migrations.RunPython(fail, migrations.RunPython.noop)]\n"
        )
        write_app(tmp_path, label, {"0001_fails.py": source})
        monkeypatch.syspath_prepend(str(tmp_path))
        importlib.invalidate_caches()
        settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, label]
        made.append(label)
        return label

    yield install
    for name in [m for m in sys.modules if any(m == label or m.startswith(label + ".") for label in made)]:
        del sys.modules[name]


def disk_migrations(app: str) -> list[str]:
    """Every migration of ``app`` on disk, as sorted revisions."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return sorted(f"{label}.{name}" for label, name in loader.disk_migrations if label == app)


# What `migrate` records besides the schema, without timestamps or ids (a rolled-back run on
# PostgreSQL consumes sequence values, so ids may differ from the twin's).
RECORDS = {
    "django_migrations": "SELECT app, name FROM django_migrations",
    "content types": "SELECT app_label, model FROM django_content_type",
    "permissions": "SELECT t.app_label, t.model, p.codename FROM auth_permission p"
    " JOIN django_content_type t ON t.id = p.content_type_id",
    "checksums": "SELECT app, name, sha256, baseline FROM migrations_ops_applied_checksum",
    "origins": "SELECT app, name, distribution, version FROM migrations_ops_migration_origin",
}


def records(db: dbs.ScratchDatabase) -> dict[str, set[tuple]]:
    return {name: set(db.query(sql)) for name, sql in RECORDS.items()}


def add_row(db: dbs.ScratchDatabase, app: str) -> None:
    model, fields = ROWS[app]
    model_class = django_apps.get_model(app, model)
    # bulk_create: no save() or signals (django-celery-beat's write to the default database).
    model_class.objects.using(db.alias).bulk_create([model_class(**fields)])


def assert_same_as_plain(db: dbs.ScratchDatabase, plain: dbs.ScratchDatabase) -> None:
    assert fingerprint(db)["schema"] == fingerprint(plain)["schema"]
    assert records(db) == records(plain)


# Every app on PostgreSQL (the production engine); on SQLite taggit and celery-beat. oauth2_provider
# on SQLite cost 55-65 s of the suite's ten-minute budget and adds no engine path the other two do
# not already take there (its migrations are plain tables, foreign keys and indexes).
CASES = [(engine, app) for app in APPS for engine in dbs.ENGINES if (engine, app) != ("sqlite", "oauth2_provider")]


@pytest.mark.slow
@pytest.mark.parametrize(("engine", "app"), CASES, indirect=["engine"])
def test_third_party_app_fails_rehearses_forwards_and_reverses_like_plain_migrate(app, twins, settings, failing_after):
    db, plain = twins
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, app]
    pending = disk_migrations(app)

    # An injected failure right after the app's last migration: everything the plan did rolls back.
    installed = list(settings.INSTALLED_APPS)
    failing = failing_after(app)
    before = fingerprint(db)
    failed = run_safe_migrate(db)
    assert failed.status == "rolled_back", failed.error
    assert f"{failing}.0001_fails" in failed.error
    steps = [step.revision for step in failed.plan.steps]
    assert steps[-1] == f"{failing}.0001_fails" and set(pending) <= set(steps[:-1])
    assert fingerprint(db) == before
    settings.INSTALLED_APPS = installed

    # A rehearsal: success, nothing lost by the reverse, and the live database exactly as before
    # (every table's schema and content; its record is in the audit log, not a MigrationRun row).
    runs = db.query("SELECT status FROM migrations_ops_migrationrun ORDER BY id")
    rehearsal = run_safe_migrate(db, rehearse=True)
    assert rehearsal.status == "rehearsed", rehearsal.error
    assert rehearsal.irreversible == []
    assert rehearsal.inner.status == "applied" and set(pending) <= set(rehearsal.inner.applied)
    assert rehearsal.reverse_checked_tables
    assert fingerprint(db) == before
    assert db.query("SELECT status FROM migrations_ops_migrationrun ORDER BY id") == runs

    # Forwards: what plain `migrate` gives on an identical database, and validate_db passes.
    plain.migrate()
    forward = run_safe_migrate(db)
    assert forward.status == "applied", forward.error
    assert sorted(r for r in forward.applied if r.startswith(f"{app}.")) == pending
    assert_same_as_plain(db, plain)
    # Each applied file's origin is the installed package (so its next upgrade is told from tampering).
    origins = db.query(
        "SELECT DISTINCT distribution, version FROM migrations_ops_migration_origin WHERE app = %s", [app]
    )
    assert origins == [(APPS[app], importlib.metadata.version(APPS[app]))]
    report = run_validation(db.alias)
    assert report.ok, [c.to_dict() for c in report.failures()]

    # Backwards to zero with a row in the app's table, as `migrate <app> zero` does it: the plan
    # drops the table, so its rows go with it on both sides; nothing else changes.
    add_row(db, app)
    add_row(plain, app)
    plain.migrate(f"{app}:zero")
    backwards = run_safe_migrate(db, app_label=app, migration_name="zero")
    assert backwards.status == "applied", backwards.error
    assert sorted(backwards.applied) == pending
    assert app not in current_migrations(db.alias)
    assert_same_as_plain(db, plain)
    assert fingerprint(db)["schema"] == before["schema"]
    report = run_validation(db.alias)
    assert report.ok, [c.to_dict() for c in report.failures()]
