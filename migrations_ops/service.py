"""MigrationService: the Python API over migration status and the safe_migrate pipeline.

Usable from async code exactly like this::

    service = MigrationService()
    status = await service.get_migration_status()
    print(status["current_revision"], len(status["pending_migrations"]))

    result = await service.run_migrations()
    print(f"Applied {result['applied_count']} migrations")

Each async method has a synchronous twin. ``run_migrations`` is the safe_migrate pipeline
(api.safe_migrate): the same lock, backup, validation, rollback and audit as the command.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, connections

from migrations_ops import status
from migrations_ops.api import refused, safe_migrate
from migrations_ops.errors import BadInput


class MigrationService:
    def __init__(self, using: str = DEFAULT_DB_ALIAS) -> None:
        self.using = using

    def get_migration_status_sync(self) -> dict[str, Any]:
        """``{"current_revision": {app: name}, "pending_migrations": [{"revision", "description",
        "app", "name"}], "applied_count", "pending_count"}``."""
        document = status.migration_status(self.using)
        return {
            "current_revision": document["current"],
            "pending_migrations": document["pending"],
            "applied_count": document["applied_count"],
            "pending_count": document["pending_count"],
            "database": connections[self.using].vendor,
        }

    def run_migrations_sync(self, target: str | tuple[str, str] | None = None, **options: Any) -> dict[str, Any]:
        """Run safe_migrate to ``target`` and return its summary plus ``applied_count`` and ``exit_code``.

        ``target``: None (every app to its latest migration), ``"app"``, ``"app.name"`` or
        ``("app", "name")`` (``name`` may be ``"zero"``). ``options`` are SafeMigrateOptions fields
        (``plan_only``, ``dry_run``, ``rehearse``, ``allow_row_loss``, ...), checked as the command's
        are (an unknown name or a combination the command refuses: exit 2, one line, nothing touched).
        Failures do not raise: the summary's ``status``, ``error`` and ``exit_code`` say what happened.
        """
        try:
            app_label, migration_name = _split_target(target)
            given_twice = sorted({"app_label", "migration_name"} & options.keys())
            if given_twice:
                raise BadInput(
                    f"unknown option {', '.join(given_twice)} (the target is run_migrations' first argument: "
                    "'app', 'app.name' or ('app', 'name'))"
                )
        except BadInput as exc:
            summary = refused(exc)
        else:
            summary = safe_migrate(self.using, {"app_label": app_label, "migration_name": migration_name, **options})
        return {**summary.to_dict(), "applied_count": summary.applied_count, "exit_code": summary.exit_code}

    async def run_migrations(self, target: str | tuple[str, str] | None = None, **options: Any) -> dict[str, Any]:
        """Async twin of :meth:`run_migrations_sync`."""
        return await sync_to_async(self._in_worker, thread_sensitive=True)(
            lambda: self.run_migrations_sync(target, **options)
        )

    async def get_migration_status(self) -> dict[str, Any]:
        return await sync_to_async(self._in_worker, thread_sensitive=True)(self.get_migration_status_sync)

    def _in_worker(self, function):
        """Run ``function``; close the connection afterwards if this call opened it (worker threads
        must not keep idle connections), never one the caller already had open."""
        connection = connections[self.using]
        was_open = connection.connection is not None
        try:
            return function()
        finally:
            if not was_open and not connection.in_atomic_block:
                connection.close()


def _split_target(target: str | tuple[str, str] | None) -> tuple[str | None, str | None]:
    if target is None:
        return None, None
    if isinstance(target, tuple) and len(target) == 2:
        return target[0], target[1]
    if not isinstance(target, str):
        raise BadInput(f"a target is 'app', 'app.name' or ('app', 'name'), not {target!r}")
    app, _, name = target.partition(".")
    return app, name or None
