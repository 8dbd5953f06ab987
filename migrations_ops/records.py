"""The MigrationRun row of each safe_migrate run, written after the outcome.

Written last, outside the migration's transaction and after any restore, so neither a rollback
nor a restore can erase the record of the run that caused it.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from django.db import DatabaseError, connections

from migrations_ops import audit
from migrations_ops.errors import first_line
from migrations_ops.models import MigrationRun


def record_migration_run(using: str, summary: Any) -> bool:
    """Insert one MigrationRun row; False (and an audit line) if the table is not there."""
    connection = connections[using]
    with connection.cursor() as cursor:
        present = MigrationRun._meta.db_table in connection.introspection.table_names(cursor)
    if not present:
        audit.record("safe_migrate.run_not_recorded", reason="migration_run table absent at this migration state")
        return False
    try:
        MigrationRun.objects.using(using).create(
            status=summary.status,
            exit_code=summary.exit_code,
            applied=summary.applied,
            backup=summary.backup or "",
            rollback=summary.rollback or "",
            error=summary.error or "",
            durations=summary.durations,
            operator=audit.operator(),
            host=socket.gethostname(),
            pid=os.getpid(),
        )
    except DatabaseError as exc:
        audit.record("safe_migrate.run_not_recorded", reason=first_line(exc))
        return False
    return True
