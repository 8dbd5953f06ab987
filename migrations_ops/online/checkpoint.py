"""The checkpoint of an online run: one row per run in ``migrations_ops_online_run``.

It is written in the same transaction as the work it records (a statement, a batch, a
migration's django_migrations row), so after a SIGKILL at any moment it says exactly what is
done: ``--resume`` continues from it and ``--abort`` undoes what it lists. The table is created
on first use (plain SQL, a new table: a catalog change) because the run may start at a migration
state where none of migrations_ops' own tables exist yet.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction

from migrations_ops.errors import BadInput

TABLE = "migrations_ops_online_run"
RUNNING = "running"
DONE = "done"
ABORTED = "aborted"
FAILED = "failed"  # failed and undone: kept for the record
EXPANDED = "expanded"  # the window is open: both releases work; --complete contracts, --abort goes back
COMPLETING = "completing"  # --complete has begun (drops are not undone): only --complete finishes it
WINDOW = (EXPANDED, COMPLETING)

_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    status text NOT NULL,
    pid integer NOT NULL,
    host text NOT NULL,
    backup text,
    state jsonb NOT NULL
)
"""


@dataclass
class OnlineRunState:
    """What an online run has done so far (the ``state`` column)."""

    migrations: list[str]  # the plan, in order
    existing_tables: list[str]  # tables that existed before the run: only these need care
    before: dict[str, Any] = field(default_factory=dict)  # row counts and migrations at the start
    targets: list[str | None] = field(default_factory=list)  # safe_migrate's [app_label, migration_name]
    done: list[str] = field(default_factory=list)  # recorded in django_migrations
    started_ops: dict[str, int] = field(default_factory=dict)  # revision -> operations begun (a prefix)
    current: dict[str, Any] = field(default_factory=dict)  # position inside the current operation
    # expand/contract operations whose expand began, plan order: revision, operation, description,
    # kind, and the complete and rollback statements (expand_contract/base.py WindowPlan.stored)
    window: list[dict[str, Any]] = field(default_factory=list)
    contracted: list[int] = field(default_factory=list)  # --complete: positions in ``window`` done
    # Rows the run's own committed transactions added (+) or removed (-) per table, for the row-count
    # guard; written with the work it counts. None: not counted (a run begun before they were).
    own_changes: dict[str, int] | None = None
    completed_at: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__, default=str)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OnlineRunState:
        return cls(**data)


@dataclass
class OnlineRun:
    id: int
    status: str
    backup: str | None
    state: OnlineRunState
    started_at: str = ""
    pid: int = 0
    host: str = ""


# progress: where a running run is (online/governor.py writes it each batch, migration_status reads it);
# control: what an operator asked of it from any shell (online_control): merged, never overwritten.
_COLUMNS = f"""
ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS progress jsonb;
ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS control jsonb NOT NULL DEFAULT '{{}}'::jsonb
"""


def ensure_table(using: str) -> None:
    with connections[using].cursor() as cursor:
        cursor.execute(_DDL)
        cursor.execute(_COLUMNS)


def save_progress(using: str, run_id: int, progress: dict[str, Any]) -> None:
    """Progress is for watching, not for recovery: written without waiting for its WAL to reach disk
    (one more flushed commit per batch slowed a 1M-row expand by half and the application's commits with it)."""
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute(f"UPDATE {TABLE} SET progress = %s WHERE id = %s", [json.dumps(progress, default=str), run_id])


def _document(value: Any) -> dict[str, Any]:
    """A jsonb value as Django's cursor gives it (a string: Django registers no jsonb decoding)."""
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value or {})


def read_control(using: str, run_id: int) -> dict[str, Any]:
    with connections[using].cursor() as cursor:
        cursor.execute(f"SELECT control FROM {TABLE} WHERE id = %s", [run_id])
        row = cursor.fetchone()
    return _document(row[0]) if row else {}


def change_control(using: str, run_id: int, change: dict[str, Any]) -> dict[str, Any]:
    """Merge ``change`` into the run's control (one statement: two operators never lose each other's)."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET control = control || %s::jsonb WHERE id = %s RETURNING control",
            [json.dumps(change), run_id],
        )
        return _document(cursor.fetchone()[0])


def running_row(using: str) -> dict[str, Any] | None:
    """The newest running (or killed) run with its progress and control, for migration_status."""
    if not table_exists(using):
        return None
    with connections[using].cursor() as cursor:  # to_jsonb: a table from before progress was kept reads too
        cursor.execute(f"SELECT to_jsonb(r) FROM {TABLE} r WHERE status = %s ORDER BY id DESC LIMIT 1", [RUNNING])
        row = cursor.fetchone()
    if row is None:
        return None
    found = _document(row[0])
    keys = ("id", "status", "started_at", "updated_at", "pid", "host", "progress", "control")
    return {key: found.get(key) for key in keys}


def table_exists(using: str) -> bool:
    connection = connections[using]
    with connection.cursor() as cursor:
        return TABLE in connection.introspection.table_names(cursor)


def start(using: str, state: OnlineRunState, backup: str | None) -> OnlineRun:
    ensure_table(using)
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (status, pid, host, backup, state) VALUES (%s, %s, %s, %s, %s) RETURNING id",
            [RUNNING, os.getpid(), socket.gethostname(), backup, state.to_json()],
        )
        run_id = cursor.fetchone()[0]
    return OnlineRun(id=run_id, status=RUNNING, backup=backup, state=state)


def save(using: str, run: OnlineRun) -> None:
    """Write the run's state; call inside the transaction of the work it records."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET state = %s, status = %s, updated_at = now() WHERE id = %s",
            [run.state.to_json(), run.status, run.id],
        )


def unfinished(using: str) -> OnlineRun | None:
    """The newest run that neither finished nor was undone (killed, or failed to undo), if any."""
    return _newest(using, (RUNNING,))


def open_window(using: str) -> OnlineRun | None:
    """The run whose expand/contract window is open (expanded, or its --complete begun), if any."""
    return _newest(using, WINDOW)


def window_summary(run: OnlineRun) -> dict[str, Any]:
    """What an open window holds, for the summary, migration_status and refusals."""
    return {
        "run_id": run.id,
        "status": run.status,
        "since": run.started_at or None,
        "migrations": list(run.state.done),
        "operations": [
            {
                "revision": entry["revision"],
                "operation": entry["operation"],
                "description": entry["description"],
                "kind": entry["kind"],
                "complete": [statement.get("note") or statement["sql"][:80] for statement in entry["complete"]],
                "contracted": position in run.state.contracted,
            }
            for position, entry in enumerate(run.state.window)
        ],
    }


def window_lines(run: OnlineRun) -> list[str]:
    summary = window_summary(run)
    lines = [
        f"Expand/contract window {run.id} open since {summary['since']} ({run.status}): "
        f"{', '.join(summary['migrations'])}",
    ]
    for operation in summary["operations"]:
        done = " (done)" if operation["contracted"] else ""
        lines.append(f"  {operation['revision']} [{operation['operation']}] {operation['description']}{done}")
        lines += [f"    --complete: {what}" for what in operation["complete"]]
    return lines


def _newest(using: str, statuses: tuple[str, ...]) -> OnlineRun | None:
    if not table_exists(using):
        return None
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"SELECT id, status, backup, state, started_at, pid, host FROM {TABLE} "
            "WHERE status = ANY(%s) ORDER BY id DESC LIMIT 1",
            [list(statuses)],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    run_id, status, backup, state, started_at, pid, host = row
    data = state if isinstance(state, dict) else json.loads(state)
    return OnlineRun(run_id, status, backup, OnlineRunState.from_json(data), started_at.isoformat(), pid, host)


def refuse_during_window(using: str, what: str) -> None:
    """BadInput when a window is open: its triggers and views serve both releases until --complete."""
    run = open_window(using)
    if run is not None:
        raise BadInput(
            f"{what} is refused: expand/contract window {run.id} is open since {run.started_at} "
            f"({', '.join(run.state.done)}): deploy the new release, then run safe_migrate --online --complete, "
            "or go back with safe_migrate --online --abort (nothing was changed)"
        )
