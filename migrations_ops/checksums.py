"""Checksums of migration files, stored when a migration is applied, to flag later edits.

Django forgets what an applied migration said; Flyway remembers. After every ``migrate``
(``post_migrate``), a forwards migration's file checksum is stored, a backwards one's removed,
and any applied migration without a checksum (applied before the table existed) is recorded as
a baseline. ``validate_db``'s ``migration_checksums`` check compares them with the files.

A migration whose applied file had to change (a reviewed fix, a package upgrade) declares the
earlier checksum in its module: ``REVIEWED_CHECKSUMS = {"<sha256>": "<why it is safe>"}``.

The checksum ignores whitespace-only edits: line endings, trailing whitespace, blank lines and a
byte-order mark. Anything else, comments included, counts as an edit.
"""

from __future__ import annotations

import ast
import hashlib
import sys
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.migration import Migration
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from migrations_ops.models import AppliedMigrationChecksum

TABLE = "migrations_ops_applied_checksum"


def normalise(text: str) -> str:
    """The text whose hash is stored: no BOM, LF line ends, no trailing whitespace, no blank lines."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n") if line.strip())


def file_checksum(path: str | Path) -> str:
    return hashlib.sha256(normalise(Path(path).read_text(encoding="utf-8")).encode()).hexdigest()


def migration_file(migration: Migration) -> Path | None:
    """The source file a loaded migration came from (None for one built in memory)."""
    module = sys.modules.get(type(migration).__module__)
    filename = getattr(module, "__file__", None)
    return Path(filename) if filename else None


def migration_checksum(migration: Migration) -> str | None:
    path = migration_file(migration)
    return file_checksum(path) if path and path.is_file() else None


def reviewed_checksums(migration: Migration) -> dict[str, str]:
    """The module's ``REVIEWED_CHECKSUMS``: earlier checksums of this file whose edit was reviewed as
    safe for databases that applied them, each with the reason (empty when the module has none).

    Read from the file, like the checksum it is compared with (a module imported earlier in a
    long-lived process may be older than the file), and as a literal: nothing is executed.
    """
    path = migration_file(migration)
    if path is None or not path.is_file():
        return {}
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return {}
    reviewed: object = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "REVIEWED_CHECKSUMS" for target in node.targets
        ):
            try:
                reviewed = ast.literal_eval(node.value)
            except ValueError:
                reviewed = {}
    if not isinstance(reviewed, dict):
        return {}
    # A review without a reason is no review: such entries do not count.
    return {str(checksum).lower(): str(reason) for checksum, reason in reviewed.items() if str(reason or "").strip()}


def table_exists(using: str = DEFAULT_DB_ALIAS) -> bool:
    connection = connections[using]
    with connection.cursor() as cursor:
        return TABLE in connection.introspection.table_names(cursor)


def record_after_migrate(sender, using: str = DEFAULT_DB_ALIAS, plan=None, stdout=None, verbosity: int = 1, **kwargs):
    """post_migrate handler: store or drop the checksums of the plan, then baseline the rest."""
    baselined = record(using, plan or [])
    if baselined and verbosity >= 1 and stdout is not None:
        stdout.write(
            f"  Recorded checksums of {baselined} migration(s) applied before checksums were kept "
            f"(baseline: edits made before now cannot be detected)."
        )


def record(using: str, plan: list[tuple[Migration, bool]]) -> int:
    """Apply a migrate plan to the checksum table; return how many baseline checksums were added."""
    if not table_exists(using):
        return 0
    rows = AppliedMigrationChecksum.objects.using(using)
    loader = MigrationLoader(connections[using], ignore_no_migrations=True)
    applied = {
        (row.app, row.name): row.applied
        for row in MigrationRecorder(connections[using]).migration_qs.only("app", "name", "applied")
    }
    now = timezone.now()
    with transaction.atomic(using=using):
        for migration, backwards in plan:
            key = (migration.app_label, migration.name)
            if backwards:
                rows.filter(app=key[0], name=key[1]).delete()
                continue
            checksum = migration_checksum(migration)
            if checksum is None:
                continue
            rows.update_or_create(
                app=key[0],
                name=key[1],
                defaults={"sha256": checksum, "applied_at": applied.get(key, now), "baseline": False},
            )
        known = set(rows.values_list("app", "name"))
        for app, name in known - set(applied):  # unapplied without a plan (e.g. rows deleted by hand)
            rows.filter(app=app, name=name).delete()
        baseline = []
        for key in sorted(set(applied) - known):
            migration = loader.disk_migrations.get(key)
            checksum = migration_checksum(migration) if migration is not None else None
            if checksum is not None:
                baseline.append(
                    AppliedMigrationChecksum(
                        app=key[0], name=key[1], sha256=checksum, applied_at=applied[key], baseline=True
                    )
                )
        rows.bulk_create(baseline)
    return len(baseline)
