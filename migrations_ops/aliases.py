"""Connections to databases that are not in settings (scratch copies, restore targets)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from django.db import connections

from config.database import parse_database_url


def register_alias(url: str, alias: str | None = None) -> str:
    """Make ``url`` usable as a Django connection alias for the rest of the process."""
    alias = alias or f"ops_{uuid.uuid4().hex[:10]}"
    configured = connections.configure_settings({"default": {}, alias: parse_database_url(url)})
    connections.settings[alias] = configured[alias]
    return alias


def unregister_alias(alias: str) -> None:
    if alias in connections.settings:
        connections[alias].close()
        del connections.settings[alias]
    if hasattr(connections._connections, alias):
        delattr(connections._connections, alias)


@contextlib.contextmanager
def temporary_alias(url: str) -> Iterator[str]:
    """A connection alias for ``url`` for the duration of the block (closed afterwards)."""
    alias = register_alias(url)
    try:
        yield alias
    finally:
        unregister_alias(alias)
