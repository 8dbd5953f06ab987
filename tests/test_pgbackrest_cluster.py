"""The pgBackRest harness (tests/pgbackrest_cluster.py) and the pgBackRest behaviour the migration
"safety point" relies on: full/incremental backup, a named restore point with its WAL archived, a delta
restore to that point (in place, and into a scratch directory on another port), and how each failure
shows. Real PostgreSQL 15 clusters and real repositories, one per test, in /tmp.

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

import json
import os
import re
import subprocess
import time

import pytest

from tests.helpers import free_port
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


def timed(timings: dict, label: str, action):
    started = time.monotonic()
    result = action()
    timings[label] = round(time.monotonic() - started, 2)
    return result


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


def test_full_and_incremental_backups_show_in_info(bare_cluster):
    timings: dict = {}
    timed(timings, "stanza-create", bare_cluster.stanza_create)
    timed(timings, "full backup", bare_cluster.backup)
    bare_cluster.psql("CREATE TABLE grow AS SELECT generate_series(1, 10000) AS id")
    timed(timings, "incr backup", lambda: bare_cluster.backup("incr"))
    timed(timings, "check", lambda: bare_cluster.pgbackrest("check", check=True))
    print(f"\ntimings (s): {timings}")

    [stanza] = bare_cluster.info()
    assert stanza["name"] == "mo"
    assert stanza["status"] == {"code": 0, "lock": {"backup": {"held": False}}, "message": "ok"}
    full, incr = stanza["backup"]
    assert full["type"] == "full" and re.fullmatch(r"\d{8}-\d{6}F", full["label"])
    assert incr["type"] == "incr" and re.fullmatch(re.escape(full["label"]) + r"_\d{8}-\d{6}I", incr["label"])
    assert incr["prior"] == full["label"] and incr["reference"] == [full["label"]]
    assert not full["error"] and not incr["error"]
    # Every backup's WAL (archive start..stop) is in the repository, and info's archive range covers it.
    archived = bare_cluster.archived_wal()
    for backup in (full, incr):
        assert backup["archive"]["start"] in archived and backup["archive"]["stop"] in archived
    [archive] = stanza["archive"]
    assert (
        archive["id"] == "15-1"
        and archive["min"] <= full["archive"]["start"] <= incr["archive"]["stop"] <= archive["max"]
    )


# ---------------------------------------------------------------- b. in-place delta restore to the named point


def test_delta_restore_to_the_named_restore_point_undoes_later_changes(cluster):
    timings: dict = {}
    cluster.psql("CREATE TABLE before_backup (id int)")
    timed(timings, "incr backup", lambda: cluster.backup("incr"))
    before, segment = timed(timings, "restore point + switch + archive wait", lambda: seed_and_mark_point(cluster))
    assert segment in cluster.archived_wal()
    damage(cluster)
    assert snapshot(cluster) != before
    timed(timings, "stop", cluster.stop)

    restore = timed(timings, "delta restore", lambda: cluster.pgbackrest("--delta", *RESTORE_TO_POINT, "restore"))
    assert restore.returncode == 0, restore.stderr
    auto_conf = (cluster.datadir / "postgresql.auto.conf").read_text()
    assert f"recovery_target_name = '{POINT}'" in auto_conf and "recovery_target_action = 'promote'" in auto_conf
    assert "archive-get %f" in auto_conf  # restore_command written by pgBackRest
    timed(timings, "start", cluster.start)
    timed(timings, "recovery until promoted", cluster.server.wait_until_primary)
    print(f"\ntimings (s): {timings}")

    assert snapshot(cluster) == before
    assert f'recovery stopping at restore point "{POINT}"' in cluster.server.log_tail(60)
    assert cluster.psql("SELECT timeline_id FROM pg_control_checkpoint()") == "2"  # promoted: a new timeline
    # The promoted cluster archives again (on timeline 2), so the next safety point can be taken.
    new_segment = cluster.switch_and_wait_archived()
    assert new_segment.startswith("00000002")
    assert cluster.pgbackrest("check").returncode == 0


# ---------------------------------------------------------------- c. restore into a scratch directory


def test_restore_into_a_scratch_directory_on_another_port_while_the_original_runs(cluster):
    before, _ = seed_and_mark_point(cluster)
    damage(cluster)
    after = snapshot(cluster)

    started = time.monotonic()
    port = free_port()
    copy = cluster.restore_copy(*RESTORE_TO_POINT, name="scratch", port=port)
    restored_in = time.monotonic() - started
    auto_conf = (copy.datadir / "postgresql.auto.conf").read_text()
    assert "archive_mode = 'off'" in auto_conf and f"--pg1-path={copy.datadir}" in auto_conf
    copy.start()
    copy.wait_until_primary()
    print(f"\nscratch restore {restored_in:.2f}s, start + recovery {time.monotonic() - started - restored_in:.2f}s")

    assert copy.port == port != cluster.port
    assert copy.psql("SHOW port") == str(port) and copy.psql("SHOW archive_mode") == "off"
    rows = copy.psql("SELECT string_agg(t::text, ';' ORDER BY t::text) FROM accounts t", database="app")
    assert rows == before["accounts"]
    assert copy.psql("SELECT note FROM keep_me", database="app").startswith("dropped after the point")
    # The original kept running, untouched, and its repository saw nothing of the copy's new timeline.
    assert cluster.psql("SELECT pg_is_in_recovery()") == "f" and snapshot(cluster) == after
    assert not list((cluster.repo / "archive" / "mo").glob("*/00000002.history"))
    assert cluster.pgbackrest("check").returncode == 0


# ---------------------------------------------------------------- d. failures


def test_a_stanza_that_does_not_exist(cluster):
    info = cluster.pgbackrest("--stanza=nope", "info")
    assert info.returncode == 0 and "status: error (missing stanza path)" in info.stdout
    [stanza] = json.loads(cluster.pgbackrest("--stanza=nope", "--output=json", "info").stdout)
    assert stanza["status"]["code"] == 1 and stanza["status"]["message"] == "missing stanza path"

    for command in ("check", "backup"):
        result = cluster.pgbackrest("--stanza=nope", command)
        assert result.returncode == 37
        assert first_line(result.stderr) == f"ERROR: [037]: {command} command requires option: pg1-path"
        assert "HINT: does this stanza exist?" in result.stderr

    # With a data directory given, the missing stanza is the repository's info files.
    server = (f"--pg1-path={cluster.datadir}", f"--pg1-port={cluster.port}", f"--pg1-socket-path={cluster.socket_dir}")
    for command, info_file in (("check", "archive/nope/archive.info"), ("backup", "backup/nope/backup.info")):
        result = cluster.pgbackrest("--stanza=nope", *server, command)
        assert result.returncode == 55
        assert first_line(result.stderr).startswith(
            f"ERROR: [055]: unable to load info file '{cluster.repo}/{info_file}'"
        )


def test_a_wrong_repository_path(cluster):
    missing = cluster.root / "no-such-repo"
    [stanza] = json.loads(cluster.pgbackrest(f"--repo1-path={missing}", "--output=json", "info").stdout)
    assert stanza["status"]["code"] == 1 and stanza["status"]["message"] == "missing stanza path"

    for command, info_file in (("check", "archive/mo/archive.info"), ("backup", "backup/mo/backup.info")):
        result = cluster.pgbackrest(f"--repo1-path={missing}", command)
        assert result.returncode == 55
        assert first_line(result.stderr).startswith(f"ERROR: [055]: unable to load info file '{missing}/{info_file}'")

    # verify exits 0 on a repository that is not there: only its text output says so.
    verify = cluster.pgbackrest(f"--repo1-path={missing}", "--output=text", "verify")
    assert verify.returncode == 0 and verify.stderr == ""
    assert "status: error" in verify.stdout and "No usable backup.info file" in verify.stdout
    assert not missing.exists()


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


def test_the_backups_own_wal_missing(cluster):
    [backup] = cluster.info()[0]["backup"]
    cluster.restore_point(POINT)
    cluster.switch_and_wait_archived()
    cluster.archived_wal()[backup["archive"]["start"]].unlink()
    cluster.stop()
    assert cluster.pgbackrest("--delta", *RESTORE_TO_POINT, "restore").returncode == 0
    with pytest.raises(RecoveryFailed) as failed:
        cluster.start_until_promoted()
    assert failed.value.fatal == "FATAL:  could not locate required checkpoint record"


def test_an_unknown_restore_point_name(cluster):
    cluster.psql("CREATE TABLE t (id int)")
    cluster.switch_and_wait_archived()
    cluster.stop()
    restore = cluster.pgbackrest(
        "--delta", "--type=name", "--target=no_such_point", "--target-action=promote", "restore"
    )
    assert restore.returncode == 0  # the name is not checked by pgBackRest
    with pytest.raises(RecoveryFailed) as failed:
        cluster.start_until_promoted()
    assert failed.value.fatal == "FATAL:  recovery ended before configured recovery target was reached"


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
