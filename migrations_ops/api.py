"""One function per user-facing migration operation, shared by the commands, MigrationService and tests.

As in Alembic's ``command.py``: the management command parses arguments and prints, the service
wraps for async callers, and both call the same function here, which chooses the operation.
"""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS

from migrations_ops.online.executor import OnlineMigration
from migrations_ops.rehearsal import rehearse
from migrations_ops.runner import MigrationSummary, Reporter, SafeMigrateOptions, SafeMigration


def safe_migrate(
    using: str = DEFAULT_DB_ALIAS,
    options: SafeMigrateOptions | None = None,
    report: Reporter | None = None,
    **runner_options: Any,
) -> MigrationSummary:
    """Back up, migrate, validate; roll back or restore on any failure (``--rehearse``: on a copy;
    ``--online``, ``--lint``: in short steps while the application runs, see online/executor.py).

    ``runner_options`` (``confirm``, ``progress``) reach :class:`SafeMigration`. Never raises for
    an operation failure: the summary's ``status``, ``error`` and ``exit_code`` say what happened.
    """
    options = options or SafeMigrateOptions()
    if options.rehearse:
        return rehearse(using, options, report, **runner_options)
    if options.online or options.lint:
        return OnlineMigration(using, options, report, **runner_options).run()
    return SafeMigration(using, options, report, **runner_options).run()
