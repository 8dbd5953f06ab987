"""Operating a running online run from any shell or host: pause, continue, a rate limit, and its progress.

Through the database, not files: the change is merged into the run's ``control`` column of
``migrations_ops_online_run`` (checkpoint.change_control), which the run reads before each batch
(online/governor.py), so it takes effect within one batch wherever the run is. Each change is
recorded in the audit log with who made it, and in the control itself (``changed_by``). The options
are checked here, once, for the command (online_control) and the Python API (api.online_control).
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

from migrations_ops import audit
from migrations_ops.errors import BadInput
from migrations_ops.online import checkpoint
from migrations_ops.timeouts import parse_duration

PAUSE, CONTINUE, LIMIT = "pause", "continue", "limit"
ACTIONS = (PAUSE, CONTINUE, LIMIT)


def change(
    using: str,
    action: str,
    rows_per_second: float | None = None,
    batch_pause: str | None = None,
    clear: bool = False,
    reason: str = "",
) -> dict[str, Any]:
    """Apply ``action`` to the running online run; return the run's control afterwards.

    BadInput (exit 2, nothing changed) for an unknown action, limits that make no sense, or no
    running run on this database.
    """
    wanted = _checked(action, rows_per_second, batch_pause, clear)
    run = checkpoint.running_row(using)
    if run is None:
        raise BadInput("no online run is running on this database: nothing to control (nothing was changed)")
    who = f"{audit.operator()}@{socket.gethostname()}"
    wanted.update(changed_by=who, changed_at=datetime.now(UTC).isoformat(timespec="seconds"), reason=reason)
    control = checkpoint.change_control(using, run["id"], wanted)
    audit.record("online_control", run_id=run["id"], action=action, change=wanted, by=who)
    return control


def _checked(action: str, rows_per_second: float | None, batch_pause: str | None, clear: bool) -> dict[str, Any]:
    if action not in ACTIONS:
        raise BadInput(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    limits = rows_per_second is not None or batch_pause is not None or clear
    if action != LIMIT and limits:
        raise BadInput("--rows-per-second, --batch-pause and --clear go with the action limit")
    if action == PAUSE:
        return {"paused": True}
    if action == CONTINUE:
        return {"paused": False}
    if not limits:
        raise BadInput("limit needs --rows-per-second N, --batch-pause DURATION or --clear")
    if clear and (rows_per_second is not None or batch_pause is not None):
        raise BadInput("--clear removes the limits: give it alone")
    if clear:
        return {"rows_per_second": None, "batch_pause_s": None}
    wanted: dict[str, Any] = {}
    if rows_per_second is not None:
        if not rows_per_second > 0:
            raise BadInput(f"--rows-per-second must be more than 0, not {rows_per_second:g}")
        wanted["rows_per_second"] = float(rows_per_second)
    if batch_pause is not None:
        try:
            wanted["batch_pause_s"] = parse_duration(batch_pause)
        except ValueError as exc:
            raise BadInput(f"--batch-pause: {exc}") from None
    return wanted


def status(using: str) -> dict[str, Any] | None:
    """The running run as migration_status shows it: who, where, since when, its progress and control."""
    run = checkpoint.running_row(using)
    if run is None:
        return None
    return {
        "run_id": run["id"],
        "started_at": str(run["started_at"]),
        "updated_at": str(run["updated_at"]),
        "pid": run["pid"],
        "host": run["host"],
        "progress": run["progress"] or {},
        "control": run["control"] or {},
    }


def status_lines(run: dict[str, Any]) -> list[str]:
    """The running run in words (migration_status)."""
    progress = run["progress"]
    lines = [f"Online run {run['run_id']} running since {run['started_at']} (pid {run['pid']} on {run['host']})"]
    if "table" in progress:
        total, done = progress.get("pages_total") or 0, progress.get("pages_done") or 0
        share = f" ({100 * done / total:.0f}%)" if total else ""
        eta = progress.get("eta_s")
        lines.append(
            f"  {progress.get('revision')} operation {progress.get('operation')}: backfill of {progress['table']}, "
            f"{done:,} of {total:,} pages{share}, {progress.get('rows_changed', 0):,} rows changed, "
            f"{progress.get('pages_per_s', 0):g} pages/s, ETA {'?' if eta is None else f'{eta:.0f}s'}, "
            f"batch {progress.get('batch_pages', 0)} pages"
        )
    phase = progress.get("phase", "starting")
    waiting = f": {progress['detail']}" if progress.get("detail") else ""
    lines.append(f"  now: {phase}{waiting}")
    pauses = progress.get("pauses_s") or {}
    if pauses:
        lines.append("  paused so far: " + ", ".join(f"{cause} {seconds:g}s" for cause, seconds in pauses.items()))
    lines.append(f"  retries {progress.get('retries', 0)}, longest lock held {progress.get('longest_lock_s', 0):g}s")
    control = {key: value for key, value in run["control"].items() if value not in (None, False, "")}
    if control:
        lines.append("  control: " + ", ".join(f"{key}={value}" for key, value in sorted(control.items())))
    return lines
