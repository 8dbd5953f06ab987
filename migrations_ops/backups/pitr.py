"""The pgBackRest safety point (a restore point on a recent backup) and the restore back to it.

A point is a verified recent physical backup, a named restore point and the WAL archived past it.

With ``MIGRATION_SAFETY_POINT = "pgbackrest"`` (PostgreSQL), a backup taken by ``create_backup``
(``backup_db``, ``safe_migrate``'s pre-migrate backup) is a *point*, not a dump: seconds whatever the
database's size. Its data file ``<name>.pitr.json`` holds the facts a restore needs (stanza, the
backup's label, the restore point's name, LSN and WAL segment, the archive id), its manifest lists it
like any backup (format ``pgbackrest``). ``restore_db`` on it stops the server, runs pgBackRest's delta
restore to the restore point from that backup (``--set``: a later backup would never replay to an
earlier point), starts the server and waits until it is out of recovery. A point-in-time restore takes
the whole cluster back, every database in it: the restore says so before it asks.

pgBackRest's own checks miss a gap in the archive (``verify`` says ok, the restore exits 0 and the
server stops short of the point), so the archive is listed and every WAL segment from the backup's
start to the restore point must be there: at the point's creation, at ``verify_backup``, and before a
restore stops anything.
"""

from __future__ import annotations

import json
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections

from migrations_ops.aliases import temporary_alias
from migrations_ops.backups.catalog import POINT_FORMAT
from migrations_ops.engines import get_engine
from migrations_ops.engines.base import DatabaseEngine
from migrations_ops.engines.postgresql.pgbackrest import PgBackRest, Repository, missing_segments
from migrations_ops.errors import BadInput, OperationFailed, RecoveryFailed, first_line
from migrations_ops.status import applied_migrations
from migrations_ops.timeouts import setting_seconds

DUMP = "dump"
PGBACKREST = "pgbackrest"
KINDS = (DUMP, PGBACKREST)
FORMAT = POINT_FORMAT  # the manifest's format of a point
SUFFIX = ".pitr.json"
BACKUP_TYPES = ("full", "diff", "incr")


def kind() -> str:
    """MIGRATION_SAFETY_POINT, checked: ``dump`` or ``pgbackrest``."""
    chosen = getattr(settings, "MIGRATION_SAFETY_POINT", DUMP)
    if chosen not in KINDS:
        raise BadInput(f"MIGRATION_SAFETY_POINT must be one of {', '.join(KINDS)}, not {chosen!r}")
    return chosen


def repository() -> Repository:
    """The repository the settings name; BadInput when they are incomplete or malformed."""
    stanza = getattr(settings, "PGBACKREST_STANZA", "")
    if not stanza:
        raise BadInput("MIGRATION_SAFETY_POINT is pgbackrest but PGBACKREST_STANZA is not set; nothing was changed")
    backup_type = getattr(settings, "PGBACKREST_BACKUP_TYPE", "incr")
    if backup_type not in BACKUP_TYPES:
        raise BadInput(f"PGBACKREST_BACKUP_TYPE must be one of {', '.join(BACKUP_TYPES)}, not {backup_type!r}")
    setting_seconds("PGBACKREST_MAX_AGE")
    return Repository(
        stanza=stanza,
        config=getattr(settings, "PGBACKREST_CONFIG", "") or None,
        command=getattr(settings, "PGBACKREST_COMMAND", "pgbackrest"),
    )


@dataclass(frozen=True)
class Point:
    """What ``<name>.pitr.json`` records: everything a restore to the point needs."""

    stanza: str
    config: str | None
    backup_label: str
    backup_type: str
    tool_version: str  # pgBackRest's, as `pgbackrest version` prints it
    backup_taken: bool  # taken for this point (the newest one was older than PGBACKREST_MAX_AGE)
    archive_id: str
    archive_start: str  # the backup's first WAL segment
    restore_point: str
    lsn: str
    segment: str  # the WAL segment holding the restore point, archived before the point was recorded
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def read(cls, path) -> Point:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return cls(**{key: data[key] for key in cls.__dataclass_fields__})


def create_point(engine: DatabaseEngine, name: str) -> Point:
    """A restore point named ``name`` on top of a recent verified backup, its WAL archived and the
    archive continuous from the backup to it. BadInput/OperationFailed: no point (nothing else changed)."""
    if engine.vendor != "postgresql":
        raise BadInput(f"MIGRATION_SAFETY_POINT pgbackrest needs PostgreSQL, not {engine.vendor}")
    repo = repository()
    tool = PgBackRest(repo)
    backups = tool.backups()
    newest = backups[-1] if backups else None
    taken = newest is None or _age_s(newest) > setting_seconds("PGBACKREST_MAX_AGE")
    if taken:
        newest = tool.backup(settings.PGBACKREST_BACKUP_TYPE)
    connection = engine.connection
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_create_restore_point(%s)::text", [name])
            lsn = cursor.fetchone()[0]
            cursor.execute("SELECT pg_walfile_name(%s::pg_lsn)", [lsn])
            segment = cursor.fetchone()[0]
            cursor.execute("SELECT pg_walfile_name(pg_switch_wal())")  # close the segment, so it is archived
    except DatabaseError as exc:
        raise BadInput(
            f"cannot create a restore point ({first_line(exc)}): the role needs EXECUTE on "
            "pg_create_restore_point and pg_switch_wal (or superuser); nothing was changed"
        ) from None
    _wait_archived(connection, segment, setting_seconds("PGBACKREST_ARCHIVE_TIMEOUT"))
    archive_id = newest["archive_id"]
    start = newest.get("archive", {}).get("start", segment)
    gap = _gap(tool, archive_id, start, segment)
    if gap:
        raise OperationFailed(
            f"the pgBackRest archive of {repo.describe()} has a gap between backup {newest['label']} and the "
            f"restore point: WAL segment(s) {', '.join(gap)} missing; no point could be restored to: take a new "
            "full backup (pgbackrest backup --type=full)"
        )
    return Point(
        stanza=repo.stanza,
        config=repo.config,
        backup_label=newest["label"],
        backup_type=newest.get("type", ""),
        tool_version=tool.version(),
        backup_taken=taken,
        archive_id=archive_id,
        archive_start=start,
        restore_point=name,
        lsn=lsn,
        segment=segment,
        created_at=datetime.now(UTC).isoformat(timespec="microseconds"),
    )


def _age_s(backup: dict[str, Any]) -> float:
    stopped = backup.get("timestamp", {}).get("stop") or 0
    return time.time() - float(stopped)


def _wait_archived(connection, segment: str, timeout: float) -> None:
    """Until pg_stat_archiver says ``segment`` (or a later one) is archived; OperationFailed after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT last_archived_wal, last_failed_wal, last_failed_time FROM pg_stat_archiver")
            archived, failed, failed_at = cursor.fetchone()
        if archived and archived[:24] >= segment:
            return
        if time.monotonic() > deadline:
            problem = f"; the last failure was {failed} at {failed_at}" if failed else ""
            raise OperationFailed(
                f"WAL segment {segment} was not archived within {timeout:g}s (PGBACKREST_ARCHIVE_TIMEOUT){problem}: "
                "check the server's archive_command; the restore point is not usable"
            )
        time.sleep(0.1)


def _gap(tool: PgBackRest, archive_id: str, first: str, last: str) -> list[str]:
    """The segments missing between ``first`` and ``last`` (on ``last``'s timeline)."""
    if not archive_id:
        return []
    timeline = last[:8]
    archived = tool.archived_segments(archive_id, timeline)
    start = first if first[:8] == timeline else min([s for s in archived if s <= last] or [last])
    return missing_segments(archived, start, last)


def _tool(point: Point) -> PgBackRest:
    """pgBackRest on the stanza and configuration the point was taken with, run as the settings say."""
    return PgBackRest(Repository(point.stanza, point.config, getattr(settings, "PGBACKREST_COMMAND", "pgbackrest")))


def problems(point: Point) -> list[str]:
    """What keeps a restore to ``point`` from reaching it: the backup gone, a gap in the archive."""
    tool = _tool(point)
    labels = [backup["label"] for backup in tool.backups()]
    if point.backup_label not in labels:
        return [f"pgBackRest backup {point.backup_label} is no longer in the repository (expired by its retention?)"]
    gap = _gap(tool, point.archive_id, point.archive_start, point.segment)
    if gap:
        return [f"the archive has a gap before the restore point: WAL segment(s) {', '.join(gap)} missing"]
    return []


def restore_in_place(point: Point, engine: DatabaseEngine, timeout: float | None = None) -> float:
    """Take the server back to ``point``: stop it, delta-restore, start it, wait until it is promoted.

    Returns the seconds the server was down. The caller has checked the point is reachable
    (:func:`problems`, before it asked for confirmation). BadInput before anything is stopped (no
    stop/start command, the stop fails); RecoveryFailed once the server is down and the restore or
    the recovery failed (the message says what to run by hand).
    """
    stop, start = getattr(settings, "PGBACKREST_STOP_COMMAND", ""), getattr(settings, "PGBACKREST_START_COMMAND", "")
    if not stop or not start:
        raise BadInput(
            "a pgBackRest restore stops the database server: set PGBACKREST_STOP_COMMAND and "
            "PGBACKREST_START_COMMAND (e.g. 'pg_ctlcluster 16 main stop'); nothing was changed"
        )
    tool = _tool(point)
    timeout = timeout if timeout is not None else setting_seconds("PGBACKREST_RESTORE_TIMEOUT")
    for connection in connections.all():
        connection.close()
    _shell(stop, "stopping the server", BadInput, "nothing was changed")
    down = time.monotonic()
    by_hand = " ".join(
        tool.argv("--delta", "--type=name", f"--target={point.restore_point}", f"--set={point.backup_label}")
    )
    done = tool.run(
        "--delta",
        "--type=name",
        f"--target={point.restore_point}",
        f"--set={point.backup_label}",
        "--target-action=promote",
        "restore",
    )
    if done.returncode != 0:
        raise RecoveryFailed(
            f"pgBackRest restore failed (exit {done.returncode}: {first_line(done.stderr)}); the server is stopped: "
            f"fix the cause, then run `{by_hand} --target-action=promote restore` and start it"
        )
    _shell(start, "starting the server", RecoveryFailed, "the data directory is restored; start it by hand")
    _wait_promoted(engine, timeout, point)
    return time.monotonic() - down


def _shell(command: str, what: str, error: type, unchanged: str) -> None:
    try:
        done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise error(f"{what} failed ({exc}); {unchanged}") from None
    if done.returncode != 0:
        line = first_line(done.stderr or done.stdout or f"exit {done.returncode}")
        raise error(f"{what} failed (`{command}` exited {done.returncode}: {line}); {unchanged}")


def _wait_promoted(engine: DatabaseEngine, timeout: float, point: Point) -> None:
    """Until the server answers and is out of recovery. It may shut itself down when recovery ends
    short of the point (pg_ctl start still exits 0): RecoveryFailed, naming the likely gap."""
    deadline = time.monotonic() + timeout
    problem = "it did not answer"
    while time.monotonic() < deadline:
        connection = engine.connection
        try:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_is_in_recovery()")
                if not cursor.fetchone()[0]:
                    return
                problem = "it was still recovering"
        except DatabaseError as exc:
            problem = first_line(exc)
            connection.close()
        time.sleep(0.2)
    raise RecoveryFailed(
        f"the server did not come back out of recovery to {point.restore_point} within {timeout:g}s ({problem}); "
        'its log says why ("recovery ended before configured recovery target was reached": WAL is missing '
        f"from the archive): restore by hand with pgbackrest --stanza={point.stanza} --set={point.backup_label}"
    )


# --- the restore test: the point restored beside the server, started, read, removed ---
def _owner_prefix() -> list[str]:
    """How to run a command as the repository's owner: PGBACKREST_COMMAND without its last word
    (``runuser -u postgres -- pgbackrest`` -> ``runuser -u postgres --``)."""
    return shlex.split(getattr(settings, "PGBACKREST_COMMAND", "pgbackrest"))[:-1]


def _pg_ctl(engine: DatabaseEngine) -> str:
    """The server's pg_ctl: PGBACKREST_PG_BIN, else Debian's directory of the server's major, else PATH."""
    configured = getattr(settings, "PGBACKREST_PG_BIN", "")
    candidates = [Path(configured) / "pg_ctl"] if configured else []
    major = engine.server_version().split(".")[0]
    candidates += [Path(f"/usr/lib/postgresql/{major}/bin/pg_ctl"), Path(shutil.which("pg_ctl") or "/nonexistent")]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise BadInput("pg_ctl not found for the restore test: set PGBACKREST_PG_BIN to the server's bin directory")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def restore_test(point: Point, engine: DatabaseEngine, expected: dict[str, list[str]]) -> dict[str, Any]:
    """Restore ``point`` into a scratch data directory (archiving off, so the copy never writes into
    the repository), start it on a free port, wait until it is promoted at the restore point, read its
    applied migrations and row counts, compare the migrations with ``expected``; then stop and remove it.
    The live server is only read. The caller has checked the point is reachable (:func:`problems`)."""
    started = time.monotonic()
    prefix = _owner_prefix()
    tool = _tool(point)
    root = Path(tempfile.gettempdir()) / f"mo-verify-{secrets.token_hex(4)}"
    data, log, port = root / "data", root / "server.log", _free_port()
    pg_ctl = [*prefix, _pg_ctl(engine), "-D", str(data)]
    try:
        done = tool.run(
            f"--pg1-path={data}",
            "--archive-mode=off",
            "--type=name",
            f"--target={point.restore_point}",
            f"--set={point.backup_label}",
            "--target-action=promote",
            "restore",
        )
        if done.returncode != 0:
            return {"ok": False, "details": [f"pgBackRest restore into {data} failed: {first_line(done.stderr)}"]}
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
        subprocess.run([*pg_ctl, "-l", str(log), "-o", options, "-w", "-t", "300", "start"], capture_output=True)
        copy = {**engine.settings_dict, "HOST": "127.0.0.1", "PORT": str(port)}
        with temporary_alias(copy) as alias:
            scratch = get_engine(alias)
            try:
                _wait_promoted(scratch, setting_seconds("PGBACKREST_RESTORE_TIMEOUT"), point)
            except RecoveryFailed:
                reason = _fatal(prefix, log)
                return {"ok": False, "details": [f"the copy did not reach {point.restore_point}: {reason}"]}
            migrations, tables = applied_migrations(alias), scratch.row_counts()
            scratch.connection.close()
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True)
        subprocess.run([*prefix, "rm", "-rf", str(root)], capture_output=True)
    details = [] if migrations == expected else [f"applied migrations differ: {migrations} != {expected}"]
    return {
        "ok": not details,
        "details": details or [f"restored to {point.restore_point} and promoted; migrations as recorded"],
        "tables": tables,
        "duration_s": round(time.monotonic() - started, 3),
    }


def _fatal(prefix: list[str], log: Path) -> str:
    """The copy's FATAL line (its log is the repository owner's to read)."""
    done = subprocess.run([*prefix, "cat", str(log)], capture_output=True, text=True)
    fatal = [line for line in done.stdout.splitlines() if "FATAL" in line]
    return fatal[-1].strip() if fatal else "it shut down during recovery"
