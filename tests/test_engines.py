"""Engine details: the migration lock on both engines, tool checks, the foreign-key fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from migrations_ops.engines import engine_class, get_engine
from migrations_ops.engines.base import LockOwner, current_owner
from migrations_ops.errors import BadInput, LockHeld
from migrations_ops.timeouts import parse_duration
from migrations_ops.validation import run_validation
from tests import dbs


def test_second_holder_gets_lock_held_naming_the_first(migrated_db):
    engine = get_engine(migrated_db.alias)
    first = LockOwner(pid=4242, host="deploy-host", since="2030-01-02T03:04:05+00:00", command="safe_migrate")
    with engine.migration_lock(first):
        with pytest.raises(LockHeld) as held:
            with get_engine(migrated_db.alias).migration_lock(current_owner("restore_db")):
                pass
        assert held.value.exit_code == 3
        assert "pid 4242" in held.value.message and "deploy-host" in held.value.message
        assert "2030" in held.value.message
    with get_engine(migrated_db.alias).migration_lock(current_owner()):
        pass  # released when the block ended


def test_lock_is_released_when_the_holding_process_dies(migrated_db):
    code = (
        "import os, sys, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; django.setup();"
        "from migrations_ops.engines import get_engine; from migrations_ops.engines.base import current_owner;"
        "cm = get_engine().migration_lock(current_owner('holder')); cm.__enter__();"
        "print('held', flush=True); sys.stdin.read()"
    )
    env = {**os.environ, "DATABASE_URL": migrated_db.url}
    holder = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(LockHeld, match=f"pid {holder.pid}"):
            with get_engine(migrated_db.alias).migration_lock(current_owner()):
                pass
    finally:
        holder.kill()
        holder.wait()
    with get_engine(migrated_db.alias).migration_lock(current_owner()):
        pass  # a dead holder's lock is gone (advisory lock of a closed session, flock of a closed file)


def test_sqlite_lock_file_of_a_dead_process_is_taken_over(tmp_path, django_db_blocker):
    with django_db_blocker.unblock():
        db = dbs.new_database("sqlite", tmp_path)
    engine = get_engine(db.alias)
    engine.lock_path().write_text(json.dumps({"pid": 999999, "host": "gone", "since": "2000-01-01T00:00:00"}))
    me = current_owner("test")
    with engine.migration_lock(me):
        assert json.loads(engine.lock_path().read_text())["pid"] == os.getpid()
    dbs.dispose(db)


def test_unsupported_vendor_is_bad_input():
    with pytest.raises(BadInput, match="unsupported database engine 'oracle'"):
        engine_class("oracle")


@pytest.mark.parametrize(("text", "seconds"), [("5s", 5.0), ("500ms", 0.5), ("2min", 120.0), ("3", 3.0)])
def test_lock_timeout_parsing(text, seconds):
    assert parse_duration(text) == seconds


def _foreign_key_check(db):
    (result,) = run_validation(using=db.alias, only=["foreign_keys"]).checks
    return result


def test_foreign_key_check_names_orphans(migrated_db):
    # The engines' old FK fallback is gone (it was unreachable); the registered check does this job.
    assert _foreign_key_check(migrated_db).ok
    if migrated_db.vendor == "postgresql":
        migrated_db.query("SET session_replication_role = replica")
        migrated_db.query("INSERT INTO auth_group_permissions (group_id, permission_id) VALUES (123456, 1)")
        migrated_db.query("SET session_replication_role = DEFAULT")
    else:
        migrated_db.query("PRAGMA foreign_keys = OFF")
        migrated_db.query("INSERT INTO auth_group_permissions (group_id, permission_id) VALUES (123456, 1)")
    result = _foreign_key_check(migrated_db)
    assert not result.ok
    assert "auth_group_permissions" in str(result.details) and "auth_group" in str(result.details)


def test_pg_dump_major_version_is_checked_against_the_server(pg_migrated_db):
    engine = get_engine(pg_migrated_db.alias)
    version = engine.check_dump_tools()
    assert int(version.split(".")[0]) >= int(engine.server_version().split(".")[0])
    env = engine.tool_env()
    assert "PGPASSWORD" not in env or env["PGPASSWORD"] == (pg_migrated_db.connection.settings_dict["PASSWORD"])
    assert env["PGDATABASE"] == pg_migrated_db.name


ENGINE_MAY_IMPORT = {"errors", "database_url", "dialect", "timeouts", "interrupts"}


def test_engines_import_nothing_above_them():
    """The engines are the ground: besides each other they import errors/settings-level modules only
    (capacity.py judges what they report, never the other way round)."""
    import ast
    from pathlib import Path

    import migrations_ops.engines

    above = []
    for path in sorted(Path(migrations_ops.engines.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "migrations_ops" and parts[1] != "engines" and parts[1] not in ENGINE_MAY_IMPORT:
                    above.append(f"{path.name}:{node.lineno} {name}")
    assert above == []


def test_postgresql_tools_run_and_refuse_a_missing_tool():
    from migrations_ops.engines.postgresql import tools

    done = tools.run("cat", [], input=b"through stdin", timeout=30)
    assert (done.returncode, done.stdout) == (0, b"through stdin")
    with pytest.raises(BadInput, match="no-such-tool-xyz not found on PATH"):
        tools.run("no-such-tool-xyz", ["--version"], timeout=30)
    env = tools.tool_env({"dbname": "db", "password": "s3cret", "sslmode": "require"})
    assert (env["PGDATABASE"], env["PGPASSWORD"], env["PGSSLMODE"]) == ("db", "s3cret", "require")


def test_postgresql_side_connection_to_an_unreachable_server_is_bad_input():
    from types import SimpleNamespace

    from migrations_ops.engines.postgresql import PostgreSQLEngine

    settings = {"NAME": "db", "HOST": "127.0.0.1", "PORT": "1", "USER": "u", "OPTIONS": {}}
    engine = PostgreSQLEngine(SimpleNamespace(settings_dict=settings))
    with pytest.raises(BadInput, match="^database unreachable: "):
        with engine.side_connection():
            pass


def test_own_row_changes_since_counts_this_transaction_only(pg_migrated_db):
    """The server's per-session counters (pg_stat_xact_user_tables) keep earlier transactions' rows until
    it takes them into its statistics, at most once a second and never inside a transaction: read raw,
    the last transaction below also counted the one before it. Its own changes are the difference of
    two readings inside it."""
    from django.db import connections, transaction

    alias = pg_migrated_db.alias
    engine, connection = get_engine(alias), connections[alias]
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO auth_group (name) SELECT 'g' || i FROM generate_series(1, 20) i")
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        cursor.execute("DELETE FROM auth_group WHERE name IN ('g1', 'g2', 'g3')")  # within the second: held
    with transaction.atomic(using=alias):
        start = engine.own_row_changes()
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM auth_group WHERE name IN ('g4', 'g5')")
        assert engine.own_row_changes_since(start) == {"auth_group": -2}, (start, engine.own_row_changes())
