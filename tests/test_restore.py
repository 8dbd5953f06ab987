"""restore_db on both engines: full, atomic replacement; refusals that change nothing; locks; secrets."""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
from pathlib import Path

import psycopg2
import pytest

from migrations_ops import audit, backups
from migrations_ops.api import safe_migrate
from migrations_ops.engines import get_engine
from migrations_ops.engines.base import DumpFile, current_owner, sha256_of
from migrations_ops.errors import BadInput, ExitCode, LockHeld, OperationFailed
from migrations_ops.options import SafeMigrateOptions
from migrations_ops.validation import run_validation
from tests import dbs
from tests.dbs import latest_migration
from tests.helpers import add_users, check_result, content_checksums, corrupt, manage_in_env


@pytest.fixture
def unblocked(django_db_blocker):
    with django_db_blocker.unblock():
        yield


def test_round_trip_restores_identical_content_and_drops_later_objects(migrated_db, backup_env):
    db = migrated_db
    add_users(db, 3)
    before = content_checksums(db)
    backups.create_backup(using=db.alias, name="snap")

    add_users(db, 2, prefix="later")
    db.query("DELETE FROM django_migrations WHERE app = 'loyalty'")
    db.query("UPDATE users SET full_name = 'changed'")
    db.query("CREATE TABLE created_after_backup (id integer PRIMARY KEY)")
    assert content_checksums(db) != before

    result = backups.restore_backup("snap", using=db.alias)
    after = content_checksums(db)
    # Exactly the backup's content, plus the restore's own MigrationRun record (the audit trail survives).
    assert after.pop("migrations_ops_migrationrun") != before.pop("migrations_ops_migrationrun")
    assert after == before
    assert db.scalar("SELECT status FROM migrations_ops_migrationrun") == "restore"
    assert "created_after_backup" not in get_engine(db.alias).table_names()
    assert result.safety_backup and result.safety_backup.endswith("pre-restore")
    assert result.validation["ok"] is True
    assert result.migrations["loyalty"] == "0003_create_accounts_for_existing_users"
    # The safety backup holds the state just before the restore (5 users, the extra table).
    safety = backups.get_backup(result.safety_backup)
    assert safety.reason == "pre-restore" and safety.tables["users"] == 5 and "created_after_backup" in safety.tables
    # Sequences came back too: new rows still get fresh keys.
    add_users(db, 1, prefix="after")
    ends = [e for e in audit.read_events() if e["event"] == "restore.end"]
    assert len(ends) == 1 and ends[0]["outcome"] == "ok" and ends[0]["safety_backup"] == result.safety_backup


def test_postgresql_restore_recreates_btree_gist_and_the_exclusion_constraint(pg_migrated_db, backup_env):
    db = pg_migrated_db
    backups.create_backup(using=db.alias, name="gist")
    db.query("ALTER TABLE pricing_configs DROP CONSTRAINT IF EXISTS pricing_configs_no_overlap")
    backups.restore_backup("gist", using=db.alias, safety_backup=False)
    assert db.scalar("SELECT count(*) FROM pg_extension WHERE extname = 'btree_gist'") == 1
    assert (
        db.scalar("SELECT count(*) FROM pg_constraint WHERE contype = 'x' AND conrelid = 'pricing_configs'::regclass")
        == 1
    )


def test_postgresql_restore_leaves_the_planner_statistics(pg_migrated_db, backup_env):
    # pg_restore writes no column statistics; without them validation and the application's first
    # queries are planned blind until autovacuum comes by, which 3 rows never trigger.
    db = pg_migrated_db
    add_users(db, 3)
    backups.create_backup(using=db.alias, name="stats")
    backups.restore_backup("stats", using=db.alias, safety_backup=False, validate=False)
    assert db.scalar("SELECT count(*) FROM pg_stats WHERE schemaname = 'public' AND tablename = 'users'") > 0


def test_postgresql_restore_validation_trusts_the_keys_it_validated_and_checks_the_rest(pg_migrated_db, backup_env):
    # The restore's own transaction ran ADD FOREIGN KEY, which validated every row of each key it
    # created: validation after it skips those and still hunts orphans of keys restored NOT VALID.
    db = pg_migrated_db
    add_users(db, 2)
    user = db.scalar("SELECT id FROM users ORDER BY email LIMIT 1")
    db.query("CREATE TABLE crafted_notes (id serial PRIMARY KEY, user_id uuid)")
    db.query("INSERT INTO crafted_notes (user_id) VALUES (%s), ('00000000-0000-0000-0000-00000000beef')", [user])
    db.query(
        "ALTER TABLE crafted_notes ADD CONSTRAINT crafted_notes_user_fk "
        "FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID"
    )
    validated = db.scalar(
        "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE c.contype = 'f' AND c.convalidated AND n.nspname = 'public'"
    )
    assert validated >= 10
    backups.create_backup(using=db.alias, name="keys")
    result = backups.restore_backup("keys", using=db.alias, safety_backup=False)

    (check,) = [c for c in result.validation["checks"] if c["name"] == "foreign_keys"]
    assert check["ok"] is False
    assert check["details"]["proven_by_the_restore"] == validated
    assert check["details"]["foreign_keys"] == validated + 1
    (orphan,) = check["details"]["orphans"]
    assert orphan["constraint"] == "crafted_notes_user_fk" and orphan["validated"] is False
    assert orphan["first"] == ["id=2 -> user_id=00000000-0000-0000-0000-00000000beef"]
    # Outside a restore every key is checked again, validated or not.
    plain = check_result(run_validation(db.alias, only=["foreign_keys"]), "foreign_keys")
    assert "proven_by_the_restore" not in plain.details and plain.details["count"] == 1


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_corrupted_backup_is_refused_with_exit_2_and_database_untouched(migrated_db, backup_env, how):
    db = migrated_db
    manifest = backups.create_backup(using=db.alias, name="bad")
    db.query("CREATE TABLE created_after_backup (id integer PRIMARY KEY)")
    before = content_checksums(db)
    corrupt(manifest.path, how)
    result = manage_in_env(backup_env, "restore_db", "bad", "--noinput", url=db.url)
    assert result.returncode == 2, result.stderr
    assert "failed verification" in result.stderr and result.stderr.count("\n") == 1
    assert content_checksums(db) == before
    assert backups.list_backups() == [backups.get_backup("bad")], "no safety backup was taken"


@pytest.mark.parametrize("name", ["unknown", "../up", "a/b/c", ".."])
def test_unknown_or_invalid_backup_is_refused(migrated_db, backup_env, name):
    with pytest.raises(BadInput):
        backups.restore_backup(name, using=migrated_db.alias)


def test_backup_of_the_other_engine_is_refused_with_exit_2(tmp_path, backup_env, settings, unblocked):
    if settings.POSTGRES_UNAVAILABLE:
        pytest.skip(settings.POSTGRES_UNAVAILABLE)
    sqlite_db = dbs.new_database("sqlite", tmp_path, template=None)
    pg_db = dbs.new_database("postgresql", tmp_path)
    try:
        sqlite_db.query("CREATE TABLE t (id integer)")
        backups.create_backup(using=sqlite_db.alias, name="lite")
        result = manage_in_env(backup_env, "restore_db", "lite", "--noinput", url=pg_db.url)
        assert result.returncode == 2
        assert "sqlite backup" in result.stderr and "postgresql" in result.stderr
        assert pg_db.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
    finally:
        dbs.dispose(sqlite_db)
        dbs.dispose(pg_db)


def test_confirmation_must_be_the_database_name(migrated_db, backup_env):
    db = migrated_db
    backups.create_backup(using=db.alias, name="snap")
    db.query("CREATE TABLE created_after_backup (id integer PRIMARY KEY)")
    before = content_checksums(db)
    typed = get_engine(db.alias).display_name()

    refused = manage_in_env(backup_env, "restore_db", "snap", url=db.url, stdin="y\n")
    assert refused.returncode == 2 and "confirmation" in refused.stderr
    assert "Type the database name" in refused.stdout and "snap" in refused.stdout
    empty = manage_in_env(backup_env, "restore_db", "snap", url=db.url, stdin="\n")
    assert empty.returncode == 2
    assert content_checksums(db) == before

    accepted = manage_in_env(backup_env, "restore_db", "snap", url=db.url, stdin=typed + "\n")
    assert accepted.returncode == 0, accepted.stderr
    assert "migration state:" in accepted.stdout
    assert "created_after_backup" not in get_engine(db.alias).table_names()


def test_restore_into_a_new_target_database(migrated_db, backup_env, tmp_path):
    db = migrated_db
    add_users(db, 2)
    backups.create_backup(using=db.alias, name="copy")
    engine = get_engine(db.alias)
    target = engine.scratch_settings(f"target_{secrets.token_hex(3)}")
    url = dbs.postgres_url(target["NAME"]) if db.vendor == "postgresql" else f"sqlite:///{tmp_path / 't.sqlite3'}"
    try:
        result = manage_in_env(
            backup_env, "restore_db", "copy", "--noinput", "--json", "--target-database-url", url, url=db.url
        )
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert summary["created_database"] is True and summary["safety_backup"] is None
        assert summary["migrations"]["billing"] == latest_migration("billing")
        dbs.register("restore_target", url)
        target_db = dbs.ScratchDatabase("restore_target", db.vendor, url, target["NAME"])
        assert target_db.scalar("SELECT count(*) FROM users") == 2
    finally:
        dbs.unregister("restore_target")
        if db.vendor == "postgresql":
            dbs.drop_postgres_database(target["NAME"])


def _other_session(db):
    """A session reading users inside an open transaction: it blocks any schema replacement."""
    if db.vendor == "postgresql":
        conn = psycopg2.connect(dbname=db.name, user="postgres", host="127.0.0.1", port=5432)
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM users")
        cur.execute("SELECT pg_backend_pid()")
        return conn, str(cur.fetchone()[0])
    conn = sqlite3.connect(db.name, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM users").fetchone()
    return conn, "another connection"


def test_restore_blocked_by_another_session_fails_cleanly(migrated_db, backup_env):
    db = migrated_db
    add_users(db, 2)
    backups.create_backup(using=db.alias, name="snap")
    db.query("CREATE TABLE created_after_backup (id integer PRIMARY KEY)")
    before = content_checksums(db)
    blocker, who = _other_session(db)
    try:
        with pytest.raises(OperationFailed) as failure:
            backups.restore_backup("snap", using=db.alias, safety_backup=False)
        assert "blocked" in failure.value.message and who in failure.value.message
        assert "nothing was changed" in failure.value.message
        assert failure.value.exit_code == 1
        assert content_checksums(db) == before
        if db.vendor == "postgresql":
            backups.restore_backup("snap", using=db.alias, safety_backup=False, terminate_connections=True)
            assert "created_after_backup" not in get_engine(db.alias).table_names()
            with pytest.raises(psycopg2.Error):
                blocker.cursor().execute("SELECT 1")
    finally:
        blocker.close()


def test_restore_waits_for_nobody_when_the_migration_lock_is_held(migrated_db, backup_env):
    db = migrated_db
    backups.create_backup(using=db.alias, name="snap")
    db.query("CREATE TABLE created_after_backup (id integer PRIMARY KEY)")
    holder = current_owner("safe_migrate")
    with get_engine(db.alias).migration_lock(holder):
        with pytest.raises(LockHeld) as held:
            backups.restore_backup("snap", using=db.alias)
        assert f"pid {holder.pid}" in held.value.message and holder.host in held.value.message
        result = manage_in_env(backup_env, "restore_db", "snap", "--noinput", url=db.url)
        assert result.returncode == 3, result.stderr
        assert f"pid {holder.pid}" in result.stderr
    assert "created_after_backup" in get_engine(db.alias).table_names()
    assert [m.reason for m in backups.list_backups()] == ["manual"], "no safety backup while locked out"
    backups.restore_backup("snap", using=db.alias, safety_backup=False)  # the lock was released


def test_interrupted_restore_stream_rolls_back(pg_migrated_db, backup_env):
    """A backup whose archive ends early (checksum recomputed to pass) must not commit half a restore."""
    db = pg_migrated_db
    add_users(db, 3)
    manifest = backups.create_backup(using=db.alias, name="snap")
    db.query("CREATE TABLE created_after_backup (id integer PRIMARY KEY)")
    before = content_checksums(db)
    engine = get_engine(db.alias)
    whole = Path(manifest.path)
    partial = whole.with_name("partial.dump")
    raw = subprocess.run(["zstd", "-dc", str(whole)], capture_output=True, check=True).stdout
    partial.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(OperationFailed):
        engine.restore(DumpFile(partial, "pg_custom", manifest.tables), None, 2.0)
    assert content_checksums(db) == before


def test_password_never_appears_and_a_non_superuser_can_restore(backup_env, tmp_path, settings, unblocked):
    if settings.POSTGRES_UNAVAILABLE:
        pytest.skip(settings.POSTGRES_UNAVAILABLE)
    token = secrets.token_hex(4)
    role, password, name = f"mops_owner_{token}", f"Pw-{token}-s3cret", f"mops_pw_{token}"
    admin = psycopg2.connect(dbname="postgres", user="postgres", host="127.0.0.1", port=5432)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{password}'")
    admin.cursor().execute(f"CREATE DATABASE {name} OWNER {role}")
    url = f"postgres://{role}:{password}@127.0.0.1:5432/{name}"
    outputs = []
    try:
        dbs.register("pw_db", url)
        db = dbs.ScratchDatabase("pw_db", "postgresql", url, name)
        db.migrate()
        add_users(db, 2)
        for expected, args in (
            (0, ("backup_db", "--name", "pw", "--json")),
            (0, ("list_backups", "--json")),
            (0, ("verify_backup", "pw", "--restore-test", "--json")),
            (0, ("restore_db", "pw", "--noinput", "--json")),
            (2, ("restore_db", "nosuch", "--noinput")),
            (2, ("backup_db", "--name", "../bad")),
        ):
            result = manage_in_env(backup_env, *args, url=url)
            outputs += [result.stdout, result.stderr]
            assert result.returncode == expected, result
        restored = json.loads(outputs[6])
        assert restored["validation"]["ok"] is True and restored["safety_backup"]
        assert db.scalar("SELECT count(*) FROM users") == 2
        wrong = manage_in_env(backup_env, "backup_db", url=url.replace(f"/{name}", "/no_such_db_here"))
        outputs += [wrong.stdout, wrong.stderr]
        assert wrong.returncode == 2
        files = [p.read_text(errors="replace") for p in Path(backup_env["BACKUP_DIR"]).glob("*.json")]
        files.append(Path(backup_env["MIGRATION_LOG"]).read_text())
        assert len(files) >= 3
        for text in outputs + files:
            assert password not in text
    finally:
        dbs.unregister("pw_db")
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.cursor().execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_restore_keeps_the_public_schemas_owner_and_comment(migrated_db, backup_env):
    db = migrated_db
    query = (
        "SELECT pg_get_userbyid(nspowner), obj_description(oid, 'pg_namespace') FROM pg_namespace "
        "WHERE nspname = 'public'"
    )
    db.query("COMMENT ON SCHEMA public IS 'billing data'")
    db.query("ALTER SCHEMA public OWNER TO pg_database_owner")
    before = db.query(query)
    assert before == [("pg_database_owner", "billing data")]
    backups.create_backup(using=db.alias, name="snap")
    backups.restore_backup("snap", using=db.alias, safety_backup=False)
    assert db.query(query) == before  # not the restoring role, not an empty comment


def test_the_audit_trail_survives_a_restore_and_the_restore_is_recorded(migrated_db, backup_env):
    """MigrationRun rows written after a backup (here: a real safe_migrate run) outlive restoring it,
    with their own times, and the restore writes its own row."""
    from migrations_ops.api import safe_migrate
    from migrations_ops.models import MigrationRun
    from migrations_ops.options import SafeMigrateOptions

    db = migrated_db
    backups.create_backup(using=db.alias, name="before-run")
    assert safe_migrate(db.alias, SafeMigrateOptions()).status == "nothing_to_do"
    runs = MigrationRun.objects.using(db.alias)
    written = list(runs.values_list("status", "started_at", "pid"))
    assert [status for status, *_ in written] == ["nothing_to_do"]

    result = backups.restore_backup("before-run", using=db.alias, safety_backup=False)
    assert result.kept_runs == 1
    after = list(runs.order_by("started_at").values_list("status", "started_at", "pid", "backup"))
    assert after[0][:3] == written[0]
    assert [(status, backup) for status, _, _, backup in after[1:]] == [("restore", "before-run")]
    assert [e["kept_runs"] for e in audit.read_events() if e["event"] == "restore.end"] == [1]


def test_a_signal_after_the_restore_committed_never_reports_it_as_not_done(migrated_db, backup_env, monkeypatch):
    """SIGTERM the moment the content is replaced (as the audit records are written back): the
    restore stands and says so; raising "interrupted" here would be exit 1, "the database is as it
    was", about a database that now holds the backup."""
    import os
    import signal

    from migrations_ops import interrupts, records

    db = migrated_db
    add_users(db, 2)
    expected = content_checksums(db)
    backups.create_backup(using=db.alias, name="snap")
    add_users(db, 3, prefix="later")
    write_back = records.write_back_runs

    def signalled_write_back(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return write_back(*args, **kwargs)

    monkeypatch.setattr(records, "write_back_runs", signalled_write_back)
    with interrupts.handling_interrupts() as state:
        result = backups.restore_backup("snap", using=db.alias, safety_backup=False)
    assert state.received == ["SIGTERM"]
    assert result.backup == "snap" and result.validation["ok"] is True
    restored = content_checksums(db)
    restored.pop("migrations_ops_migrationrun", None)
    expected.pop("migrations_ops_migrationrun", None)
    assert restored == expected
    assert [e["outcome"] for e in audit.read_events() if e["event"] == "restore.end"] == ["ok"]


def damaged_after_checksum(manifest: backups.BackupManifest) -> None:
    """Cut the backup's file in half and give its manifest the cut file's size and checksum: damage
    that only the restore itself can find (a file that was broken before it was checksummed)."""
    corrupt(manifest.path, "truncate")
    data = json.loads(manifest.manifest_path.read_text())
    data.update(size_bytes=manifest.path.stat().st_size, sha256=sha256_of(manifest.path))
    manifest.manifest_path.write_text(json.dumps(data))


def test_a_failed_restore_names_the_live_database_as_unchanged(migrated_db, backup_env):
    db = migrated_db
    add_users(db, 2)
    damaged_after_checksum(backups.create_backup(using=db.alias, name="cut"))
    db.query("CREATE TABLE created_after_backup (id integer PRIMARY KEY)")
    before = content_checksums(db)
    result = manage_in_env(backup_env, "restore_db", "cut", "--noinput", "--no-safety-backup", url=db.url)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1
    assert f"database {get_engine(db.alias).display_name()} unchanged" in result.stderr
    assert content_checksums(db) == before


def test_a_failed_restore_in_a_rehearsal_names_the_scratch_copy_and_the_live_database(baseline_db, backup_env):
    db = baseline_db
    damaged_after_checksum(backups.create_backup(using=db.alias, name="cut"))
    before = content_checksums(db)
    summary = safe_migrate(db.alias, SafeMigrateOptions(rehearse=True, from_backup="cut"))
    assert summary.exit_code == ExitCode.FAILED, summary.error
    live = get_engine(db.alias).display_name()
    assert summary.error.startswith("rehearsal from backup cut: ")
    assert "; that is the scratch copy " in summary.error and "_rehearse_" in summary.error
    assert f"(dropped), the live database {live} is untouched" in summary.error
    assert content_checksums(db) == before
