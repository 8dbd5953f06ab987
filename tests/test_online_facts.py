"""The online verdicts hold against what PostgreSQL measurably does.

Ground truth: the statement run for real on a table with rows, and ``pg_class.relfilenode`` of the
table and its indexes read before and after (PostgreSQL gives a rewritten relation a new file). A
statement ``--online`` runs as a catalog change must leave every file in place; one it refuses as a
rewrite must replace one. The verdicts come from the server (migrations_ops/online/facts.py), asked
on an empty copy, never from the statement's spelling.
"""

from __future__ import annotations

import importlib
import sys

import pytest
from django.apps import apps as django_apps

from migrations_ops.online import facts
from migrations_ops.online.statements import CATALOG, Refused, plan_statements
from tests import dbs
from tests.helpers import run_safe_migrate, write_app

ROWS = 2000


@pytest.fixture
def facts_db(request):
    db = dbs.scratch(request, "postgresql", None)
    db.query(
        "CREATE TABLE facts_t (id bigserial PRIMARY KEY, name varchar(50) NOT NULL, qty integer NOT NULL, "
        "price numeric(10, 2) NOT NULL, at timestamp NOT NULL DEFAULT now());"
        "CREATE INDEX facts_t_name ON facts_t (name); CREATE INDEX facts_t_qty ON facts_t (qty);"
        "CREATE INDEX facts_t_price ON facts_t (price)"
    )
    db.query(
        "INSERT INTO facts_t (name, qty, price) SELECT 'n' || i, i, i / 7.0 FROM generate_series(1, %s) i", [ROWS]
    )
    return db


def verdict(db, action: str) -> str:
    try:
        planned = plan_statements(f'ALTER TABLE "facts_t" {action}', {"facts_t"}, facts.probe(db.alias))
    except Refused as exc:
        return f"refused: {exc}"
    assert [s.mode for s in planned] == [CATALOG]
    return "catalog"


def rewritten(db, action: str) -> bool:
    """Run the statement on the real table (rows and all) and tell whether a file was replaced; undone."""
    files = "SELECT relname, relfilenode FROM pg_class WHERE relname LIKE 'facts_t%%' ORDER BY 1"
    with db.connection.cursor() as cursor:
        cursor.execute("BEGIN")
        try:
            cursor.execute(files)
            before = cursor.fetchall()
            cursor.execute(f'ALTER TABLE "facts_t" {action}')
            cursor.execute(files)
            after = cursor.fetchall()
        finally:
            cursor.execute("ROLLBACK")
    assert len(before) >= 5  # the table, its sequence, its four indexes: the measurement looked at them
    return before != after


CASES = [
    # (action, expected verdict); the verdict must also match the ground truth
    pytest.param("ADD COLUMN u uuid DEFAULT (GEN_RANDOM_UUID()) NOT NULL", "refused", id="RandomUUID-default"),
    pytest.param("ADD COLUMN r double precision DEFAULT (RANDOM()) NOT NULL", "refused", id="Random-default"),
    pytest.param("ADD COLUMN c timestamptz DEFAULT clock_timestamp() NOT NULL", "refused", id="clock_timestamp"),
    pytest.param("ADD COLUMN t timestamptz DEFAULT now() NOT NULL", "catalog", id="now-default"),
    pytest.param("ADD COLUMN s timestamptz DEFAULT (STATEMENT_TIMESTAMP()) NOT NULL", "catalog", id="Now-default"),
    pytest.param("ADD COLUMN l varchar(10) DEFAULT lower('ABC') NOT NULL", "catalog", id="immutable-call"),
    pytest.param("ADD COLUMN n integer DEFAULT 0 NOT NULL", "catalog", id="constant-default"),
    pytest.param("ALTER COLUMN name TYPE varchar(100)", "catalog", id="varchar-widening"),
    pytest.param("ALTER COLUMN name TYPE text", "catalog", id="varchar-to-text"),
    pytest.param("ALTER COLUMN price TYPE numeric(14, 2)", "catalog", id="numeric-precision-growth"),
    pytest.param("ALTER COLUMN name TYPE varchar(20)", "refused", id="varchar-narrowing"),
    pytest.param('ALTER COLUMN qty TYPE bigint USING "qty"::bigint', "refused", id="integer-to-bigint"),
    pytest.param("ALTER COLUMN price TYPE numeric(10, 3)", "refused", id="numeric-scale-change"),
    pytest.param("ALTER COLUMN at TYPE timestamptz", "catalog", id="timestamp-to-timestamptz-in-utc"),
]


@pytest.mark.parametrize(("action", "expected"), CASES)
def test_each_verdict_matches_what_the_server_does_to_a_table_with_rows(facts_db, action, expected):
    said = verdict(facts_db, action)
    assert said.split(":")[0] == expected, said
    assert rewritten(facts_db, action) == (expected == "refused")


def test_a_refused_default_names_the_volatile_function_from_pg_proc(facts_db):
    said = verdict(facts_db, "ADD COLUMN u uuid DEFAULT (GEN_RANDOM_UUID()) NOT NULL")
    assert "gen_random_uuid(): volatile in pg_proc" in said
    assert facts.volatility(facts_db.alias, "now() + random()") == [("random", "volatile"), ("now", "stable")]


def test_a_statement_the_server_rejects_is_refused_with_its_error(facts_db):
    said = verdict(facts_db, "ALTER COLUMN name TYPE jsonb")
    assert said.startswith("refused:") and "the server could not tell" in said and "cast" in said
    assert facts_db.scalar("SELECT count(*) FROM pg_class WHERE relname LIKE 'mo_probe%%'") == 0


# ---------------------------------------------------------------- from Django's own objects

LABEL = "ma_facts"
INITIAL = f"""
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    operations = [
        migrations.CreateModel(
            "Thing",
            [("id", models.BigAutoField(primary_key=True)), ("name", models.CharField(max_length=50))],
            options={{"db_table": "{LABEL}_things"}},
        )
    ]
"""
RELEASE = """
from django.contrib.postgres.functions import RandomUUID
from django.db import migrations, models
from django.db.models.functions import Now, Random


class Migration(migrations.Migration):
    dependencies = [("ma_facts", "0001_initial")]
    operations = [
        migrations.AddField("thing", "token", models.UUIDField(db_default=RandomUUID())),
        migrations.AddField("thing", "weight", models.FloatField(db_default=Random())),
        migrations.AddField("thing", "seen", models.DateTimeField(db_default=Now())),
        migrations.AlterField("thing", "name", models.CharField(max_length=80)),
        migrations.AlterField("thing", "name", models.TextField()),
    ]
"""


@pytest.fixture
def facts_app(request, tmp_path, monkeypatch, settings):
    """Install the throwaway app ma_facts with ``migrations`` on a database at the head; return it."""

    def install(migrations: dict[str, str]):
        db = dbs.scratch(request, "postgresql", "head")
        write_app(tmp_path / "apps", LABEL, migrations)
        monkeypatch.syspath_prepend(str(tmp_path / "apps"))
        importlib.invalidate_caches()
        settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, LABEL]
        return db

    yield install
    django_apps.all_models.pop(LABEL, None)
    for name in [m for m in sys.modules if m.split(".")[0] == LABEL]:
        del sys.modules[name]


def test_django_fields_are_judged_by_what_their_sql_does(facts_app):
    db = facts_app({"0001_initial.py": INITIAL, "0002_release.py": RELEASE})
    db.migrate(f"{LABEL}:0001_initial")
    db.query(f"INSERT INTO {LABEL}_things (name) SELECT 'n' || i FROM generate_series(1, 100) i")

    linted = run_safe_migrate(db, plan_only=True, lint=True, online=True, app_label=LABEL)
    assert linted.exit_code == 1
    refusals = linted.to_dict()["online"]["plan"]["refusals"]
    assert [refusal.split(" (")[0] for refusal in refusals] == [
        f"{LABEL}.0002_release operation 0",
        f"{LABEL}.0002_release operation 1",
    ], refusals
    assert "gen_random_uuid(): volatile" in refusals[0] and "random(): volatile" in refusals[1]
    operations = linted.to_dict()["online"]["plan"]["migrations"][0]["operations"]
    for catalog_change in operations[2:]:  # Now(), varchar widening, varchar -> text
        assert "refused" not in catalog_change and "contract" not in catalog_change, catalog_change
        assert [s["mode"] for s in catalog_change["statements"] if s["mode"] != "skip"] == ["catalog"]


UNIQUE_DROPPED = """
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("ma_facts", "0001_initial")]
    operations = [migrations.AlterUniqueTogether("thing", {("id", "name")})]
"""
UNIQUE_AGAIN = """
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("ma_facts", "0002_unique")]
    operations = [migrations.AlterUniqueTogether("thing", set())]
"""
DELETED = """
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("ma_facts", "0003_not_unique")]
    operations = [migrations.DeleteModel("thing")]
"""


def test_operations_on_a_table_the_run_creates_are_written_when_they_run(facts_app):
    # 0003's SQL cannot be written before 0002 made the constraint (Django looks it up by introspection),
    # and 0004 drops it: both are on a table no running code uses, so both run as they are.
    db = facts_app(
        {
            "0001_initial.py": INITIAL,
            "0002_unique.py": UNIQUE_DROPPED,
            "0003_not_unique.py": UNIQUE_AGAIN,
            "0004_deleted.py": DELETED,
        }
    )
    linted = run_safe_migrate(db, plan_only=True, lint=True, online=True, app_label=LABEL)
    assert linted.exit_code == 0, linted.error
    operations = {m["revision"]: m["operations"][0] for m in linted.to_dict()["online"]["plan"]["migrations"]}
    assert operations[f"{LABEL}.0003_not_unique"].get("planned_when_it_runs") is True, operations
    assert "a table this run creates" in linted.render_plan()
    applied = run_safe_migrate(db, online=True, app_label=LABEL)
    assert applied.exit_code == 0 and applied.status == "online_applied", applied.error
    assert f"{LABEL}_things" not in db.connection.introspection.table_names()
    assert len([r for r in db.query("SELECT name FROM django_migrations WHERE app = %s", [LABEL])]) == 4
