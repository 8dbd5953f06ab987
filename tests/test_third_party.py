"""Third-party apps, as a user adds them to INSTALLED_APPS: django-taggit, django-celery-beat and
django-oauth-toolkit forwards, validated, backwards, rehearsed and failed on purpose, on both
engines, against what plain `migrate` does (anything it does that safe_migrate refuses is a defect).

Wagtail (170+ migrations) is not in this group: installing it and migrating it twice per engine
does not fit the suite's time budget.
"""

from __future__ import annotations

import pytest

from migrations_ops.api import safe_migrate
from migrations_ops.runner import SafeMigrateOptions
from migrations_ops.validation import run_validation
from tests import dbs
from tests.test_safe_migrate import fingerprint, with_apps

APPS = ["taggit", "django_celery_beat", "oauth2_provider"]


@pytest.fixture
def third_party(settings, tmp_path):
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, *APPS]
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"


def run(db, **options):
    return safe_migrate(db.alias, SafeMigrateOptions(**options))


def test_third_party_apps_forward_validate_reverse_rehearse_and_fail(migrated_db, third_party, tmp_path, settings):
    db = migrated_db
    # An injected failure at the end of the plan: the third-party migrations roll back with it.
    installed = list(settings.INSTALLED_APPS)
    with_apps(settings, "ma_raises")
    before = fingerprint(db)
    failed = run(db)
    assert failed.status == "rolled_back", failed.error
    assert "ma_raises.0003_fails" in failed.error
    assert fingerprint(db) == before
    settings.INSTALLED_APPS = installed

    plain = dbs.new_database(db.vendor, tmp_path)
    try:
        plain.migrate()  # what plain `migrate` gives
        forward = run(db)
        assert forward.status == "applied", forward.error
        assert {revision.split(".")[0] for revision in forward.applied} >= set(APPS)
        report = run_validation(db.alias)
        assert report.ok, [c.to_dict() for c in report.failures()]
        assert fingerprint(db)["schema"] == fingerprint(plain)["schema"]
    finally:
        dbs.dispose(plain)

    db.query("INSERT INTO taggit_tag (name, slug) VALUES ('red', 'red')")
    backwards = run(db, app_label="taggit", migration_name="zero", allow_row_loss=frozenset({"taggit_tag"}))
    assert backwards.status == "applied", backwards.error  # backwards, with the loss named
    assert "taggit_tag" not in db.connection.introspection.table_names()
    again = run(db, rehearse=True)
    assert again.status == "rehearsed", again.error
    assert again.irreversible == []
    assert run(db).status == "applied"
    assert run_validation(db.alias).ok
