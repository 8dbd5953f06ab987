"""seed_demo_data, reprice_subscriptions and rollup_analytics follow the operator contract like the
migrations_ops commands: --database-url, --json, one `error:` line, exit 2 for an unreachable database
or pending migrations (named), never a traceback."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from migrations_ops.errors import BadInput
from tests.dbs import manage_env, run_manage


def test_an_unreachable_database_is_one_line_and_exit_2():
    url = "postgres://postgres:pw-s3cret@127.0.0.1:5999/db"
    done = run_manage(url, "seed_demo_data", "--users", "1", env=manage_env("config.settings"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: database unreachable") and done.stderr.count("\n") == 1, done.stderr
    assert "s3cret" not in done.stderr


@pytest.mark.parametrize(
    ("command", "args"), [("reprice_subscriptions", ["--dry-run"]), ("rollup_analytics", ["--date", "2026-01-05"])]
)
def test_at_the_baseline_the_pending_migrations_are_named_and_nothing_changes(baseline_db, command, args):
    with pytest.raises(BadInput) as refused:
        call_command(command, *args, database=baseline_db.alias, stdout=StringIO())
    assert refused.value.exit_code == 2
    assert str(refused.value).startswith("pending migrations: accounts.0002_user_permissions, ")
    assert "run `manage.py safe_migrate` first" in str(refused.value)


def test_json_reports(migrated_db):
    out = StringIO()
    call_command("seed_demo_data", users=4, subscriptions=5, days=2, json=True, database=migrated_db.alias, stdout=out)
    report = json.loads(out.getvalue())
    assert report["state"] == "head" and report["counts"]["users"] == 4

    out = StringIO()
    call_command("reprice_subscriptions", "--dry-run", "--json", database=migrated_db.alias, stdout=out)
    repriced = json.loads(out.getvalue())
    assert repriced["dry_run"] is True and repriced["candidates"] >= 1 and repriced["changed"] == 0
    assert repriced["mrr_change"] == "0.00"

    out = StringIO()
    call_command("rollup_analytics", "--date", "2026-01-05", "--json", database=migrated_db.alias, stdout=out)
    assert json.loads(out.getvalue())["days"] == 1
