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
import base64
import hashlib
import importlib.metadata
import sys
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.migration import Migration
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from migrations_ops import audit
from migrations_ops.models import AppliedMigrationChecksum, MigrationFileOrigin

TABLE = "migrations_ops_applied_checksum"
ORIGIN_TABLE = "migrations_ops_migration_origin"


class Distributions:
    """Installed distributions (pip packages) by the files they ship, read once per use.

    Answers "which distribution, at which version, shipped this migration file?" from the
    distributions' own RECORD lists (importlib.metadata): the project's own apps answer None.
    """

    def __init__(self) -> None:
        self._by_top: dict[str, list[str]] | None = None
        self._files: dict[str, dict[Path, str]] = {}  # per distribution: file -> RECORD hash

    def origin(self, migration: Migration) -> tuple[str, str] | None:
        """(distribution name, version) of the installed distribution that ships this file."""
        found = self._shipped(migration)
        return (found[0], found[1]) if found else None

    def as_shipped(self, migration: Migration) -> bool | None:
        """Whether the file's bytes are those its distribution's RECORD lists (None: no hash to tell)."""
        found = self._shipped(migration)
        if not found or not found[2]:
            return None
        algorithm, _, expected = found[2].partition("=")
        if algorithm not in hashlib.algorithms_available:
            return None
        digest = hashlib.new(algorithm, migration_file(migration).read_bytes()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == expected

    def _shipped(self, migration: Migration) -> tuple[str, str, str] | None:
        path = migration_file(migration)
        if path is None:
            return None
        if self._by_top is None:
            self._by_top = importlib.metadata.packages_distributions()
        top = type(migration).__module__.split(".")[0]
        resolved = path.resolve()
        for name in self._by_top.get(top, []):
            try:
                distribution = importlib.metadata.distribution(name)
            except importlib.metadata.PackageNotFoundError:
                continue
            if name not in self._files:
                self._files[name] = {
                    Path(distribution.locate_file(f)).resolve(): f"{f.hash.mode}={f.hash.value}" if f.hash else ""
                    for f in distribution.files or []
                }
            if resolved in self._files[name]:
                return distribution.metadata["Name"] or name, distribution.version, self._files[name][resolved] or ""
        return None


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
        if ORIGIN_TABLE in connections[using].introspection.table_names():
            _record_origins(using, loader, {key for key, backwards in _keys(plan) if not backwards})
    return len(baseline)


def _keys(plan: list[tuple[Migration, bool]]) -> list[tuple[tuple[str, str], bool]]:
    return [((migration.app_label, migration.name), backwards) for migration, backwards in plan]


def _record_origins(using: str, loader: MigrationLoader, applied_now: set[tuple[str, str]]) -> None:
    """Keep one origin row per stored checksum: the distribution and version that shipped the file
    as it was when its checksum was stored. Migrations applied now get the installed version; a
    row missing for an older checksum is filled only while the file still matches it (then the
    installed version is one that shipped that file)."""
    origins = MigrationFileOrigin.objects.using(using)
    stored = dict(
        ((app, name), sha256)
        for app, name, sha256 in AppliedMigrationChecksum.objects.using(using).values_list("app", "name", "sha256")
    )
    known = set(origins.values_list("app", "name"))
    gone = [pk for pk, app, name in origins.values_list("pk", "app", "name") if (app, name) not in stored]
    origins.filter(pk__in=gone).delete()
    distributions = Distributions()
    for key, sha256 in sorted(stored.items()):
        if key in known and key not in applied_now:
            continue
        migration = loader.disk_migrations.get(key)
        if migration is None or (key not in applied_now and migration_checksum(migration) != sha256):
            continue
        distribution, version = distributions.origin(migration) or ("", "")
        origins.update_or_create(app=key[0], name=key[1], defaults={"distribution": distribution, "version": version})


def repair(using: str, migrations: list[str] | None, reason: str, operator: str) -> list[dict[str, str]]:
    """Re-record the checksum (and origin) of applied migrations whose file changed: after an
    operator reviewed the change (Flyway's ``repair``). ``migrations`` ("app.name") limits it;
    None repairs every changed one. Returns what changed, one dict per migration; raises
    ``KeyError`` naming a requested migration that is not applied with a recorded checksum.
    Audited: one ``checksums.repair`` line in MIGRATION_LOG (who, why, old and new checksums)."""
    loader = MigrationLoader(connections[using], ignore_no_migrations=True)
    rows = {f"{row.app}.{row.name}": row for row in AppliedMigrationChecksum.objects.using(using)}
    wanted = list(rows) if migrations is None else list(dict.fromkeys(migrations))
    unknown = [label for label in wanted if label not in rows]
    if unknown:
        raise KeyError(", ".join(unknown))
    distributions = Distributions()
    origins = MigrationFileOrigin.objects.using(using)
    now = timezone.now()
    repaired = []
    with transaction.atomic(using=using):
        for label in sorted(wanted):
            row = rows[label]
            migration = loader.disk_migrations.get((row.app, row.name))
            checksum = migration_checksum(migration) if migration is not None else None
            if checksum is None or checksum == row.sha256:
                continue
            origin = origins.filter(app=row.app, name=row.name).first()
            distribution, version = distributions.origin(migration) or ("", "")
            repaired.append(
                {
                    "migration": label,
                    "old": row.sha256,
                    "new": checksum,
                    "distribution": distribution,
                    "old_version": origin.version if origin else "",
                    "new_version": version,
                }
            )
            row.sha256 = checksum
            row.save(update_fields=["sha256"])
            origins.update_or_create(
                app=row.app,
                name=row.name,
                defaults={
                    "distribution": distribution,
                    "version": version,
                    "repaired_at": now,
                    "repair_reason": reason,
                    "repaired_by": operator,
                },
            )
    audit.record("checksums.repair", reason=reason, repaired=repaired)
    return repaired
