"""The row-count guard follows the plan: renamed tables (RenameModel, AlterModelTable, their auto-created
many-to-many tables), tables the plan drops, and the shadow tables of a virtual table (real databases)."""

from __future__ import annotations

import pytest

from migrations_ops.api import safe_migrate
from migrations_ops.errors import ExitCode
from migrations_ops.options import SafeMigrateOptions
from migrations_ops.pipeline import MigrationSummary
from migrations_ops.planning import build_plan
from migrations_ops.row_guard import row_count_guard
from migrations_ops.shadow_tables import shadow_tables, shadow_tables_by_name

APP = "ma_rename_model"
WIDGET, WIDGET_TAGS = "ma_rename_model_widget", "ma_rename_model_widget_tags"
GADGET, GADGET_TAGS = "ma_rename_model_gadget", "ma_rename_model_gadget_tags"
TABLE, TABLE_TAGS = "ma_gadgets", "ma_gadgets_tags"
# Where the model and its many-to-many table are after each migration of ma_rename_model.
NAMES = {
    "0001_initial": (WIDGET, WIDGET_TAGS),
    "0002_rename_widget_gadget": (GADGET, GADGET_TAGS),
    "0003_alter_gadget_table": (TABLE, TABLE_TAGS),
}
FTS_TABLES = {
    "ma_fts_entry": {"ma_fts_entry_data", "ma_fts_entry_idx", "ma_fts_entry_content", "ma_fts_entry_docsize"}
    | {"ma_fts_entry_config"},
    "ma_fts_doc": {"ma_fts_doc_content", "ma_fts_doc_segments", "ma_fts_doc_segdir", "ma_fts_doc_docsize"}
    | {"ma_fts_doc_stat"},
    "ma_fts_box": {"ma_fts_box_node", "ma_fts_box_rowid", "ma_fts_box_parent"},
}


@pytest.fixture(autouse=True)
def _isolated_backups(settings, tmp_path):
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    settings.MIGRATION_LOCK_TIMEOUT = "2s"


def install(settings, *labels: str) -> None:
    settings.INSTALLED_APPS = [
        *settings.INSTALLED_APPS,
        *(f"tests.migration_apps.{label}.apps.Config" for label in labels),
    ]


def migrate_with_guard(db, app: str, target: str, **options) -> MigrationSummary:
    return safe_migrate(db.alias, SafeMigrateOptions(app_label=app, migration_name=target, **options))


def tables(db, prefix: str) -> set[str]:
    with db.connection.cursor() as cursor:
        return {name for name in db.connection.introspection.table_names(cursor) if name.startswith(prefix)}


def seed_widgets(db) -> None:
    """Two widgets, three tags, three tag links and a note, in ma_rename_model at 0001."""
    db.query("INSERT INTO ma_rename_model_tag (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    db.query(f"INSERT INTO {WIDGET} (id, title) VALUES (1, 'first'), (2, 'second')")
    db.query(f"INSERT INTO {WIDGET_TAGS} (widget_id, tag_id) VALUES (1, 1), (1, 2), (2, 3)")
    db.query("INSERT INTO ma_rename_model_note (id, widget_id) VALUES (1, 2)")


def assert_rows_under(db, migration: str) -> None:
    table, through = NAMES[migration]
    assert tables(db, "ma_") & set().union(*NAMES.values()) == {table, through}
    assert db.scalar(f"SELECT COUNT(*) FROM {table}") == 2
    assert db.scalar(f"SELECT COUNT(*) FROM {through}") == 3
    assert db.scalar("SELECT COUNT(*) FROM ma_rename_model_note") == 1


# ---------------------------------------------------------------- renamed tables keep their rows


@pytest.mark.parametrize(
    ("start", "target"),
    [
        ("0001_initial", "0002_rename_widget_gadget"),  # RenameModel
        ("0002_rename_widget_gadget", "0003_alter_gadget_table"),  # AlterModelTable
        ("0001_initial", "0003_alter_gadget_table"),  # both: widget -> gadget -> ma_gadgets
    ],
)
def test_renamed_tables_are_followed_forwards_and_backwards(migrated_db, settings, start, target):
    """The issue's wagtail 0070 (RenameModel PageRevision -> Revision with one revision): nothing is
    lost, so the guard must not call the renamed table 'gone', in either direction, on either engine."""
    install(settings, APP)
    migrated_db.migrate(f"{APP}:0001_initial")
    seed_widgets(migrated_db)
    migrated_db.migrate(f"{APP}:{start}")

    forwards = migrate_with_guard(migrated_db, APP, target)
    assert forwards.status == "applied", forwards.error
    assert forwards.validation.ok
    assert_rows_under(migrated_db, target)

    backwards = migrate_with_guard(migrated_db, APP, start)
    assert backwards.status == "applied", backwards.error
    assert_rows_under(migrated_db, start)


def test_renamed_then_dropped_tables_are_the_plans_drop(migrated_db, settings):
    """Back to zero from 0003: ma_gadgets is renamed twice and then dropped with its model."""
    install(settings, APP)
    migrated_db.migrate(f"{APP}:0001_initial")
    seed_widgets(migrated_db)
    migrated_db.migrate(f"{APP}:0003_alter_gadget_table")

    summary = migrate_with_guard(migrated_db, APP, "zero")
    assert summary.status == "applied", summary.error
    assert tables(migrated_db, "ma_rename_model") | tables(migrated_db, "ma_gadgets") == set()


def test_plan_composes_renames_across_its_steps(sqlite_migrated_db, settings):
    install(settings, APP)
    db = sqlite_migrated_db
    db.migrate(f"{APP}:0001_initial")
    forwards = build_plan(db.alias, APP, "0003")
    assert forwards.renamed_tables() == {WIDGET: TABLE, WIDGET_TAGS: TABLE_TAGS}

    db.migrate(f"{APP}:0003_alter_gadget_table")
    backwards = build_plan(db.alias, APP, "0001")
    assert backwards.renamed_tables() == {TABLE: WIDGET, TABLE_TAGS: WIDGET_TAGS}

    to_zero = build_plan(db.alias, APP, "zero")
    assert to_zero.renamed_tables() == {}
    assert {TABLE, TABLE_TAGS, "ma_rename_model_tag", "ma_rename_model_note"} <= to_zero.dropped_tables()


def test_a_real_loss_after_a_rename_is_still_reported(sqlite_migrated_db, settings):
    """The guard itself (no migration run): rows missing under the new name are a loss, named by both
    names, whether row counts or the plan's own row changes decide; --allow-row-loss takes either name."""
    install(settings, APP)
    db = sqlite_migrated_db
    db.migrate(f"{APP}:0001_initial")
    plan = build_plan(db.alias, APP, "0002")
    before = {WIDGET: 5, WIDGET_TAGS: 4, "ma_rename_model_tag": 2}

    intact = row_count_guard(plan, before, {GADGET: 5, GADGET_TAGS: 4, "ma_rename_model_tag": 2})
    assert intact.ok, intact.details

    after = {GADGET: 3, GADGET_TAGS: 4, "ma_rename_model_tag": 2}
    counted = row_count_guard(plan, before, after)
    assert not counted.ok
    assert counted.details["summary"].startswith(f"{WIDGET} (renamed {GADGET}): 5 -> 3")
    assert list(counted.details["losses"]) == [WIDGET]

    own = row_count_guard(plan, before, {**after, GADGET: 5}, own_changes={GADGET: -2, GADGET_TAGS: 0})
    assert not own.ok
    assert own.details["summary"].startswith(f"{WIDGET} (renamed {GADGET}): 5 -> 3")

    gone = row_count_guard(plan, before, {"ma_rename_model_tag": 2, GADGET_TAGS: 4})
    assert f"{WIDGET} (renamed {GADGET}): 5 -> table gone" in gone.details["summary"]

    for name in (WIDGET, GADGET):
        assert row_count_guard(plan, before, after, allowed=frozenset({name})).ok


# ---------------------------------------------------------------- rewritten and truncated tables (PostgreSQL)


def test_a_truncate_in_the_plan_is_a_loss_and_a_rewrite_that_keeps_the_rows_is_not(pg_migrated_db, settings):
    """On PostgreSQL the guard counts the plan's own deletes (pg_stat_xact_user_tables), and TRUNCATE
    deletes none it counts: a table the plan gave new storage (TRUNCATE, a rewriting ALTER) is compared
    by its rows instead. Counted by its deletes alone, this TRUNCATE of every row passed."""
    install(settings, "ma_truncate")
    db = pg_migrated_db
    db.migrate("ma_truncate:0001_initial")

    def storage() -> int:
        return db.scalar("SELECT relfilenode FROM pg_class WHERE oid = 'ma_entries'::regclass")

    first = storage()
    rewritten = migrate_with_guard(db, "ma_truncate", "0002_rewrite")
    assert rewritten.exit_code == 0, rewritten.error
    assert storage() != first and db.scalar("SELECT count(*) FROM ma_entries") == 3

    truncated = migrate_with_guard(db, "ma_truncate", "0003_truncate")
    assert truncated.exit_code == ExitCode.FAILED and truncated.status == "rolled_back", truncated.error
    assert "row_count_guard" in truncated.error and "ma_entries: 3 -> 0" in truncated.error, truncated.error
    assert db.scalar("SELECT count(*) FROM ma_entries") == 3
    assert not db.scalar("SELECT count(*) FROM django_migrations WHERE app = 'ma_truncate' AND name = '0003_truncate'")

    allowed = migrate_with_guard(db, "ma_truncate", "0003_truncate", allow_row_loss=frozenset({"ma_entries"}))
    assert allowed.exit_code == 0 and db.scalar("SELECT count(*) FROM ma_entries") == 0, allowed.error


# ---------------------------------------------------------------- virtual tables (SQLite)


def test_virtual_tables_and_their_shadow_tables_migrate_to_zero(sqlite_migrated_db, settings):
    """The issue's FTS app: `migrate ma_fts zero` drops each virtual table and, with it, its shadow
    tables; the guard must see those as the plan's drop, not as rows lost."""
    install(settings, "ma_fts")
    db = sqlite_migrated_db
    db.migrate("ma_fts:0001_initial")
    db.query("INSERT INTO ma_fts_entry (title, body) VALUES ('one', 'first entry'), ('two', 'second entry')")
    db.query("INSERT INTO ma_fts_doc (body) VALUES ('a document')")
    db.query("INSERT INTO ma_fts_box (id, min_x, max_x) VALUES (1, 0, 1), (2, 2, 3)")

    summary = migrate_with_guard(
        db,
        "ma_fts",
        "zero",
    )
    assert summary.status == "applied", summary.error
    assert tables(db, "ma_fts") == set()

    again = migrate_with_guard(db, "ma_fts", "0001")
    assert again.status == "applied", again.error
    assert tables(db, "ma_fts") == set(FTS_TABLES) | set().union(*FTS_TABLES.values())
    assert shadow_tables(db.connection) == FTS_TABLES
    with db.connection.cursor() as cursor:
        assert shadow_tables_by_name(cursor) == FTS_TABLES  # SQLite before 3.37 (no PRAGMA table_list)


def test_shadow_tables_are_judged_by_their_virtual_table(sqlite_migrated_db, settings):
    """Rows gone from the virtual table itself are a loss; its shadow tables' counts are its storage
    (an FTS index merging segments has fewer rows in <name>_data) and are never compared on their own."""
    install(settings, "ma_fts")
    plan = build_plan(sqlite_migrated_db.alias, "ma_fts", "0001")  # creates the tables: drops nothing
    shadows = {"ma_fts_entry": {"ma_fts_entry_data", "ma_fts_entry_config"}}
    before = {"ma_fts_entry": 2, "ma_fts_entry_data": 5, "ma_fts_entry_config": 1}

    merged = row_count_guard(plan, before, {"ma_fts_entry": 2, "ma_fts_entry_data": 3}, shadow_tables=shadows)
    assert merged.ok, merged.details

    lost = row_count_guard(plan, before, {"ma_fts_entry": 1, "ma_fts_entry_data": 3}, shadow_tables=shadows)
    assert not lost.ok
    assert list(lost.details["losses"]) == ["ma_fts_entry"]
    assert lost.details["summary"].startswith("ma_fts_entry: 2 -> 1 ")


def test_a_table_a_non_atomic_migration_renames_keeps_its_rows(migrated_db, settings, tmp_path):
    """wagtailcore 0070 renames pagerevision outside a transaction: the step's own row count follows the
    table to its new name (on PostgreSQL it once said "1 -> 0" and rolled a good upgrade back)."""
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "tests.migration_apps.ma_rename_nonatomic.apps.Config"]
    db = migrated_db
    db.migrate("ma_rename_nonatomic:0001_initial")
    forwards = safe_migrate(db.alias, SafeMigrateOptions(app_label="ma_rename_nonatomic"))
    assert forwards.status == "applied", forwards.error
    assert db.scalar("SELECT count(*) FROM ma_rename_nonatomic_revision") == 3
    backwards = safe_migrate(db.alias, SafeMigrateOptions(app_label="ma_rename_nonatomic", migration_name="0001"))
    assert backwards.status == "applied", backwards.error
    assert db.scalar("SELECT count(*) FROM ma_rename_nonatomic_pagerevision") == 3
