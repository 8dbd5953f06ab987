"""The pgBackRest behaviour the safety point (migrations_ops/backups/pitr.py) is built around, on the
harness of tests/pgbackrest_cluster.py: restoring over a running server and checking a stopped one, a
WAL gap that pgBackRest's verify does not see, a later backup that never replays back to an earlier
restore point without --set, and pgBackRest run as the wrong user. (The safety point itself, backup
and restore included, is tested in tests/test_pgbackrest.py; the table below records every failure
observed while building it.) Real PostgreSQL 15 clusters and real repositories, one per test, in /tmp.

Skipped (with the reason) when pgbackrest or the PostgreSQL binaries are missing, failed instead when
REQUIRE_POSTGRES=1. Run: .venv/bin/python -m pytest -q -n 0 tests/test_pgbackrest_cluster.py (-s: timings).

Observed with pgBackRest 2.45, PostgreSQL 15 (Debian 12), run as root through `runuser -u postgres`.
pgBackRest writes WARN and ERROR to stderr (log-level-stderr defaults to warn) and nothing to stdout;
the HINT and cause lines follow the ERROR line, indented. `info`/`verify` "errors" come with exit 0.

========================  ===============================  ====  ==================================================
case                      command                          exit  first stderr line (then)
========================  ===============================  ====  ==================================================
stanza does not exist     --stanza=nope info               0     (none); stdout "status: error (missing stanza
                                                                 path)"; --output=json status.code 1
stanza does not exist     --stanza=nope check              37    ERROR: [037]: check command requires option:
                                                                 pg1-path (HINT: does this stanza exist?)
stanza does not exist     --stanza=nope backup             37    ERROR: [037]: backup command requires option:
                                                                 pg1-path
stanza not created        --stanza=nope --pg1-path=...     55    ERROR: [055]: unable to load info file
                          check | backup                         '<repo>/archive/nope/archive.info' or '...copy':
                                                                 (backup: '<repo>/backup/nope/backup.info')
wrong repo path           --repo1-path=<missing> info      0     (none); json status.code 1 "missing stanza path"
wrong repo path           ... check | backup               55    ERROR: [055]: unable to load info file
                                                                 '<missing>/archive/mo/archive.info' (backup.info)
wrong repo path           ... verify                       0     (none); only --output=text says "status: error"
                                                                 and "No usable backup.info file"
server down               check                            27    WARN: unable to check pg1: [DbConnectError]
                                                                 unable to connect to 'dbname='postgres' ...
                                                                 (ERROR: [027]: no database found)
server down               backup (full or incr)            56    WARN: unable to check pg1: [DbConnectError] ...
                                                                 (ERROR: [056]: unable to find primary cluster -
                                                                 cannot proceed)
server running            restore [--delta]                38    ERROR: [038]: unable to restore while PostgreSQL
                                                                 is running
WAL gap (a segment        verify                           0     (none); "status: ok", every backup "valid"; the
between the backup and                                           gap shows only at --log-level-console=detail, as
the point deleted from                                           two "archiveId: 15-1, wal start: X, wal stop: Y"
the repository)                                                  ranges
WAL gap                   archive-get <missing segment>    1     (none) (PostgreSQL's "end of the archive")
WAL gap                   restore --delta --type=name      0     (none); then the server: `pg_ctl start -w` mostly
                          --target=<point>, then start           exits 0 (consistent, read-only) and the server
                                                                 shuts down: "FATAL:  recovery ended before
                                                                 configured recovery target was reached"
gap in the backup's own   restore, then start              0     (none); pg_ctl start fails: "FATAL:  could not
WAL                                                              locate required checkpoint record"
unknown restore point     restore --type=name, start       0     (none); same FATAL as the WAL gap
backup taken after the    restore --type=name (the         0     (none); same FATAL as the WAL gap;
point                     latest backup, the default)            --set=<label of a backup before the point> works
pgbackrest as root         backup (no runuser)              0     WARN only; but the repository's info files are
(repository of postgres)                                         rewritten root-owned: afterwards `check` as
                          then, as postgres: check         41    ERROR: [041]: unable to load info file
                                                                 '<repo>/archive/mo/archive.info' ... [13]
                                                                 Permission denied; archive_command fails too
========================  ===============================  ====  ==================================================
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.pgbackrest_cluster import IS_ROOT, PGBACKREST, ArchivingCluster, RecoveryFailed, missing_tools

pytestmark = pytest.mark.slow

POINT = "mo_before_x"
RESTORE_TO_POINT = ("--type=name", f"--target={POINT}", "--target-action=promote")


def _require_tools() -> None:
    why = missing_tools()
    if why:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"REQUIRE_POSTGRES=1 but {why}")
        pytest.skip(why)


@pytest.fixture
def bare_cluster():
    """A running archiving cluster; no stanza yet."""
    _require_tools()
    with ArchivingCluster() as cluster:
        yield cluster


@pytest.fixture
def cluster(bare_cluster):
    """A running archiving cluster with its stanza and one full backup."""
    bare_cluster.stanza_create()
    bare_cluster.backup()
    return bare_cluster


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def snapshot(cluster) -> dict:
    """What the PITR tests compare: the app database's tables and every row of each."""
    tables = cluster.psql(
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
        database="app",
    ).split(",")
    return {
        table: cluster.psql(f"SELECT string_agg(t::text, ';' ORDER BY t::text) FROM {table} t", database="app")
        for table in tables
    }


def seed_and_mark_point(cluster) -> tuple[dict, str]:
    """Tables with rows in database `app`, then the restore point and its WAL archived: (snapshot, segment)."""
    cluster.create_database("app")
    cluster.psql(
        "CREATE TABLE accounts (id int PRIMARY KEY, email text, balance numeric);"
        "INSERT INTO accounts SELECT g, 'user' || g || '@example.com', g * 1.5 FROM generate_series(1, 2000) g;"
        "CREATE TABLE keep_me (id int PRIMARY KEY, note text);"
        "INSERT INTO keep_me VALUES (1, 'dropped after the point, back after the restore');",
        database="app",
    )
    before = snapshot(cluster)
    cluster.restore_point(POINT)
    segment = cluster.switch_and_wait_archived()
    return before, segment


def damage(cluster) -> None:
    """What a migration might do after the safety point."""
    cluster.psql(
        "UPDATE accounts SET balance = 0 WHERE id <= 100; DELETE FROM accounts WHERE id > 1500;"
        "INSERT INTO accounts VALUES (9999, 'late@example.com', 1);"
        "DROP TABLE keep_me; CREATE TABLE after_x (id int);",
        database="app",
    )


# ---------------------------------------------------------------- a. backups


def test_the_server_down_and_restoring_over_a_running_server(cluster):
    restore = cluster.pgbackrest("--delta", *RESTORE_TO_POINT, "restore")
    assert restore.returncode == 38
    assert first_line(restore.stderr) == "ERROR: [038]: unable to restore while PostgreSQL is running"

    cluster.stop()
    check = cluster.pgbackrest("check")
    assert check.returncode == 27
    assert first_line(check.stderr).startswith("WARN: unable to check pg1: [DbConnectError] unable to connect to")
    assert "ERROR: [027]: no database found" in check.stderr
    for backup_type in ("full", "incr"):
        backup = cluster.pgbackrest(f"--type={backup_type}", "backup")
        assert backup.returncode == 56
        assert first_line(backup.stderr).startswith("WARN: unable to check pg1: [DbConnectError]")
        assert "ERROR: [056]: unable to find primary cluster - cannot proceed" in backup.stderr
    assert len(cluster.info()[0]["backup"]) == 1  # nothing was recorded


def test_a_wal_gap_before_the_restore_point(cluster):
    # A segment between the backup and the point (written to: with nothing written since the backup's last
    # switch, pg_switch_wal() would not switch and would name the backup's own segment).
    cluster.psql("CREATE TABLE filler AS SELECT generate_series(1, 1000) AS id")
    gap = cluster.switch_and_wait_archived()
    _, segment = seed_and_mark_point(cluster)
    archived = cluster.archived_wal()
    assert gap < segment and {gap, segment} <= set(archived)
    archived[gap].unlink()

    # verify does not see the gap: exit 0, status ok; only its DETAIL log shows two WAL ranges.
    verify = cluster.pgbackrest("--output=text", "--verbose", "--log-level-console=detail", "verify")
    assert verify.returncode == 0 and verify.stderr == ""
    assert "status: ok" in verify.stdout and "status: valid" in verify.stdout
    ranges = re.findall(r"wal start: (\w{24}), wal stop: (\w{24})", verify.stdout)
    assert len(ranges) == 2 and ranges[0][1] < gap < ranges[1][0]
    # archive-get of the missing segment: exit 1, no message (PostgreSQL's "end of archive").
    got = cluster.pgbackrest("archive-get", gap, str(cluster.root / "got"))
    assert (got.returncode, got.stdout, got.stderr) == (1, "", "")

    cluster.stop()
    restore = cluster.pgbackrest("--delta", *RESTORE_TO_POINT, "restore")
    assert restore.returncode == 0  # pgBackRest does not check the WAL a restore needs
    # pg_ctl start -w usually exits 0 (the server is consistent, read-only, before it needs the missing
    # segment) and the server shuts down just after; start_until_promoted reports either the same way.
    with pytest.raises(RecoveryFailed) as failed:
        cluster.start_until_promoted()
    assert failed.value.fatal == "FATAL:  recovery ended before configured recovery target was reached"
    assert not cluster.server.running()


def test_a_backup_taken_after_the_restore_point_needs_set(cluster):
    [older] = cluster.backup_labels()
    before, _ = seed_and_mark_point(cluster)
    damage(cluster)
    cluster.backup("incr")  # e.g. a scheduled backup after the safety point
    cluster.stop()

    # --type=name always restores the latest backup: the point is before it, never replayed.
    assert cluster.pgbackrest("--delta", *RESTORE_TO_POINT, "restore").returncode == 0
    with pytest.raises(RecoveryFailed) as failed:
        cluster.start_until_promoted()
    assert failed.value.fatal == "FATAL:  recovery ended before configured recovery target was reached"

    # Naming the backup the point was taken after restores it.
    assert cluster.pgbackrest("--delta", f"--set={older}", *RESTORE_TO_POINT, "restore").returncode == 0
    cluster.start_until_promoted()
    assert snapshot(cluster) == before


def test_pgbackrest_run_as_root_locks_the_postgres_user_out_of_the_repository(bare_cluster):
    if not IS_ROOT:
        pytest.skip("the tests do not run as root")
    bare_cluster.stanza_create()
    as_root = subprocess.run(
        [PGBACKREST, f"--config={bare_cluster.config}", "--stanza=mo", "backup"], capture_output=True, text=True
    )
    assert as_root.returncode == 0  # pgBackRest does not refuse root...
    assert (bare_cluster.repo / "backup" / "mo" / "backup.info").stat().st_uid == 0  # ...and rewrites as root
    check = bare_cluster.pgbackrest("check")  # as postgres, what archive_command runs as
    assert check.returncode == 41
    assert first_line(check.stderr).startswith("ERROR: [041]: unable to load info file")
    assert "[13] Permission denied" in check.stderr
    print(f"\npgbackrest check as postgres after a backup as root: exit {check.returncode}\n{check.stderr}")
