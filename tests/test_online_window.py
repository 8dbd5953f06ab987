"""Expand/contract on real PostgreSQL: ``safe_migrate --online`` opens a window in which the release
before and the release after both read and write, ``--online --complete`` closes it at the new
schema, ``--online --abort`` at the old one; nothing either release wrote is lost on either way.

The app is tests/migration_apps/ma_expand: 0001 is the old release's table, 0002 renames a field,
widens an integer to bigint, makes a nullable column NOT NULL, removes a field, adds a NOT NULL
field with a Python default and widens a varchar (a catalog change).
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

import psycopg2
import pytest

from migrations_ops.errors import ExitCode
from migrations_ops.validation import run_validation
from tests import dbs
from tests.dbs import manage_env, run_manage, start_manage
from tests.helpers import applied_migrations, column_names, pg_schema, run_online, run_safe_migrate, with_apps
from tests.reliability.harness import pg, wait_for

pytestmark = pytest.mark.usefixtures("online_settings")

RELEASE = ("ma_expand", "0002_release")
OLD_COLUMNS = ["id", "label", "qty", "note", "code", "legacy"]
NEW_COLUMNS = ["id", "note", "code", "title", "qty", "status"]
ROWS = 3000


@pytest.fixture
def gadgets_db(request, settings):
    """A database at the head with ma_expand at the old release, ROWS gadgets in it (every third note NULL)."""
    db = dbs.scratch(request, "postgresql", "head")  # the template first: it holds no test app
    with_apps(settings, "ma_expand", "ma_online_guard")
    db.migrate("ma_expand:0001_initial")
    db.query(
        "INSERT INTO ma_gadgets (label, qty, note, legacy, code) SELECT 'g' || i, i, "
        "CASE WHEN i %% 3 = 0 THEN NULL ELSE 'n' || i END, 'x', 'c' FROM generate_series(1, %s) i",
        [ROWS],
    )
    return db


@dataclass
class Release:
    """One release's code writing ma_gadgets as Django would: every column of its model in each INSERT."""

    url: str
    new: bool
    interval: float = 0.01
    inserted: dict[int, str] = field(default_factory=dict)  # id -> the name written (label or title)
    updated: dict[int, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    longest_wait_s: float = 0.0

    def __post_init__(self) -> None:
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Release:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        connection = psycopg2.connect(self.url.replace("postgres://", "postgresql://", 1))
        connection.autocommit = True
        name_column = "title" if self.new else "label"
        if self.new:
            insert = (
                "INSERT INTO ma_gadgets (title, qty, note, status, code) VALUES (%s, %s, '', 'new', 'c') RETURNING id"
            )
        else:  # the old model has note nullable and legacy; it writes NULL notes sometimes
            insert = (
                "INSERT INTO ma_gadgets (label, qty, note, legacy, code) VALUES (%s, %s, NULL, 'x', 'c') RETURNING id"
            )
        count = 0
        with connection.cursor() as cursor:
            while not self._halt.is_set():
                count += 1
                name = f"{'new' if self.new else 'old'}-{count}"
                started = time.monotonic()
                try:
                    cursor.execute(insert, [name, count])
                    row_id = cursor.fetchone()[0]
                    self.inserted[row_id] = name
                    target = (count * 7919) % ROWS + 1
                    cursor.execute(f"UPDATE ma_gadgets SET {name_column} = %s WHERE id = %s", [f"u-{name}", target])
                    self.updated[target] = f"u-{name}"
                    cursor.execute(f"SELECT {name_column}, qty FROM ma_gadgets WHERE id = %s", [target])
                    cursor.fetchone()
                except psycopg2.Error as exc:
                    self.errors.append(str(exc).strip().splitlines()[0])
                self.longest_wait_s = max(self.longest_wait_s, time.monotonic() - started)
                self._halt.wait(self.interval)
        connection.close()


def gadgets(db, name_column: str) -> dict[int, str]:
    return dict(db.query(f"SELECT id, {name_column} FROM ma_gadgets"))


def assert_kept(db, name_column: str, *releases: Release) -> None:
    """Every row each release inserted is there with its name, under ``name_column``; the last update
    of each row by the release that touched it last is there too (the two interleave: check inserts
    exactly, and that updated rows hold one of the written values)."""
    now = gadgets(db, name_column)
    for release in releases:
        assert release.errors == [], release.errors[:3]
        assert release.inserted, "the stand-in wrote nothing"
        assert {row_id: now.get(row_id) for row_id in release.inserted} == release.inserted
    written = {value for release in releases for value in release.updated.values()}
    for release in releases:
        for row_id in release.updated:
            assert now[row_id] in written or now[row_id].startswith("g")


def test_plan_shows_both_halves_with_their_locks(gadgets_db):
    summary = run_safe_migrate(gadgets_db, plan_only=True, online=True, app_label="ma_expand")
    assert summary.exit_code == 0, summary.error
    document = summary.to_dict()["online"]["plan"]
    (migration,) = document["migrations"]
    kinds = [op.get("contract", {}).get("kind") for op in migration["operations"]]
    assert kinds == ["rename_field", "alter_type", "set_not_null", "remove_field", "add_not_null", None]
    assert document["refusals"] == []
    text = summary.render_plan()
    assert "at --complete, ACCESS EXCLUSIVE (catalog only): ma_gadgets (label dropped; title NOT NULL)" in text
    assert "backfill in batches over ma_gadgets" in text
    assert "window: ma_gadgets: the old release uses label, the new release title" in text


def test_both_releases_write_through_the_window_and_complete_keeps_every_write(gadgets_db):
    before_rows = gadgets(gadgets_db, "label")
    with Release(gadgets_db.url, new=False) as old:
        expanded = run_online(gadgets_db, app_label="ma_expand")
        assert expanded.exit_code == 0, expanded.error
        assert expanded.status == "expanded"
        window = expanded.to_dict()["online"]["window"]
        assert [op["kind"] for op in window["operations"]] == [
            "rename_field",
            "alter_type",
            "set_not_null",
            "remove_field",
            "add_not_null",
        ]
        assert RELEASE[0] + "." + RELEASE[1] in window["migrations"]
        with Release(gadgets_db.url, new=True) as new:
            time.sleep(0.5)  # both releases at work in the window
            assert run_validation(using=gadgets_db.alias).ok
            old.stop()  # the deploy: the old release is gone
            completed = run_online(gadgets_db, complete=True)
            assert completed.exit_code == 0, completed.error
            assert completed.status == "completed"
            time.sleep(0.2)
    assert old.longest_wait_s < 1.0 and new.longest_wait_s < 1.0
    assert sorted(column_names(gadgets_db, "ma_gadgets")) == sorted(NEW_COLUMNS)
    # The old release's writes went into label and are in title; nothing of the table was lost.
    assert_kept(gadgets_db, "title", old, new)
    after = gadgets(gadgets_db, "title")
    assert set(before_rows) <= set(after)
    assert gadgets_db.scalar("SELECT count(*) FROM ma_gadgets WHERE note IS NULL") == 0
    schema = column_types(gadgets_db)
    assert schema["qty"] == ("bigint", "NO") and schema["note"][1] == "NO" and schema["title"][1] == "NO"
    assert schema["code"][0] == "character varying(60)"
    assert (
        gadgets_db.scalar(
            "SELECT column_default FROM information_schema.columns WHERE table_name = "
            "'ma_gadgets' AND column_name = 'status'"
        )
        is None
    )
    assert leftovers(gadgets_db) == []
    assert run_validation(using=gadgets_db.alias).ok
    state = gadgets_db.scalar("SELECT status FROM migrations_ops_online_run WHERE id = %s", [expanded.run_id])
    assert state == "done"


def test_the_window_ends_where_the_one_transaction_path_ends(gadgets_db, request, settings):
    assert run_online(gadgets_db, app_label="ma_expand").exit_code == 0
    assert run_online(gadgets_db, complete=True).exit_code == 0
    plain = dbs.scratch(request, "postgresql", "head")
    plain.migrate("ma_expand:0001_initial")
    assert run_safe_migrate(plain, app_label="ma_expand").exit_code == 0
    online, transactional = column_types(gadgets_db), column_types(plain)
    assert online == transactional
    assert indexed_columns(gadgets_db) == indexed_columns(plain)


def test_abort_goes_back_to_the_old_schema_with_the_new_releases_writes(gadgets_db):
    before = pg_schema(gadgets_db)
    migrations_before = applied_migrations(gadgets_db)
    with Release(gadgets_db.url, new=False) as old:
        assert run_online(gadgets_db, app_label="ma_expand").status == "expanded"
        with Release(gadgets_db.url, new=True) as new:
            time.sleep(0.5)
            new.stop()  # the deploy is rolled back first: the new release is gone
            aborted = run_online(gadgets_db, abort=True)
            assert aborted.exit_code == 0, aborted.error
            assert aborted.status == "aborted"
            assert aborted.to_dict()["online"]["statements"] >= 5  # each operation's rollback counted
            time.sleep(0.2)
    assert pg_schema(gadgets_db) == before
    assert applied_migrations(gadgets_db) == migrations_before
    # The new release wrote title; it is in label now.
    assert_kept(gadgets_db, "label", old, new)
    assert leftovers(gadgets_db) == []
    assert run_validation(using=gadgets_db.alias).ok


def test_an_open_window_refuses_other_runs_and_shows_in_migration_status(gadgets_db, tmp_path):
    expanded = run_online(gadgets_db, app_label="ma_expand")
    assert expanded.status == "expanded"
    # ma_online_guard 0001 is pending: neither path may migrate past an open window.
    for summary in (run_online(gadgets_db), run_safe_migrate(gadgets_db)):
        assert summary.exit_code == ExitCode.BAD_INPUT
        assert f"window {expanded.run_id} is open" in summary.error and "--online --complete" in summary.error
    status = manage(gadgets_db, tmp_path, "migration_status", "--json")
    assert status.returncode == 0, status.stderr
    window = json.loads(status.stdout)["window"]
    assert window["run_id"] == expanded.run_id and window["status"] == "expanded"
    assert "label dropped; title NOT NULL" in window["operations"][0]["complete"][0]
    text = manage(gadgets_db, tmp_path, "migration_status").stdout
    assert f"Expand/contract window {expanded.run_id} open since" in text
    assert "--complete: label dropped; title NOT NULL" in text
    resume = run_online(gadgets_db, resume=True)
    assert resume.exit_code == ExitCode.BAD_INPUT
    assert run_online(gadgets_db, complete=True).exit_code == 0
    assert json.loads(manage(gadgets_db, tmp_path, "migration_status", "--json").stdout)["window"] is None
    nothing = run_online(gadgets_db, complete=True)
    assert nothing.exit_code == ExitCode.BAD_INPUT and "no open expand/contract window" in nothing.error


@pytest.mark.parametrize("when", ["expand", "complete"])
def test_a_killed_half_continues_to_its_end(gadgets_db, tmp_path, when):
    """SIGKILL in the middle of expand's backfill (then --resume) or of --complete (then --complete)."""
    with Release(gadgets_db.url, new=False) as old:
        if when == "expand":
            killed = manage_popen(
                gadgets_db,
                tmp_path,
                "safe_migrate",
                "--online",
                "ma_expand",
                "--noinput",
                MIGRATION_ONLINE_BATCH_SIZE="50",
                MIGRATION_ONLINE_BATCH_PAUSE="20ms",
            )
            run_reaches(gadgets_db, killed, "state->'current' ? 'block'")
            killed.send_signal(signal.SIGKILL)
            killed.communicate(timeout=30)
            resumed = run_online(gadgets_db, resume=True)
            assert resumed.exit_code == 0, resumed.error
            assert resumed.status == "expanded"
        else:
            assert run_online(gadgets_db, app_label="ma_expand").status == "expanded"
            # A contract step that waits on the application's lock: killed while it waits.
            blocker = pg(gadgets_db)
            with blocker.cursor() as cursor:  # psycopg2 opens the transaction; the lock stays until close
                cursor.execute("LOCK TABLE ma_gadgets IN ACCESS SHARE MODE")
            killed = manage_popen(gadgets_db, tmp_path, "safe_migrate", "--online", "--complete", "--noinput")
            run_reaches(gadgets_db, killed, "status = 'completing'")
            killed.send_signal(signal.SIGKILL)
            killed.communicate(timeout=30)
            blocker.close()
            refused = run_online(gadgets_db, abort=True)
            assert refused.exit_code == ExitCode.BAD_INPUT and "--online --complete" in refused.error
        old.stop()
        with Release(gadgets_db.url, new=True) as new:
            completed = run_online(gadgets_db, complete=True)
            assert completed.exit_code == 0, completed.error
    assert sorted(column_names(gadgets_db, "ma_gadgets")) == sorted(NEW_COLUMNS)
    assert_kept(gadgets_db, "title", old, new)
    assert leftovers(gadgets_db) == []
    assert run_validation(using=gadgets_db.alias).ok


def test_a_killed_expand_aborts_to_the_old_schema(gadgets_db, tmp_path):
    before = pg_schema(gadgets_db)
    with Release(gadgets_db.url, new=False) as old:
        killed = manage_popen(
            gadgets_db,
            tmp_path,
            "safe_migrate",
            "--online",
            "ma_expand",
            "--noinput",
            MIGRATION_ONLINE_BATCH_SIZE="50",
            MIGRATION_ONLINE_BATCH_PAUSE="20ms",
        )
        run_reaches(gadgets_db, killed, "state->'current' ? 'block'")
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=30)
        aborted = run_online(gadgets_db, abort=True)
        assert aborted.exit_code == 0, aborted.error
    assert pg_schema(gadgets_db) == before
    assert_kept(gadgets_db, "label", old)
    assert leftovers(gadgets_db) == []


def test_a_narrowing_type_change_names_the_rows_that_do_not_fit(request, settings, tmp_path):
    """A shorter varchar: a value the old release writes might not fit; the rows that do not fit now are named."""
    db = dbs.scratch(request, "postgresql", "head")
    with_apps(settings, "ma_online_unsafe")
    db.migrate("ma_online_unsafe:0001_initial")
    db.query("INSERT INTO ma_gadgets (name) VALUES ('short'), (repeat('x', 40)), ('tiny')")
    long_id = db.scalar("SELECT id FROM ma_gadgets WHERE length(name) = 40")
    linted = run_safe_migrate(db, plan_only=True, lint=True, app_label="ma_online_unsafe")
    assert linted.exit_code == 1
    (refusal,) = [r for r in linted.to_dict()["online"]["plan"]["refusals"] if "operation 2" in r]
    assert "a shorter length (50 -> 20)" in refusal and f"rows that do not fit now: {long_id}" in refusal


def test_the_guard_cancels_a_step_that_holds_a_write_blocking_lock_too_long(request, settings):
    """A RunPython declared bounded that is not: it holds ACCESS EXCLUSIVE and runs long. The statement
    timeout cancels it, the run is undone, and the application waited about that long at most."""
    settings.MIGRATION_ONLINE_STATEMENT_TIMEOUT = "300ms"
    db = dbs.scratch(request, "postgresql", "head")
    with_apps(settings, "ma_expand", "ma_online_guard")
    db.migrate("ma_expand:0001_initial")
    db.query("INSERT INTO ma_gadgets (label, qty, note, legacy, code) VALUES ('a', 1, 'n', 'x', 'c')")
    before = pg_schema(db)
    with Release(db.url, new=False, interval=0.02) as old:
        summary = run_online(db, app_label="ma_online_guard")
        time.sleep(0.3)
    assert summary.exit_code == ExitCode.FAILED
    assert "the guard cancelled" in summary.error and "MIGRATION_ONLINE_STATEMENT_TIMEOUT" in summary.error
    assert summary.status == "rolled_back"
    assert pg_schema(db) == before
    assert old.errors == [] and old.longest_wait_s < 1.0


# ---------------------------------------------------------------- helpers of this module


def column_types(db) -> dict[str, tuple[str, str]]:
    rows = db.query(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END "
        "FROM pg_attribute a WHERE a.attrelid = 'ma_gadgets'::regclass AND a.attnum > 0 AND NOT a.attisdropped"
    )
    return {name: (kind, nullable) for name, kind, nullable in rows}


def indexed_columns(db) -> list[tuple[str, bool]]:
    """Each index of ma_gadgets as (its definition without its name, unique)."""
    rows = db.query(
        "SELECT regexp_replace(pg_get_indexdef(indexrelid), 'INDEX \\S+ ON', 'INDEX ON'), indisunique "
        "FROM pg_index WHERE indrelid = 'ma_gadgets'::regclass"
    )
    return sorted(rows)


def leftovers(db) -> list[str]:
    """Objects of ours left behind: triggers, functions, CHECKs, columns, views named mo_..."""
    return [
        row[0]
        for row in db.query(
            "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'mo\\_%%' UNION ALL "
            "SELECT proname FROM pg_proc WHERE proname LIKE 'mo\\_%%' UNION ALL "
            "SELECT conname FROM pg_constraint WHERE conname LIKE 'mo\\_%%' UNION ALL "
            "SELECT attname FROM pg_attribute WHERE attrelid = 'ma_gadgets'::regclass AND attname LIKE 'mo\\_%%' "
            "AND NOT attisdropped"
        )
    ]


def _env(tmp_path, **extra: str) -> dict[str, str]:
    return manage_env(
        BACKUP_DIR=str(tmp_path / "backups"),
        MIGRATION_LOG=str(tmp_path / "migration.log"),
        TEST_MIGRATION_APPS="ma_expand,ma_online_guard",
        **extra,
    )


def manage(db, tmp_path, *args: str) -> subprocess.CompletedProcess:
    return run_manage(db.url, *args, env=_env(tmp_path))


def manage_popen(db, tmp_path, *args: str, **extra: str) -> subprocess.Popen:
    return start_manage(db.url, *args, env=_env(tmp_path, **extra))


def run_reaches(db, process: subprocess.Popen, condition: str) -> None:
    """Until the newest online run's row meets ``condition`` (read by another session), the run alive."""
    watcher = pg(db)
    watcher.autocommit = True

    def reached() -> bool:
        assert process.poll() is None, process.communicate()
        with watcher.cursor() as cursor:
            cursor.execute("SELECT to_regclass('migrations_ops_online_run') IS NOT NULL")
            if not cursor.fetchone()[0]:
                return False
            cursor.execute(f"SELECT {condition} FROM migrations_ops_online_run ORDER BY id DESC LIMIT 1")
            row = cursor.fetchone()
            return bool(row and row[0])

    try:
        wait_for(reached, 90, condition)
    finally:
        watcher.close()


# ---------------------------------------------------------------- tables: RenameModel and DeleteModel


@pytest.fixture
def widgets_db(request, settings):
    """ma_expand_model at the old release: 200 widgets, each with a part."""
    db = dbs.scratch(request, "postgresql", "head")
    with_apps(settings, "ma_expand_model")
    db.migrate("ma_expand_model:0001_initial")
    db.query("INSERT INTO ma_expand_model_widget (name, size) SELECT 'w' || i, i FROM generate_series(1, 200) i")
    db.query("INSERT INTO ma_expand_model_part (widget_id) SELECT id FROM ma_expand_model_widget")
    return db


def old_widget_release(db) -> tuple[int, int]:
    """What the old code does: insert a widget (through the old name) with RETURNING id, and a part of it."""
    with pg(db) as connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO ma_expand_model_widget (name, size) VALUES ('old', 2) RETURNING id")
        widget = cursor.fetchone()[0]
        cursor.execute("INSERT INTO ma_expand_model_part (widget_id) VALUES (%s) RETURNING id", [widget])
        part = cursor.fetchone()[0]
        cursor.execute("UPDATE ma_expand_model_widget SET size = 3 WHERE id = 1")
    return widget, part


def new_widget_release(db) -> int:
    """What the new code does: a gizmo in the renamed table; it deletes a widget whose part it does not know."""
    with pg(db) as connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO ma_expand_model_gizmo (name, size) VALUES ('new', 5) RETURNING id")
        gizmo = cursor.fetchone()[0]
        cursor.execute("DELETE FROM ma_expand_model_gizmo WHERE id = 2")
    return gizmo


def test_a_renamed_and_a_deleted_model_serve_both_releases_until_complete(widgets_db):
    expanded = run_online(widgets_db, app_label="ma_expand_model")
    assert expanded.status == "expanded", expanded.error
    widget, part = old_widget_release(widgets_db)
    gizmo = new_widget_release(widgets_db)
    assert widgets_db.scalar("SELECT size FROM ma_expand_model_gizmo WHERE id = 1") == 3
    assert widgets_db.scalar("SELECT count(*) FROM ma_expand_model_gizmo WHERE id = ANY(%s)", [[widget, gizmo]]) == 2
    assert widgets_db.scalar("SELECT count(*) FROM ma_expand_model_part WHERE id = %s", [part]) == 1
    assert run_validation(using=widgets_db.alias).ok
    assert run_online(widgets_db, complete=True).exit_code == 0
    tables = {row[0] for row in widgets_db.query("SELECT relname FROM pg_class WHERE relname LIKE 'ma_expand_model%%'")}
    assert "ma_expand_model_widget" not in tables and "ma_expand_model_part" not in tables
    assert widgets_db.scalar("SELECT count(*) FROM ma_expand_model_gizmo") == 201  # 200 + old + new - deleted
    assert run_validation(using=widgets_db.alias).ok


def test_abort_renames_the_table_back_with_both_releases_rows(widgets_db):
    before = pg_schema(widgets_db)
    assert run_online(widgets_db, app_label="ma_expand_model").status == "expanded"
    widget, _part = old_widget_release(widgets_db)
    gizmo = new_widget_release(widgets_db)
    aborted = run_online(widgets_db, abort=True)
    assert aborted.exit_code == 0, aborted.error
    (warning,) = aborted.warnings
    assert "left unenforced" in warning and "ma_expand_model_part" in warning
    rows = widgets_db.scalar("SELECT count(*) FROM ma_expand_model_widget WHERE id = ANY(%s)", [[widget, gizmo]])
    assert rows == 2
    # The part of the widget the new release deleted points at nothing: the restored foreign key is
    # left NOT VALID and validation names that row; nothing was dropped to make it hold.
    report = run_validation(using=widgets_db.alias)
    assert "foreign_keys" in [result.name for result in report.failures()]
    assert widgets_db.scalar("SELECT count(*) FROM ma_expand_model_part") == 201
    after = pg_schema(widgets_db)
    (changed,) = [key for key in before if after.get(key) != before[key]]
    assert changed[0] == "ma_expand_model_part" and after[changed].endswith("NOT VALID valid=false")
    assert set(after) == set(before)
