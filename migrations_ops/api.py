"""One function per user-facing migration operation, shared by the commands, MigrationService and tests.

As in Alembic's ``command.py``: the management command parses arguments and prints, the service
wraps for async callers, and both call the same function here, which chooses the operation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import DEFAULT_DB_ALIAS

from migrations_ops.errors import BadInput
from migrations_ops.online import control
from migrations_ops.options import SafeMigrateOptions, checked
from migrations_ops.pipeline import MigrationSummary, Pipeline, Reporter
from migrations_ops.strategies.online import OnlineStrategy
from migrations_ops.strategies.rehearsal import rehearse
from migrations_ops.strategies.transactional import TransactionalStrategy


def safe_migrate(
    using: str = DEFAULT_DB_ALIAS,
    options: SafeMigrateOptions | Mapping[str, Any] | None = None,
    report: Reporter | None = None,
    **runner_options: Any,
) -> MigrationSummary:
    """Back up, migrate, validate; roll back or restore on any failure (``--rehearse``: on a copy;
    ``--online``: in short steps while the application runs, see strategies/online.py).

    ``options``: a :class:`SafeMigrateOptions` or its fields as a mapping; checked first
    (:meth:`SafeMigrateOptions.validate`), before anything touches the database. ``runner_options``
    (``confirm``, ``progress``) reach the :class:`Pipeline`. Never raises for an operation failure
    nor for refused options: the summary's ``status``, ``error`` and ``exit_code`` say what happened.
    """
    try:
        options = checked(options)
    except BadInput as exc:
        return refused(exc)
    if options.rehearse:
        return rehearse(using, options, report, **runner_options)
    # validated: lint comes with plan_only here
    strategy = OnlineStrategy if options.online or options.lint else TransactionalStrategy
    try:  # the strategy reads its settings here: a bad one is refused before anything runs
        pipeline = Pipeline(using, options, report, strategy=strategy, **runner_options)
    except BadInput as exc:
        return refused(exc)
    return pipeline.run()


def refused(exc: BadInput) -> MigrationSummary:
    """The summary of a run refused before it began: status "failed", exit 2, the one-line reason;
    nothing was touched (``render`` says "refused, nothing was changed")."""
    return MigrationSummary(status="failed", error=exc.message, exit_code=int(exc.exit_code))


def online_control(
    using: str = DEFAULT_DB_ALIAS,
    action: str = "pause",
    rows_per_second: float | None = None,
    batch_pause: str | None = None,
    clear: bool = False,
    reason: str = "",
) -> dict[str, Any]:
    """Pause, continue or limit the online run running on ``using`` from any shell or host (through
    the database); returns its control. BadInput (exit 2, nothing changed) for bad options or no run."""
    return control.change(using, action, rows_per_second, batch_pause, clear, reason)
