"""How the plan describes what it will do to each table (`safe_migrate --plan`)."""

from __future__ import annotations

import importlib
import sys

import pytest

from migrations_ops.planning import build_plan
from tests.helpers import write_app

MIGRATIONS = {
    "0001_initial.py": """
from django.db import migrations, models


class Migration(migrations.Migration):
    operations = [
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.BigAutoField(primary_key=True)),
                ("a", models.IntegerField()),
                ("b", models.IntegerField()),
            ],
            options={"db_table": "ma_render_items", "indexes": [models.Index(fields=["a"], name="ma_render_a")]},
        ),
    ]
""",
    "0002_renames_and_data.py": """
from django.db import migrations, models


def noop(apps, schema_editor):
    pass


class Migration(migrations.Migration):
    dependencies = [("ma_render", "0001_initial")]
    operations = [
        migrations.RenameIndex("item", new_name="ma_render_a2", old_name="ma_render_a"),
        migrations.AddIndex("item", models.Index(fields=["b"], name="ma_render_b")),
        migrations.RunPython(noop, noop),
        migrations.RunSQL("SELECT 1", "SELECT 1"),
        migrations.RunPython(noop, noop),
    ]
""",
}


@pytest.fixture
def render_app(tmp_path, monkeypatch, settings):
    write_app(tmp_path, "ma_render", MIGRATIONS)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "ma_render"]
    yield
    for name in [m for m in sys.modules if m == "ma_render" or m.startswith("ma_render.")]:
        del sys.modules[name]


def test_index_changes_are_named_and_a_data_migration_is_listed_once(sqlite_migrated_db, render_app):
    db = sqlite_migrated_db
    db.migrate("ma_render:0001_initial")

    forwards = build_plan(db.alias, "ma_render")
    effect = forwards.tables["ma_render_items"]
    assert effect.indexes == ["rename ma_render_a -> ma_render_a2", "add ma_render_b"]
    assert forwards.tables["(data)"].data_migrations == ["ma_render.0002_renames_and_data (forwards)"]
    rendered = forwards.render()
    assert "indexes: rename ma_render_a -> ma_render_a2, add ma_render_b" in rendered
    assert "add ," not in rendered and "remove ," not in rendered

    db.migrate("ma_render:0002_renames_and_data")
    backwards = build_plan(db.alias, "ma_render", "0001")
    assert backwards.tables["ma_render_items"].indexes == ["rename ma_render_a2 -> ma_render_a", "remove ma_render_b"]
    assert backwards.tables["(data)"].data_migrations == ["ma_render.0002_renames_and_data (reverse)"]
