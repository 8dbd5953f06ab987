"""MigrationService: the Python API over migration status (and, later, the safe_migrate runner).

Usable from async code exactly like this::

    service = MigrationService()
    status = await service.get_migration_status()
    print(status["current_revision"], len(status["pending_migrations"]))

Each async method has a synchronous twin. ``run_migrations`` arrives with the safe_migrate runner;
until then it does not exist, rather than pretending.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, connections

from migrations_ops import status


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
