"""The MigrationRun rows: one per safe_migrate run and per restore_db, written after the outcome.

Written last, outside the migration's transaction and after any restore, so neither a rollback
nor a restore can erase the record of the run that caused it. A restore replaces the table with the
backup's copy, so the rows written since the backup are read before it and written back after it
(:func:`runs_before_restore`, :func:`write_back_runs`): the record of what was done to a database
outlives the restore of its content.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from django.db import DatabaseError, connections

from migrations_ops import audit
from migrations_ops.errors import first_line
from migrations_ops.models import MigrationRun


def _table_present(using: str) -> bool:
    connection = connections[using]
    with connection.cursor() as cursor:
        return MigrationRun._meta.db_table in connection.introspection.table_names(cursor)


def _insert_run(using: str, not_recorded: str, **fields: Any) -> bool:
    """One MigrationRun row with this process as operator; False (and an audit line) when the table is
    not there or the insert fails: the record of a run never fails the run."""
    if not _table_present(using):
        audit.record(not_recorded, reason="migration_run table absent at this migration state")
        return False
    try:
        MigrationRun.objects.using(using).create(
            **fields, operator=audit.operator(), host=socket.gethostname(), pid=os.getpid()
        )
    except DatabaseError as exc:
        audit.record(not_recorded, reason=first_line(exc))
        return False
    return True


def record_migration_run(using: str, summary: Any) -> bool:
    """Insert the MigrationRun row of a safe_migrate run."""
    return _insert_run(
        using,
        "safe_migrate.run_not_recorded",
        status=summary.status,
        exit_code=summary.exit_code,
        applied=summary.applied,
        backup=summary.backup or "",
        rollback=summary.rollback or "",
        error=summary.error or "",
        durations=summary.durations,
    )


# What identifies a record across a restore (ids are reused by the restored sequence).
_IDENTITY = ("started_at", "status", "pid", "host")
_COPIED = [f.name for f in MigrationRun._meta.concrete_fields if f.name != "id"]


def runs_before_restore(using: str) -> list[dict[str, Any]]:
    """Every MigrationRun row of the database as it is now (none when the table is not there)."""
    if not _table_present(using):
        return []
    return list(MigrationRun.objects.using(using).order_by("started_at", "id").values(*_COPIED))


def write_back_runs(using: str, rows: list[dict[str, Any]]) -> int:
    """Insert the rows of ``rows`` the restored table lacks (the records written since the backup);
    returns how many. If the restored state has no such table, or its columns differ, the rows
    stay in MIGRATION_LOG only (an audit line says so) and 0 is returned."""
    if not rows:
        return 0
    if not _table_present(using):
        audit.record("restore.runs_not_kept", count=len(rows), reason="migration_run table absent in the backup")
        return 0
    manager = MigrationRun.objects.using(using)
    present = {tuple(row[key] for key in _IDENTITY) for row in manager.values(*_IDENTITY)}
    missing = [row for row in rows if tuple(row[key] for key in _IDENTITY) not in present]
    try:
        for row in missing:
            created = manager.create(**row)
            # auto_now_add stamps "now" on create: give the record its own time back.
            manager.filter(pk=created.pk).update(started_at=row["started_at"])
    except DatabaseError as exc:
        audit.record("restore.runs_not_kept", count=len(missing), reason=first_line(exc))
        return 0
    return len(missing)


def record_restore(using: str, backup: str, duration_s: float, kept_runs: int) -> bool:
    """The MigrationRun row of a restore_db (status ``restore``)."""
    return _insert_run(
        using,
        "restore.run_not_recorded",
        status="restore",
        exit_code=0,
        applied=[],
        backup=backup,
        durations={"restore_s": duration_s, "kept_runs": kept_runs},
    )
