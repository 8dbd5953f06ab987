"""The audit trail: JSON lines appended to MIGRATION_LOG, one per event, never a secret."""

from __future__ import annotations

import getpass
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from migrations_ops.errors import scrub


def operator() -> str:
    """Who runs the operation (the OS user, or the uid where it has no name)."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): the uid still identifies the operator
        return str(os.getuid())


def audit_log_path() -> Path:
    return Path(settings.MIGRATION_LOG)


def record(event: str, **fields: Any) -> dict[str, Any]:
    """Append one event to the audit log and return it.

    Written with a single O_APPEND write, so concurrent writers never interleave within a line.
    """
    entry: dict[str, Any] = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": event,
        "pid": os.getpid(),
        "user": operator(),
        "host": socket.gethostname(),
    }
    entry.update(fields)
    # Each text is scrubbed on its own: scrubbing the JSON line took every "quoted" value for a name a
    # driver quotes, so any value with a ':' (every timestamp, every "x failed: why") became "...:***".
    line = json.dumps(_scrubbed(entry), sort_keys=False) + "\n"
    path = audit_log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return entry


def _scrubbed(value: Any) -> Any:
    """``value`` made JSON-ready with every string in it (keys too) passed through :func:`scrub`."""
    if isinstance(value, dict):
        return {scrub(str(key)): _scrubbed(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_scrubbed(item) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub(str(value))


def read_events(path: Path | None = None) -> list[dict[str, Any]]:
    """All complete events of the audit log (for tests and reports).

    A line is complete once its newline is written: a reader running beside a writer can see the
    first part of a line whose write is still landing, and that line is not an event yet.
    """
    path = path or audit_log_path()
    if not path.exists():
        return []
    complete, _, _in_progress = path.read_text().rpartition("\n")
    return [json.loads(line) for line in complete.splitlines() if line.strip()]
