"""Connections to databases that are not in settings (scratch copies, restore targets)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from django.db import DatabaseError, connections

from migrations_ops.database_url import parse_database_url


def register_alias(target: str | dict[str, Any], alias: str | None = None) -> str:
    """Make ``target`` (a database URL or a DATABASES entry) usable as a Django connection alias."""
    alias = alias or f"ops_{uuid.uuid4().hex[:10]}"
    settings_dict = parse_database_url(target) if isinstance(target, str) else dict(target)
    configured = connections.configure_settings({"default": {}, alias: settings_dict})
    connections.settings[alias] = configured[alias]
    return alias


def unregister_alias(alias: str) -> None:
    if alias in connections.settings:
        # The database may already be dropped (scratch copies): closing must not stop the cleanup.
        with contextlib.suppress(DatabaseError):
            connections[alias].close()
        del connections.settings[alias]
    if hasattr(connections._connections, alias):
        delattr(connections._connections, alias)


@contextlib.contextmanager
def temporary_alias(target: str | dict[str, Any]) -> Iterator[str]:
    """A connection alias for ``target`` (URL or settings) for the duration of the block."""
    alias = register_alias(target)
    try:
        yield alias
    finally:
        unregister_alias(alias)
