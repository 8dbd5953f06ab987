"""Which migrations are applied and which are pending, per database alias."""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder


def applied_migrations(using: str = DEFAULT_DB_ALIAS) -> dict[str, list[str]]:
    """Applied migration names per app, in name order (empty when nothing is applied)."""
    recorder = MigrationRecorder(connections[using])
    if not recorder.has_table():
        return {}
    applied: dict[str, list[str]] = {}
    for app, name in sorted(recorder.applied_migrations()):
        applied.setdefault(app, []).append(name)
    return applied


def current_migrations(using: str = DEFAULT_DB_ALIAS) -> dict[str, str]:
    """The last applied migration per app: the applied node no other applied node of the app depends on."""
    loader = MigrationLoader(connections[using], ignore_no_migrations=True)
    applied = set(loader.applied_migrations)
    current: dict[str, str] = {}
    for app in sorted({app for app, _ in applied}):
        nodes = {key for key in applied if key[0] == app}
        ancestors_of_others = set()
        for node in nodes:
            if node in loader.graph.nodes:
                ancestors_of_others |= set(loader.graph.forwards_plan(node)) - {node}
        heads = sorted(nodes - ancestors_of_others)
        current[app] = heads[-1][1] if heads else sorted(nodes)[-1][1]
    return current
