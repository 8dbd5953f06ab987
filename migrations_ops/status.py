"""Which migrations are applied and which are pending, per database alias.

Pure reading: nothing here creates the django_migrations table or changes the database.
"""

from __future__ import annotations

import sys

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from migrations_ops.checksums import ORIGIN_TABLE
from migrations_ops.checksums import TABLE as CHECKSUM_TABLE
from migrations_ops.errors import BadInput

# The records of what was done to a database (records.py): written by safe_migrate and restore_db
# themselves after the outcome, outside any plan, and written back after a restore.
RUN_RECORD_TABLES = frozenset({"migrations_ops_migrationrun"})

# Django's and our own bookkeeping: migrating (or a round trip) legitimately changes rows there.
BOOKKEEPING_TABLES = RUN_RECORD_TABLES | frozenset(
    {
        "django_migrations",
        "django_content_type",
        "auth_permission",
        "django_admin_log",
        CHECKSUM_TABLE,
        ORIGIN_TABLE,
        "migrations_ops_online_run",
    }
)


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


def describe_migration(migration) -> str:
    """One line, the same in ``--plan`` and ``migration_status``: the migration's docstring (class,
    else module), else its first three operations' own descriptions."""
    module = sys.modules.get(type(migration).__module__)
    for doc in (type(migration).__doc__, getattr(module, "__doc__", None)):
        if doc and doc.strip():
            return " ".join(doc.strip().split("\n\n")[0].split())
    described = [operation.describe() for operation in migration.operations]
    if not described:
        return "(no operations)"
    more = f"; and {len(described) - 3} more" if len(described) > 3 else ""
    return "; ".join(described[:3]) + more


def pending_migrations(using: str = DEFAULT_DB_ALIAS) -> list[dict[str, str]]:
    """Unapplied migrations in the order `migrate` would apply them (to every app's head)."""
    executor = MigrationExecutor(connections[using])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [
        {
            "app": migration.app_label,
            "name": migration.name,
            "revision": f"{migration.app_label}.{migration.name}",
            "description": describe_migration(migration),
        }
        for migration, backwards in plan
        if not backwards
    ]


MERGE_FIX = "fix with 'python manage.py makemigrations --merge'"


def migration_conflicts() -> dict[str, list[str]]:
    """Apps with several leaf migrations (two branches without a merge migration): their leaves, by name.
    Read from the migration files alone: ``migrate`` and ``safe_migrate`` refuse such a graph."""
    conflicts = MigrationLoader(None, ignore_no_migrations=True).detect_conflicts()
    return {app: sorted(leaves) for app, leaves in sorted(conflicts.items())}


def describe_conflicts(conflicts: dict[str, list[str]]) -> str:
    """One line naming each app's conflicting leaves and the fix (the same words as safe_migrate's)."""
    names = "; ".join(f"{', '.join(leaves)} in {app}" for app, leaves in conflicts.items())
    return f"conflicting migrations (several leaf nodes): {names}; {MERGE_FIX}"


def require_applied(apps: tuple[str, ...], using: str = DEFAULT_DB_ALIAS, what: str = "this command") -> None:
    """BadInput (exit 2) naming the pending migrations of ``apps`` (and what they depend on), if any:
    a command that needs the schema at the head must not meet tables that are not there yet."""
    pending = [m["revision"] for m in pending_migrations(using) if m["app"] in apps]
    if pending:
        shown = ", ".join(pending[:4]) + (f" and {len(pending) - 4} more" if len(pending) > 4 else "")
        raise BadInput(
            f"pending migrations: {shown}; {what} needs them applied: run `manage.py safe_migrate` first "
            "(nothing was changed)"
        )


def migration_history(using: str = DEFAULT_DB_ALIAS) -> list[dict[str, str]]:
    """Applied migrations in the order they were applied, with the time each was applied."""
    recorder = MigrationRecorder(connections[using])
    if not recorder.has_table():
        return []
    return [
        {"app": app, "name": name, "revision": f"{app}.{name}", "applied": applied.isoformat()}
        for app, name, applied in recorder.migration_qs.order_by("applied", "id").values_list("app", "name", "applied")
    ]


def migration_status(using: str = DEFAULT_DB_ALIAS, *, history: bool = False) -> dict:
    """The contract's `migration_status --json` document (``history`` adds the applied list).

    ``conflicts`` ({app: [leaf names]}, empty when none) names apps whose migrations need a merge."""
    applied = applied_migrations(using)
    pending = pending_migrations(using)
    status = {
        "current": current_migrations(using),
        "pending": pending,
        "applied_count": sum(len(names) for names in applied.values()),
        "pending_count": len(pending),
        "conflicts": migration_conflicts(),
    }
    if history:
        status["history"] = migration_history(using)
    return status


def render_status(status: dict) -> str:
    """Human output of :func:`migration_status`."""
    lines = []
    if status.get("conflicts"):
        lines.append(f"Conflicting migrations (several leaf nodes in one app; {MERGE_FIX}):")
        lines += [f"  {app}: {', '.join(leaves)}" for app, leaves in status["conflicts"].items()]
    lines.append("Current migration per app:")
    if status["current"]:
        width = max(len(app) for app in status["current"])
        lines += [f"  {app:<{width}}  {name}" for app, name in status["current"].items()]
    else:
        lines.append("  (nothing applied)")
    if status.get("history") is not None:
        lines.append(f"Applied ({status['applied_count']}, oldest first):")
        lines += [f"  {entry['applied']}  {entry['revision']}" for entry in status["history"]]
    if status["pending"]:
        lines.append(f"Pending ({status['pending_count']}, in plan order):")
        lines += [f"  {entry['revision']}: {entry['description']}" for entry in status["pending"]]
    else:
        lines.append(f"No pending migrations ({status['applied_count']} applied).")
    return "\n".join(lines)
