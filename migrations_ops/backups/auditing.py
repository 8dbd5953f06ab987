"""One audited context for every backup operation (create, adopt, verify, restore).

``audited(operation, name, **fields)`` writes ``<operation>.start`` with ``fields``, and when the block
ends ``<operation>.end``: on success the outcome, bytes, duration and fields the operation gave to
:meth:`AuditedOperation.ended`; on any failure (Ctrl-C and signals included) ``outcome`` ``failed``, the
duration and the error, then re-raises: ours (and interrupts) as they are, others wrapped in
OperationFailed (exit 1). The event names and fields are the audit log's contract (README "Audit log").
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from migrations_ops import audit
from migrations_ops.errors import OperationFailed, OpsError, scrub


def error_text(exc: BaseException) -> str:
    if isinstance(exc, OpsError):
        return exc.message
    if not isinstance(exc, Exception):  # KeyboardInterrupt, interrupts.Interrupted (SIGINT/SIGTERM)
        return f"interrupted {exc}".strip()
    return scrub(f"{exc.__class__.__name__}: {exc}")


class AuditedOperation:
    """One operation between its start and end lines; ``started`` is when it began (monotonic)."""

    def __init__(self, operation: str, name: str) -> None:
        self.operation = operation
        self.name = name
        self.started = time.monotonic()
        self.end_fields: dict[str, Any] = {}

    def elapsed(self) -> float:
        """Seconds since the operation began, as the audit log and manifests write them."""
        return round(time.monotonic() - self.started, 3)

    def ended(
        self,
        *,
        size_bytes: int,
        outcome: str = "ok",
        duration_s: float | None = None,
        error: str | None = None,
        **fields: Any,
    ) -> None:
        """How the operation ended, its last act in the block: the end line's ``outcome``, ``bytes``,
        ``duration_s`` (now, unless given), the operation's own ``fields``, then ``error``."""
        duration = self.elapsed() if duration_s is None else duration_s
        self.end_fields = {"outcome": outcome, "bytes": size_bytes, "duration_s": duration, **fields, "error": error}


@contextmanager
def audited(operation: str, name: str, **fields: Any) -> Iterator[AuditedOperation]:
    """``<operation>.start`` (``name`` and ``fields``), the block, then ``<operation>.end``: as the block
    said with :meth:`AuditedOperation.ended`, or ``failed`` with the error, then re-raised."""
    run = AuditedOperation(operation, name)
    audit.record(f"{operation}.start", name=name, **fields)
    try:
        yield run
    except BaseException as exc:
        audit.record(f"{operation}.end", name=name, outcome="failed", duration_s=run.elapsed(), error=error_text(exc))
        if isinstance(exc, OpsError) or not isinstance(exc, Exception):
            raise  # ours, and interrupts, as they are: the caller turns a signal into its exit
        raise OperationFailed(f"{operation} failed: {error_text(exc)}") from exc
    audit.record(
        f"{operation}.end",
        name=name,
        **(run.end_fields or {"outcome": "ok", "duration_s": run.elapsed(), "error": None}),
    )
