"""Django-level checks, for every vendor: schema against the migrated models, a consistent
migration history, no model change without a migration, and applied migration files unchanged."""

from __future__ import annotations

from django.apps import apps as global_apps
from django.conf import settings
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.exceptions import InconsistentMigrationHistory
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.questioner import MigrationQuestioner
from django.db.migrations.state import ProjectState

from migrations_ops import checksums
from migrations_ops.checks import DJANGO, SAMPLE_SIZE, SkipCheck, failed, passed, register
from migrations_ops.engines import get_engine


def _applied_state_apps(loader: MigrationLoader):
    """The models as the applied migrations leave them (not as the code has them: the database
    may legitimately lag behind while migrations are pending)."""
    applied = [key for key in loader.applied_migrations if key in loader.graph.nodes]
    if not applied:
        raise SkipCheck("no migration applied yet")
    state = loader.graph.make_state(nodes=applied, at_end=True, real_apps=loader.unmigrated_apps)
    return state.apps


@register("schema_matches_models", tags=(DJANGO,))
def schema_matches_models(connection):
    """Each migrated model's table and columns exist, with the nullability the models declare.

    Left out, with the reason in ``not_checked``: unmanaged and proxy models (Django creates no
    table for them), and beyond existence, models whose table is a view, a virtual table (SQLite
    FTS5) or a foreign table, whose columns declare no nullability (and, for FTS5, an implicit rowid).
    """
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    state_apps = _applied_state_apps(loader)
    engine = get_engine(connection.alias)
    special = engine.special_relations()
    not_checked: dict[str, list[str]] = {}
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor, include_views=True))
        problems: list[str] = []
        checked = 0
        for model in state_apps.get_models(include_auto_created=True):
            meta = model._meta
            if meta.swapped:
                continue
            if not meta.managed or meta.proxy:
                reason = "proxy model: no table of its own" if meta.proxy else "unmanaged: Django creates no table"
                not_checked.setdefault(reason, []).append(meta.label)
                continue
            checked += 1
            if meta.db_table not in tables:
                problems.append(f"table {meta.db_table} ({meta.label}) is missing")
                continue
            if meta.db_table in special:
                kind = special[meta.db_table]
                not_checked.setdefault(f"{kind}: only its existence is checked", []).append(meta.db_table)
                continue
            columns = {col.name: col for col in connection.introspection.get_table_description(cursor, meta.db_table)}
            checked_not_null = engine.not_null_by_check(meta.db_table)
            for model_field in meta.local_fields:
                column = model_field.column
                if column is None or model_field.db_parameters(connection)["type"] is None:
                    continue
                if column not in columns:
                    problems.append(f"column {meta.db_table}.{column} ({meta.label}.{model_field.name}) is missing")
                elif bool(columns[column].null_ok) != bool(model_field.null) and not (
                    column in checked_not_null and not model_field.null
                ):
                    want = "NULL" if model_field.null else "NOT NULL"
                    have = "NULL" if columns[column].null_ok else "NOT NULL"
                    problems.append(f"column {meta.db_table}.{column} is {have}, the models say {want}")
    details: dict = {"count": len(problems), "models_checked": checked}
    if not_checked:
        details["not_checked"] = {reason: sorted(names)[:SAMPLE_SIZE] for reason, names in sorted(not_checked.items())}
    if problems:
        details["first"] = sorted(problems)[:SAMPLE_SIZE]
        return failed(details)
    return passed(details)


@register("migration_history_consistent", tags=(DJANGO,))
def migration_history_consistent(connection):
    """No applied migration has an unapplied dependency (MigrationLoader.check_consistent_history)."""
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    try:
        loader.check_consistent_history(connection)
    except InconsistentMigrationHistory as exc:
        return failed({"count": 1, "error": str(exc)})
    return passed({"count": 0, "applied": len(loader.applied_migrations)})


@register("migrations_complete", tags=(DJANGO,))
def migrations_complete(connection):
    """No model change lacks a migration (the `makemigrations --check` question, in-process)."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    autodetector = MigrationAutodetector(
        loader.project_state(),
        ProjectState.from_apps(global_apps),
        MigrationQuestioner(specified_apps=None, dry_run=True),
    )
    changes = autodetector.changes(graph=loader.graph)
    missing = [
        f"{app}: {operation.describe()}"
        for app, migrations in sorted(changes.items())
        for migration in migrations
        for operation in migration.operations
    ]
    if missing:
        return failed({"count": len(missing), "first": missing[:SAMPLE_SIZE], "fix": "python manage.py makemigrations"})
    return passed({"count": 0})


@register("migration_checksums", tags=(DJANGO,), requires=[checksums.TABLE])
def migration_checksums(connection):
    """Every applied migration file is unchanged since it was applied (whitespace-only edits aside).

    An edit passes, with a note, when the migration module lists the stored checksum in
    ``REVIEWED_CHECKSUMS`` (``{"<sha256 of the earlier version>": "<why it is safe>"}``).
    """
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT app, name, sha256, baseline FROM {connection.ops.quote_name(checksums.TABLE)} ORDER BY app, name"
        )
        stored = cursor.fetchall()
    origins = _stored_origins(connection)
    distributions = checksums.Distributions()
    changed, gone, reviewed, upgraded = [], [], [], []
    for app, name, sha256, baseline in stored:
        migration = loader.disk_migrations.get((app, name))
        if migration is None:
            gone.append(f"{app}.{name}")
            continue
        now = checksums.migration_checksum(migration)
        if now == sha256:
            continue
        reason = checksums.reviewed_checksums(migration).get(sha256)
        if reason is not None:
            reviewed.append(f"{app}.{name}: {reason}")
            continue
        was = origins.get((app, name))
        now_from = distributions.origin(migration)
        if (
            was
            and now_from
            and was[0] == now_from[0]
            and was[1] != now_from[1]
            and distributions.as_shipped(migration) is not False
        ):
            # The edit came with a new version of the package that ships the file (and the file is
            # as that version's RECORD lists it): an upgrade, not tampering. Reported until an
            # operator reviews it (repair_checksums).
            upgraded.append(f"{app}.{name} changed with {now_from[0]} {was[1]} -> {now_from[1]}")
            continue
        changed.append(
            {
                "migration": f"{app}.{name}",
                "file": _display_path(checksums.migration_file(migration)),
                "stored": sha256,
                "now": now or "unreadable",
                "baseline": bool(baseline),
            }
        )
    recorded = {(app, name) for app, name, *_ in stored}
    unrecorded = sorted(f"{app}.{name}" for app, name in loader.applied_migrations if (app, name) not in recorded)
    details: dict = {"count": len(changed), "checked": len(stored)}
    notes = []
    if upgraded:
        details["warnings"] = [
            *upgraded[:SAMPLE_SIZE],
            "review the package's changes, then: python manage.py repair_checksums --reason '...'",
        ]
    if reviewed:
        notes.append(f"{len(reviewed)} edit(s) reviewed in REVIEWED_CHECKSUMS: {'; '.join(reviewed[:SAMPLE_SIZE])}")
    if unrecorded:
        notes.append(f"{len(unrecorded)} applied migration(s) without a stored checksum (run migrate once)")
    if gone:
        notes.append(f"{len(gone)} recorded migration(s) no longer on disk: {', '.join(gone[:SAMPLE_SIZE])}")
    if notes:
        details["note"] = "; ".join(notes)
    if changed:
        details["changed"] = changed[:SAMPLE_SIZE]
        details["fix"] = (
            "restore the file as it was applied and put new changes in a new migration; or, if the edit is "
            "safe for databases that applied the earlier version, list the stored checksum in the "
            "migration's REVIEWED_CHECKSUMS = {stored: reason}"
        )
        return failed(details)
    return passed(details)


def _stored_origins(connection) -> dict[tuple[str, str], tuple[str, str]]:
    """(distribution, version) per applied migration, where recorded (none before migrations_ops 0003)."""
    with connection.cursor() as cursor:
        if checksums.ORIGIN_TABLE not in connection.introspection.table_names(cursor):
            return {}
        cursor.execute(
            f"SELECT app, name, distribution, version FROM {connection.ops.quote_name(checksums.ORIGIN_TABLE)}"
        )
        return {
            (app, name): (distribution, version)
            for app, name, distribution, version in cursor.fetchall()
            if distribution
        }


def _display_path(path) -> str:
    if path is None:
        return "?"
    try:
        return str(path.resolve().relative_to(settings.BASE_DIR))
    except ValueError:
        return str(path)
