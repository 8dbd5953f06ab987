"""Plans that mix non-atomic and atomic migrations, and failures on an empty database (both engines).

- ma_mixed: 0001 creates two tables joined by a foreign key, 0002 is `atomic = False` (an AddField,
  as wagtailcore 0070), 0003 alters a column (on SQLite a table rebuild, which needs foreign-key
  checks off). Plain `migrate` applies and reverses it; so must safe_migrate, in both directions.
- ma_segments on an EMPTY database: 0002 (non-atomic) fails after everything before it committed, so
  recovery reverses the whole project, contenttypes included; auth's post_migrate handler then
  queries django_content_type, which the reversal has just dropped. The database is back where it
  was, so the run says "rolled back" (exit 1), not "recovery failed" (exit 4).
- A failure whose message ends in a full stop reads as one sentence in the run's lines.
"""

from __future__ import annotations

import pytest
from django.db import connections

from migrations_ops import audit
from migrations_ops.api import safe_migrate
from migrations_ops.errors import ExitCode
from migrations_ops.options import SafeMigrateOptions
from migrations_ops.status import applied_migrations
from tests.helpers import write_app


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    settings.MIGRATION_LOCK_TIMEOUT = "2s"


def install(settings, label: str) -> None:
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, f"tests.migration_apps.{label}.apps.Config"]


def tables(db) -> list[str]:
    connection = connections[db.alias]
    with connection.cursor() as cursor:
        return sorted(connection.introspection.table_names(cursor))


def books(db) -> list[tuple]:
    return db.query("SELECT b.title, s.label FROM ma_books b JOIN ma_shelves s ON s.id = b.shelf_id ORDER BY b.title")


def test_a_non_atomic_migration_followed_by_atomic_ones_applies_and_reverses(migrated_db, settings):
    db = migrated_db
    install(settings, "ma_mixed")

    forwards = safe_migrate(db.alias, SafeMigrateOptions(app_label="ma_mixed"))
    assert forwards.status == "applied", forwards.error
    assert forwards.applied == ["ma_mixed.0001_initial", "ma_mixed.0002_pages", "ma_mixed.0003_longer_title"]
    assert [segment.atomic for segment in forwards.plan.segments] == [True, False, True]
    assert books(db) == [("Emma", "A"), ("Ulysses", "A")]
    # The foreign key still holds after the SQLite table rebuild of 0003.
    assert db.query("SELECT count(*) FROM ma_books WHERE shelf_id NOT IN (SELECT id FROM ma_shelves)") == [(0,)]

    backwards = safe_migrate(db.alias, SafeMigrateOptions(app_label="ma_mixed", migration_name="zero"))
    assert backwards.status == "applied", backwards.error
    assert backwards.applied == ["ma_mixed.0003_longer_title", "ma_mixed.0002_pages", "ma_mixed.0001_initial"]
    assert "ma_mixed" not in applied_migrations(db.alias)
    assert not {"ma_books", "ma_shelves"} & set(tables(db))


def test_a_first_run_on_an_empty_database_with_a_non_atomic_migration_applies(empty_db, settings):
    db = empty_db
    install(settings, "ma_mixed")
    summary = safe_migrate(db.alias, SafeMigrateOptions())
    assert summary.status == "applied", summary.error
    assert "ma_mixed.0003_longer_title" in summary.applied
    assert books(db) == [("Emma", "A"), ("Ulysses", "A")]


def test_recovery_that_reverses_everything_is_a_rollback_even_when_a_post_migrate_handler_fails(empty_db, settings):
    db = empty_db
    install(settings, "ma_segments")
    summary = safe_migrate(db.alias, SafeMigrateOptions())
    assert summary.exit_code == ExitCode.FAILED, summary.error
    assert summary.status == "rolled_back" and summary.rollback == "reverse", summary.error
    assert "fails on purpose" in summary.error
    assert "contenttypes.0001_initial" in summary.reversed
    # As before the run: no table at all (django_migrations, which the run created, included).
    assert tables(db) == []
    # The handler that met the dropped table is named in a warning, in the summary and the audit log.
    failed_handlers = [w for w in summary.warnings if w.startswith("post_migrate handler")]
    assert failed_handlers and "django_content_type" in failed_handlers[0], summary.warnings
    logged = [e["text"] for e in audit.read_events() if e["event"] == "safe_migrate.warning"]
    assert failed_handlers[0] in logged


def test_a_failure_ending_in_a_full_stop_reads_as_one_sentence(migrated_db, settings, tmp_path, monkeypatch):
    """Drivers end their messages with a full stop; the run's lines go on after the failure with
    "; rolled back" or ". Rolled back", so the failure must not leave a ".." or ".;" behind."""
    source = (
        "from django.db import migrations\n\n\n"
        "def fail(apps, schema_editor):\n"
        "    raise RuntimeError('the table is not what it should be.')\n\n\n"
        "class Migration(migrations.Migration):\n"
        "    operations = [migrations.RunPython(fail, migrations.RunPython.noop)]\n"
    )
    write_app(tmp_path, "ma_fullstop", {"0001_fails.py": source})
    monkeypatch.syspath_prepend(str(tmp_path))
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "ma_fullstop"]
    said: list[str] = []
    summary = safe_migrate(migrated_db.alias, SafeMigrateOptions(), report=said.append)
    assert summary.status == "rolled_back", summary.error
    assert "the table is not what it should be; rolled back (transaction)" in summary.error
    failed = [line for line in said if line.startswith("Failed:")]
    assert failed == [
        "Failed: ma_fullstop.0001_fails failed: the table is not what it should be. Rolled back: "
        "the database is as it was."
    ]
