"""MIGRATION_ONLINE_DECLARATIONS on real PostgreSQL: a migration nobody can rewrite here (a package's)
is refused naming the declaration that would accept it; declared, it runs online and is recorded with
who reviewed it and why; a malformed declaration is bad input that changes nothing."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from django.apps import apps as django_apps

from migrations_ops.audit import read_events
from migrations_ops.checksums import file_checksum
from migrations_ops.errors import ExitCode
from tests.dbs import ROOT, manage_env, start_manage
from tests.helpers import applied_migrations, pg_schema, run_online, run_safe_migrate, with_apps, write_app
from tests.reliability.harness import wait_for

pytestmark = pytest.mark.usefixtures("online_settings")

VENDOR = "ma_vendor"  # a throwaway app outside the project's BASE_DIR: a migration the project cannot rewrite
REVISION = f"{VENDOR}.0002_data"

INITIAL = f"""
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Widget",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=50)),
            ],
            options={{"db_table": "{VENDOR}_widgets"}},
        ),
    ]
"""

MODELS = f"""
from django.db import models


class Widget(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        db_table = "{VENDOR}_widgets"
"""

# [0] a RunPython over every row, [1] an unbatched UPDATE: both refused on a table in use.
DATA = f"""
from django.db import migrations


def shout(apps, schema_editor):
    widgets = apps.get_model("{VENDOR}", "Widget").objects.using(schema_editor.connection.alias)
    for widget in widgets.all():
        widget.name = widget.name.upper()
        widget.save(update_fields=["name"])


def whisper(apps, schema_editor):
    widgets = apps.get_model("{VENDOR}", "Widget").objects.using(schema_editor.connection.alias)
    for widget in widgets.all():
        widget.name = widget.name.lower()
        widget.save(update_fields=["name"])


class Migration(migrations.Migration):
    dependencies = [("{VENDOR}", "0001_initial")]
    operations = [
        migrations.RunPython({{forwards}}),
        migrations.RunSQL(
            "UPDATE {VENDOR}_widgets SET name = name || '!'", "UPDATE {VENDOR}_widgets SET name = rtrim(name, '!')"
        ),
    ]
"""
REVERSIBLE = DATA.replace("{forwards}", "shout, whisper")
IRREVERSIBLE = DATA.replace("{forwards}", "shout")

# A column renamed by an AlterField (db_column): the running release still reads "name".
RENAMED = f"""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("{VENDOR}", "0001_initial")]
    operations = [migrations.AlterField("widget", "name", models.CharField(max_length=50, db_column="title"))]
"""

REVIEWED = {"bounded": [0], "brief": [1], "reason": "3 widgets in production", "reviewed_by": "alice"}


@pytest.fixture
def vendor(tmp_path, monkeypatch, settings, pg_migrated_db):
    """Install the throwaway app with ``source`` as its 0002, its table in use (0001 applied, 3 rows)."""

    def install(source: str = REVERSIBLE, in_use: bool = True):
        package = write_app(tmp_path / "apps", VENDOR, {"0001_initial.py": INITIAL, "0002_data.py": source})
        (package / "models.py").write_text(MODELS)  # validate_db: no model change lacks a migration
        monkeypatch.syspath_prepend(str(tmp_path / "apps"))
        importlib.invalidate_caches()
        settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, VENDOR]
        if in_use:  # else the app is new: the run installs it
            pg_migrated_db.migrate(f"{VENDOR}:0001_initial")
            pg_migrated_db.query(f"INSERT INTO {VENDOR}_widgets (name) VALUES ('a'), ('b'), ('c')")
        return pg_migrated_db

    yield install
    django_apps.all_models.pop(VENDOR, None)  # the next test's import registers its own Widget afresh
    for name in [m for m in sys.modules if m == VENDOR or m.startswith(f"{VENDOR}.")]:
        del sys.modules[name]


def vendor_file(tmp_path) -> Path:
    return tmp_path / "apps" / VENDOR / "migrations" / "0002_data.py"


def state(db) -> tuple:
    names = db.query(f"SELECT name FROM {VENDOR}_widgets ORDER BY id")
    return pg_schema(db), applied_migrations(db), names


# ---------------------------------------------------------------- undeclared: refused, naming the declaration


def test_a_packages_runpython_is_refused_naming_the_declaration_that_would_accept_it(vendor):
    db = vendor()
    before = state(db)
    linted = run_safe_migrate(db, plan_only=True, lint=True, online=True)
    assert linted.exit_code == 1
    suggestion = (
        f'MIGRATION_ONLINE_DECLARATIONS["{REVISION}"] = {{"bounded": [0], "brief": [1], "reason": "...", '
        '"reviewed_by": "..."}'
    )
    refusals = linted.to_dict()["online"]["plan"]["refusals"]
    assert len(refusals) == 2 and all(suggestion in refusal for refusal in refusals), refusals
    assert refusals[0].startswith(f"{REVISION} operation 0 (Raw Python operation): a RunPython the online path")
    assert f"{REVISION} comes from a package outside the project, so it cannot be rewritten here" in refusals[0]
    # Advice the operator cannot follow is not given for a file they cannot change.
    assert "BoundedRunPython" not in refusals[0] and "RunSQLBatched" in refusals[1]  # [1]: statements.py's own
    summary = run_online(db)
    assert summary.exit_code == ExitCode.BAD_INPUT and suggestion in summary.error and summary.backup is None
    assert state(db) == before


def test_the_projects_own_runpython_keeps_its_rewrite_advice_and_names_the_declaration(pg_migrated_db, settings):
    with_apps(settings, "ma_online_unsafe")
    pg_migrated_db.migrate("ma_online_unsafe:0001_initial")
    linted = run_safe_migrate(pg_migrated_db, plan_only=True, lint=True, online=True, app_label="ma_online_unsafe")
    (refusal,) = [r for r in linted.to_dict()["online"]["plan"]["refusals"] if "operation 1" in r]
    assert "write it as migrations_ops.operations.RunSQLBatched, or BoundedRunPython" in refusal
    assert (
        '; or declare it reviewed: MIGRATION_ONLINE_DECLARATIONS["ma_online_unsafe.0002_unsafe"] = {"bounded": [1], '
        in refusal
    )


def test_a_new_apps_runpython_runs_online_only_with_a_reverse(vendor):
    """An app the run installs: its RunPython is one short transaction over its new, empty tables, and a
    failure later in the run undoes it by its reverse; without one the undo could not, so it is refused."""
    db = vendor(IRREVERSIBLE, in_use=False)
    refused = run_safe_migrate(db, plan_only=True, lint=True, online=True, app_label=VENDOR)
    refusals = refused.to_dict()["online"]["plan"]["refusals"]
    assert refused.exit_code == 1 and len(refusals) == 1, refusals
    assert refusals[0].startswith(f"{REVISION} operation 0 (Raw Python operation): a RunPython without a reverse")
    assert "migrations.RunPython.noop" in refusals[0]
    before = pg_schema(db)
    summary = run_online(db, app_label=VENDOR)
    assert summary.exit_code == ExitCode.BAD_INPUT and pg_schema(db) == before


def test_a_new_apps_reversible_runpython_runs_online(vendor):
    db = vendor(REVERSIBLE, in_use=False)
    summary = run_online(db, app_label=VENDOR)
    assert summary.exit_code == 0 and summary.status == "online_applied", summary.error
    assert (VENDOR, "0002_data") in applied_migrations(db)


# ---------------------------------------------------------------- declared: runs online, recorded


def test_declared_it_runs_online_applies_and_the_json_names_the_declaration(vendor, settings, tmp_path):
    db = vendor()
    settings.MIGRATION_ONLINE_DECLARATIONS = {REVISION: REVIEWED}
    planned = run_safe_migrate(db, plan_only=True, lint=True, online=True)
    assert planned.exit_code == 0, planned.error
    rendered = planned.render_plan()
    assert "one transaction under the lock timeout: declared bounded by alice (3 widgets in production)" in rendered
    assert "declared brief by alice" in rendered

    summary = run_online(db)
    assert summary.status == "online_applied", summary.error
    assert (VENDOR, "0002_data") in applied_migrations(db)
    assert [name for (name,) in db.query(f"SELECT name FROM {VENDOR}_widgets ORDER BY id")] == ["A!", "B!", "C!"]
    plan = summary.to_dict()["online"]["plan"]
    operations = {op["operation"]: op for op in plan["migrations"][-1]["operations"]}
    assert operations[0]["kind"] == operations[1]["kind"] == "bounded"
    assert operations[0]["declared"] == {"as": "bounded", "reviewed_by": "alice", "reason": "3 widgets in production"}
    assert operations[1]["declared"]["as"] == "brief"
    assert plan["declarations"] == [
        {
            "revision": REVISION,
            "bounded": [0],
            "brief": [1],
            "reason": "3 widgets in production",
            "reviewed_by": "alice",
            "origin": "a package outside the project",
            "sha256": file_checksum(vendor_file(tmp_path)),
            "pinned": False,
        }
    ]
    assert plan["refusals"] == []


def test_the_audit_log_names_every_declaration_a_run_used(vendor, settings):
    db = vendor()
    settings.MIGRATION_ONLINE_DECLARATIONS = {REVISION: REVIEWED}
    summary = run_online(db)
    assert summary.status == "online_applied", summary.error
    recorded = [
        declaration
        for event in read_events(settings.MIGRATION_LOG)
        for declaration in event.get("declarations", [])
        if declaration.get("revision") == REVISION
    ]
    assert recorded and recorded[0]["reviewed_by"] == "alice" and recorded[0]["bounded"] == [0]


def test_a_pinned_declaration_holds_while_the_file_is_the_one_reviewed(vendor, settings, tmp_path):
    db = vendor()
    settings.MIGRATION_ONLINE_DECLARATIONS = {REVISION: {**REVIEWED, "sha256": file_checksum(vendor_file(tmp_path))}}
    summary = run_online(db)
    assert summary.status == "online_applied", summary.error
    assert summary.to_dict()["online"]["plan"]["declarations"][0]["pinned"] is True


def test_a_declaration_cannot_cover_an_operation_the_run_could_not_undo(vendor, settings):
    db = vendor(IRREVERSIBLE)
    before = state(db)
    undeclared = run_safe_migrate(db, plan_only=True, lint=True, online=True)
    (refusal,) = [r for r in undeclared.to_dict()["online"]["plan"]["refusals"] if "operation 0" in r]
    assert (
        "no declaration can cover it (it has no reverse" in refusal and "run this migration without --online" in refusal
    )
    assert '"bounded"' not in refusal  # no declaration is suggested that would not be honoured

    settings.MIGRATION_ONLINE_DECLARATIONS = {REVISION: REVIEWED}
    summary = run_online(db)
    assert summary.exit_code == ExitCode.BAD_INPUT
    assert "declared bounded by alice, but it has no reverse" in summary.error
    assert "operation 1" not in summary.error  # the reversible UPDATE is covered
    assert state(db) == before


def test_a_declaration_cannot_cover_a_column_the_running_release_reads_by_its_old_name(vendor, settings):
    db = vendor(RENAMED)
    settings.MIGRATION_ONLINE_DECLARATIONS = {REVISION: {"brief": [0], "reason": "small", "reviewed_by": "alice"}}
    linted = run_safe_migrate(db, plan_only=True, lint=True, online=True)
    (refusal,) = linted.to_dict()["online"]["plan"]["refusals"]
    assert f"declared brief by alice, but no declaration can cover it: it renames {VENDOR}_widgets.name to title" in (
        refusal
    )


# ---------------------------------------------------------------- malformed: exit 2, one line, nothing changed


@pytest.mark.parametrize(
    ("declarations", "message"),
    [
        pytest.param([REVIEWED], "must be a dict keyed by", id="not-a-dict"),
        pytest.param({REVISION: {**REVIEWED, "limit": 5}}, "unknown key(s) limit", id="unknown-key"),
        pytest.param({f"{VENDOR}.0009_nothing": REVIEWED}, "no such migration on disk", id="no-such-migration"),
        pytest.param(
            {f"{VENDOR}.0002": REVIEWED}, f"no such migration on disk (did you mean {REVISION}?)", id="short-name"
        ),
        pytest.param({"ma_vendor": REVIEWED}, 'is not "app_label.migration_name"', id="no-migration-name"),
        pytest.param({REVISION: {**REVIEWED, "bounded": [7]}}, "names operation 7, but it has 2", id="out-of-range"),
        pytest.param(
            {REVISION: {**REVIEWED, "bounded": [1]}},
            "operation 1 (Raw SQL operation) is not a RunPython",
            id="wrong-kind",
        ),
        pytest.param({REVISION: {**REVIEWED, "bounded": "some"}}, 'must be "all" or a non-empty list', id="bad-list"),
        pytest.param({REVISION: {"reason": "r", "reviewed_by": "alice"}}, "declares nothing", id="declares-nothing"),
        pytest.param({REVISION: {**REVIEWED, "reason": " "}}, '"reason" is missing or empty', id="no-reason"),
        pytest.param(
            {REVISION: {k: v for k, v in REVIEWED.items() if k != "reviewed_by"}},
            '"reviewed_by" is missing or empty',
            id="no-reviewer",
        ),
        pytest.param({REVISION: {**REVIEWED, "sha256": "0" * 64}}, "no longer the one reviewed", id="stale-pin"),
    ],
)
def test_a_malformed_declaration_is_bad_input_that_changes_nothing(vendor, settings, declarations, message):
    db = vendor()
    before = state(db)
    settings.MIGRATION_ONLINE_DECLARATIONS = declarations
    for summary in (run_safe_migrate(db, plan_only=True, lint=True, online=True), run_online(db)):
        assert summary.exit_code == ExitCode.BAD_INPUT, summary.error
        assert summary.error.startswith("MIGRATION_ONLINE_DECLARATIONS") and message in summary.error
        assert summary.error.endswith("(nothing was changed)") and "\n" not in summary.error
        assert summary.backup is None
    assert state(db) == before


# ---------------------------------------------------------------- a resumed run under a changed declaration

# [0] a RunPython that stalls in the killed process (declared bounded), [1] an unbatched UPDATE (declared brief).
STALLING = f"""
import os

from django.db import migrations


def stall(apps, schema_editor):
    if os.environ.get("MA_VENDOR_STALL"):
        schema_editor.execute("SELECT pg_sleep(60)")


class Migration(migrations.Migration):
    dependencies = [("{VENDOR}", "0001_initial")]
    operations = [
        migrations.RunPython(stall, migrations.RunPython.noop),
        migrations.RunSQL(
            "UPDATE {VENDOR}_widgets SET name = name || '!'", "UPDATE {VENDOR}_widgets SET name = rtrim(name, '!')"
        ),
    ]
"""
DECLARED = {REVISION: {"bounded": [0], "brief": [1], "reason": "3 widgets", "reviewed_by": "alice"}}


def test_a_resumed_run_refuses_what_its_declaration_no_longer_covers(vendor, settings, tmp_path):
    db = vendor(STALLING)
    (tmp_path / "vendor_settings.py").write_text(
        "from tests.settings_subprocess import *  # noqa: F403\n"
        "from tests.settings_subprocess import INSTALLED_APPS\n\n"
        f"INSTALLED_APPS = [*INSTALLED_APPS, {VENDOR!r}]\n"
        f"MIGRATION_ONLINE_DECLARATIONS = {DECLARED!r}\n"
    )
    env = manage_env(
        "vendor_settings",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(tmp_path / "apps"), str(ROOT)]),
        BACKUP_DIR=str(tmp_path / "backups"),
        MIGRATION_LOG=str(tmp_path / "migration.log"),
        MIGRATION_ONLINE_STATEMENT_TIMEOUT="0",  # the stall is the test's, not a misjudged step
        MA_VENDOR_STALL="1",
    )
    # (The subprocess's project lacks the test settings' own apps: their applied migrations are not its.)
    killed = start_manage(db.url, "safe_migrate", "--online", "--noinput", "--accept-existing-issues", env=env)

    def stalled() -> bool:
        assert killed.poll() is None, killed.communicate()
        # This database's: another worker's test stalls the same way in its own database.
        return (
            db.scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'SELECT pg_sleep(60)%%'"
            )
            == 1
        )

    wait_for(stalled)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=30)
    db.connection.close()
    stopped = state(db)

    without_brief = {key: value for key, value in DECLARED[REVISION].items() if key != "brief"}
    settings.MIGRATION_ONLINE_DECLARATIONS = {REVISION: without_brief}
    refused = run_online(db, resume=True)
    assert refused.exit_code == ExitCode.BAD_INPUT
    assert f"{REVISION} operation 1" in refused.error and "--online --abort" in refused.error, refused.error
    assert state(db) == stopped  # nothing ran, nothing was skipped

    settings.MIGRATION_ONLINE_DECLARATIONS = DECLARED
    resumed = run_online(db, resume=True)
    assert resumed.exit_code == 0 and resumed.status == "resumed", resumed.error
    assert [name for (name,) in db.query(f"SELECT name FROM {VENDOR}_widgets ORDER BY id")] == ["a!", "b!", "c!"]
    assert (VENDOR, "0002_data") in applied_migrations(db)


def test_the_guard_cancels_a_declared_step_that_runs_long_and_names_the_declaration(vendor, settings, monkeypatch):
    db = vendor(STALLING)
    before = state(db)
    settings.MIGRATION_ONLINE_DECLARATIONS = DECLARED
    monkeypatch.setenv("MA_VENDOR_STALL", "1")  # the reviewed RunPython turns out to take a minute
    started = time.monotonic()
    summary = run_online(db)
    assert summary.status == "rolled_back" and summary.exit_code == ExitCode.FAILED, summary.error
    assert "guard cancelled" in summary.error and "declared bounded by alice" in summary.error, summary.error
    assert time.monotonic() - started < 30  # cancelled after the guard's second, not after pg_sleep(60)
    assert state(db) == before
