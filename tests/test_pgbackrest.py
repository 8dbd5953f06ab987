"""The pgBackRest safety point (MIGRATION_SAFETY_POINT = "pgbackrest") on a real archiving cluster.

Each test starts its own PostgreSQL cluster archiving into a real pgBackRest repository
(tests/pgbackrest_cluster.py), migrates the project into it and points a Django alias at it:
safe_migrate's safety point is a restore point on a recent backup, listed like any backup; restore_db
takes the server back to it; a WAL gap, a missing stanza, a wrong repository path and a server that
cannot be stopped are each one line, exit 2, and nothing changed.
"""

from __future__ import annotations

import shlex
import signal
import uuid
from io import StringIO

import pytest
from django.core.management import call_command

from migrations_ops.api import safe_migrate
from migrations_ops.backups import create_backup, get_backup, list_backups, restore_backup, verify_backup
from migrations_ops.errors import BadInput, ExitCode
from migrations_ops.options import SafeMigrateOptions
from tests import dbs
from tests.dbs import manage_env, start_manage
from tests.helpers import applied_migrations, with_apps
from tests.pgbackrest_cluster import AS_POSTGRES, PG_BIN, ArchivingCluster, missing_tools
from tests.reliability.harness import wait_for

pytestmark = pytest.mark.slow


def _started(request, settings) -> ArchivingCluster:
    """An archiving cluster with a full backup and a database ``app`` at the baseline, registered as an
    alias (``.alias``); stopped and removed when ``request``'s scope ends."""
    why = missing_tools()
    if why:
        if settings.REQUIRE_POSTGRES:
            pytest.fail(why)
        pytest.skip(why)
    blocker = request.getfixturevalue("django_db_blocker")
    blocker.unblock()
    request.addfinalizer(blocker.restore)
    archiving = ArchivingCluster()
    archiving.__enter__()
    request.addfinalizer(archiving.cleanup)
    archiving.stanza_create()
    archiving.create_database("app")
    archiving.alias = f"pitr_{uuid.uuid4().hex[:8]}"
    dbs.register(archiving.alias, archiving.url.rsplit("/", 1)[0] + "/app")
    request.addfinalizer(lambda: dbs.unregister(archiving.alias))
    call_command("migrate", "accounts", "0001", database=archiving.alias, verbosity=0)
    call_command("migrate", "billing", "0001", database=archiving.alias, verbosity=0)
    archiving.backup("full")
    return archiving


def _point_at(archiving: ArchivingCluster, settings, tmp_path) -> ArchivingCluster:
    """The settings that make ``archiving`` the safety point, with this test's backup directory."""
    server = archiving.server
    pg_ctl = [*AS_POSTGRES, str(PG_BIN / "pg_ctl"), "-D", str(server.datadir)]
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "migration.log"
    settings.MIGRATION_SAFETY_POINT = "pgbackrest"
    settings.PGBACKREST_STANZA = archiving.stanza
    settings.PGBACKREST_CONFIG = str(archiving.config)
    settings.PGBACKREST_COMMAND = shlex.join([*AS_POSTGRES, "pgbackrest"])
    settings.PGBACKREST_STOP_COMMAND = shlex.join([*pg_ctl, "-m", "fast", "-w", "stop"])
    settings.PGBACKREST_START_COMMAND = shlex.join(
        [*pg_ctl, "-l", str(server.logfile), "-o", f"-p {server.port} -k {server.socket_dir}", "start"]
    )
    return archiving


@pytest.fixture
def cluster(request, settings, tmp_path):
    """A cluster of the test's own: for tests that migrate, restore or break the archive."""
    return _point_at(_started(request, settings), settings, tmp_path)


@pytest.fixture(scope="module")
def module_cluster(request):
    from django.conf import settings

    return _started(request, settings)


@pytest.fixture
def shared_cluster(module_cluster, settings, tmp_path):
    """One cluster for the tests whose runs are refused and change nothing (each checks so)."""
    return _point_at(module_cluster, settings, tmp_path)


def rows(cluster, sql: str) -> str:
    return cluster.psql(sql, database="app")


def add_user(cluster, email: str) -> None:
    rows(
        cluster,
        "INSERT INTO users (id, password, is_superuser, email, full_name, role, is_active, is_staff, date_joined) "
        f"VALUES (gen_random_uuid(), 'x', false, '{email}', '', 'user', true, false, now())",
    )


def test_safe_migrate_takes_a_restore_point_and_restore_db_goes_back_to_it(cluster):
    add_user(cluster, "kept@example.com")
    summary = safe_migrate(cluster.alias, SafeMigrateOptions())
    assert summary.status == "applied", summary.error
    point = get_backup(summary.backup)
    assert point.format == "pgbackrest" and point.file.endswith(".pitr.json")
    assert point.tables == {} and point.migrations["billing"] == ["0001_initial"]
    assert point.name in [backup.name for backup in list_backups()]
    listing = StringIO()
    call_command("list_backups", stdout=listing)
    (line,) = [line for line in listing.getvalue().splitlines() if line.startswith(point.name)]
    assert "pre-migrate" in line and "pgBackRest point" in line and "size ok" in line
    report = verify_backup(point.name, using=cluster.alias)
    assert report.ok, report.failures()
    tested = verify_backup(point.name, restore_test=True, using=cluster.alias)  # a copy beside the server
    assert tested.ok, tested.failures()
    assert tested.restore_test["tables"]["users"] == 1  # the copy holds the row written before the point

    # After the migration the application writes; the restore takes the server back before both.
    add_user(cluster, "lost@example.com")
    migrated = applied_migrations(dbs.ScratchDatabase(cluster.alias, "postgresql", "", "app"))
    assert ("billing", "0002_enhanced_subscription_payment_models") in migrated

    result = restore_backup(point.name, using=cluster.alias, confirm=lambda *_: True)
    assert result.validation.get("ok"), result.validation
    assert rows(cluster, "SELECT string_agg(email, ',' ORDER BY email) FROM users") == "kept@example.com"
    back = applied_migrations(dbs.ScratchDatabase(cluster.alias, "postgresql", "", "app"))
    assert ("billing", "0001_initial") in back
    assert ("billing", "0002_enhanced_subscription_payment_models") not in back
    assert rows(cluster, "SELECT pg_is_in_recovery()") == "f"


def test_a_gap_in_the_archive_refuses_the_restore_before_the_server_is_stopped(cluster, settings):
    summary = safe_migrate(cluster.alias, SafeMigrateOptions())
    assert summary.status == "applied", summary.error
    point = get_backup(summary.backup)
    archived = cluster.archived_wal()
    backup_start = cluster.info()[0]["backup"][-1]["archive"]["start"]
    after_backup = sorted(segment for segment in archived if segment > backup_start)
    assert after_backup, archived
    archived[after_backup[0]].unlink()  # a segment the replay from the backup to the point needs

    report = verify_backup(point.name, using=cluster.alias)
    assert not report.ok and "gap" in "; ".join(report.failures())
    with pytest.raises(BadInput, match=f"gap.*{after_backup[0]}.*nothing was changed") as refused:
        restore_backup(point.name, using=cluster.alias, confirm=lambda *_: True)
    assert refused.value.exit_code == ExitCode.BAD_INPUT
    assert cluster.server.running()  # nothing was stopped
    assert ("billing", "0002_enhanced_subscription_payment_models") in applied_migrations(
        dbs.ScratchDatabase(cluster.alias, "postgresql", "", "app")
    )


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        pytest.param("PGBACKREST_STANZA", "nope", "no usable stanza nope", id="missing-stanza"),
        pytest.param("PGBACKREST_CONFIG", "wrong-repo", "no usable stanza mo", id="wrong-repository-path"),
        pytest.param(
            "PGBACKREST_CONFIG", "wrong-port", "cannot reach the database server", id="server-unreachable-by-pgbackrest"
        ),
    ],
)
def test_a_misconfigured_safety_point_is_one_line_and_changes_nothing(shared_cluster, settings, setting, value, says):
    cluster = shared_cluster
    if value.startswith("wrong-"):  # the same configuration with the repository or the server elsewhere
        wrong = cluster.root / f"{value}.conf"
        text = cluster.config.read_text()
        if value == "wrong-repo":
            text = text.replace(f"repo1-path={cluster.repo}", "repo1-path=/nonexistent")
        else:  # a backup is due (max age 0s) and pgBackRest looks for the server on a closed port
            text = text.replace(f"pg1-port={cluster.port}", "pg1-port=1")
            settings.PGBACKREST_MAX_AGE = "0s"
        wrong.write_text(text)
        value = str(wrong)
    setattr(settings, setting, value)
    before = applied_migrations(dbs.ScratchDatabase(cluster.alias, "postgresql", "", "app"))
    summary = safe_migrate(cluster.alias, SafeMigrateOptions())
    assert summary.exit_code == ExitCode.BAD_INPUT, summary.error
    assert says in summary.error and "\n" not in summary.error
    assert applied_migrations(dbs.ScratchDatabase(cluster.alias, "postgresql", "", "app")) == before
    assert list_backups() == []


def test_an_unknown_safety_point_kind_is_refused_before_anything_runs(baseline_db, settings):
    settings.MIGRATION_SAFETY_POINT = "snapshot"
    before = applied_migrations(baseline_db)
    summary = safe_migrate(baseline_db.alias, SafeMigrateOptions())
    assert summary.exit_code == ExitCode.BAD_INPUT
    assert "MIGRATION_SAFETY_POINT must be one of dump, pgbackrest" in summary.error
    assert applied_migrations(baseline_db) == before


@pytest.mark.parametrize(
    ("stop", "says"),
    [
        pytest.param("", "set PGBACKREST_STOP_COMMAND", id="no-stop-command"),
        pytest.param("false", "stopping the server failed", id="stop-command-fails"),
    ],
)
def test_a_restore_that_cannot_stop_the_server_is_refused(shared_cluster, settings, stop, says):
    cluster = shared_cluster
    point = create_backup(using=cluster.alias, reason="manual")
    assert point.format == "pgbackrest"
    before = applied_migrations(dbs.ScratchDatabase(cluster.alias, "postgresql", "", "app"))
    settings.PGBACKREST_STOP_COMMAND = stop
    with pytest.raises(BadInput, match=f"{says}.*nothing was changed") as refused:
        restore_backup(point.name, using=cluster.alias, confirm=lambda *_: True)
    assert "\n" not in refused.value.message
    assert cluster.server.running()
    assert applied_migrations(dbs.ScratchDatabase(cluster.alias, "postgresql", "", "app")) == before


def test_a_migration_killed_halfway_is_undone_by_restoring_its_safety_point(cluster, settings, tmp_path):
    """ma_segments 0002 runs outside a transaction: it adds ma_parts.weight (committed at once), then
    waits; SIGKILL there leaves the column behind and the migration unrecorded. The pre-migrate point
    takes the server back to the content it had before safe_migrate started."""
    with_apps(settings, "ma_segments")
    call_command("migrate", "ma_segments", "0001", database=cluster.alias, verbosity=0)
    add_user(cluster, "before@example.com")
    before = content(cluster)
    marker = tmp_path / "running"
    env = manage_env(
        TEST_MIGRATION_APPS="ma_segments",
        BACKUP_DIR=str(settings.BACKUP_DIR),
        MIGRATION_LOG=str(settings.MIGRATION_LOG),
        MIGRATION_SAFETY_POINT="pgbackrest",
        PGBACKREST_STANZA=settings.PGBACKREST_STANZA,
        PGBACKREST_CONFIG=settings.PGBACKREST_CONFIG,
        PGBACKREST_COMMAND=settings.PGBACKREST_COMMAND,
        MA_SEGMENTS_MARKER=str(marker),
        MA_SEGMENTS_SECONDS="60",
    )
    url = cluster.url.rsplit("/", 1)[0] + "/app"
    killed = start_manage(url, "safe_migrate", "ma_segments", "--noinput", env=env)
    wait_for(lambda: marker.exists() or killed.poll() is not None)
    assert killed.poll() is None, killed.communicate()
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=30)
    assert "weight" in rows(
        cluster, "SELECT string_agg(column_name, ',') FROM information_schema.columns WHERE table_name = 'ma_parts'"
    )  # the half that committed

    (point,) = [backup for backup in list_backups() if backup.reason == "pre-migrate"]
    assert point.format == "pgbackrest"
    restore_backup(point.name, using=cluster.alias, confirm=lambda *_: True)
    assert content(cluster) == before


def content(cluster) -> tuple[str, str, str]:
    columns = rows(
        cluster,
        "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns "
        "WHERE table_name = 'ma_parts'",
    )
    parts = rows(cluster, "SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM ma_parts")
    users = rows(cluster, "SELECT string_agg(email, ',' ORDER BY email) FROM users")
    return columns, parts, users


def test_a_failed_migration_that_cannot_be_reversed_restores_the_point(cluster, settings):
    """ma_irreversible 0001 commits a step nothing reverses and 0002 fails: with --allow-data-loss
    safe_migrate restores its pre-migrate point, and the server restarts under the run."""
    with_apps(settings, "ma_irreversible")
    add_user(cluster, "before@example.com")
    tables = "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"
    before = rows(cluster, tables)
    summary = safe_migrate(cluster.alias, SafeMigrateOptions(app_label="ma_irreversible", allow_data_loss=True))
    assert summary.status == "restored" and summary.rollback == "restore", summary.error
    assert summary.exit_code == ExitCode.FAILED
    assert get_backup(summary.backup).format == "pgbackrest"
    assert rows(cluster, tables) == before  # ma_bins, made by the irreversible step, is gone
    assert rows(cluster, "SELECT string_agg(email, ',') FROM users") == "before@example.com"
