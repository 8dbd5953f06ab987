"""Restoring backups: what a restore would change (RestorePreview, writes_since, the server's write
counters), and restore_backup: verify, confirm, safety backup, replace everything, check, validate."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from migrations_ops import interrupts, records
from migrations_ops.aliases import temporary_alias
from migrations_ops.backups import pitr
from migrations_ops.backups.auditing import audited
from migrations_ops.backups.catalog import BackupManifest, check_restorable, get_backup, require_intact
from migrations_ops.backups.create import create_backup
from migrations_ops.database_url import parse_database_url
from migrations_ops.engines import get_engine
from migrations_ops.engines.base import DatabaseEngine, Progress, RestoredContentMismatch, current_owner
from migrations_ops.errors import BadInput, OperationFailed, OpsError, RecoveryFailed
from migrations_ops.status import RUN_RECORD_TABLES, current_migrations
from migrations_ops.timeouts import lock_timeout
from migrations_ops.validation import run_validation

# confirm(manifest, database_name) -> True to go on; called after verification, before any change.
Confirm = Callable[["BackupManifest", str], bool]


@dataclass
class RestoreResult:
    backup: str
    database: dict[str, Any]
    created_database: bool
    safety_backup: str | None
    terminated_sessions: list[str]
    duration_s: float
    migrations: dict[str, str]
    validation: dict[str, Any]
    kept_runs: int = 0  # MigrationRun records written since the backup, written back after the restore

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _validate(using: str) -> dict[str, Any]:
    """Validation after a restore: the restore ran in one transaction that validated the keys it created."""
    return run_validation(using=using, just_restored=True).to_dict()


@contextmanager
def _target(using: str, target_url: str | None) -> Iterator[str]:
    if not target_url:
        yield using
        return
    try:
        target_settings = parse_database_url(target_url)
    except ImproperlyConfigured as exc:
        raise BadInput(f"--target-database-url: {exc}") from None
    with temporary_alias(target_settings) as alias:
        yield alias


STATISTICS_RESET = "unknown (statistics reset)"


@dataclass
class WritesSince:
    """Rows inserted, updated or deleted per table since a backup began, as the server's cumulative
    counters tell (``None`` for a table whose counter went down: the statistics were reset, or the
    table recreated, since). ``unknown`` says why nothing can be told; ``per_table`` is then empty."""

    per_table: dict[str, int | None] = field(default_factory=dict)
    unknown: str | None = None

    @property
    def total(self) -> int:
        return sum(count for count in self.per_table.values() if count)

    @property
    def reset_tables(self) -> list[str]:
        return sorted(table for table, count in self.per_table.items() if count is None)

    def render(self) -> list[str]:
        if self.unknown:
            return [f"Writes since the backup: unknown, {self.unknown}"]
        written = {table: count for table, count in sorted(self.per_table.items()) if count != 0}
        lines = ["Writes since the backup (rows inserted, updated or deleted, as the server counts them):"]
        lines += [f"  {table}: {STATISTICS_RESET if n is None else n}" for table, n in written.items()]
        return lines if written else [*lines, "  (none)"]


def writes_since(manifest: BackupManifest, engine: DatabaseEngine) -> WritesSince:
    """What a restore of ``manifest`` into ``engine``'s database would discard beyond its rows: the
    database's write counters now minus those recorded when the backup began. The run records are
    left out (a restore writes them back). DatabaseError when the database cannot be read."""
    now = engine.write_counters()
    if now is None:
        return WritesSince(unknown=f"{engine.vendor} keeps no write counters, so it cannot tell")
    if manifest.write_counters is None:
        return WritesSince(unknown="the backup recorded no write counters (adopted, or taken by an older version)")
    source, here = manifest.database, engine.database_info()
    if any(source.get(key) != here.get(key) for key in ("name", "host", "port")):
        return WritesSince(unknown=f"the backup was taken of database {source.get('name')!r}, not of this one")
    then = manifest.write_counters
    per_table: dict[str, int | None] = {}
    for table, count in now.items():
        if table not in RUN_RECORD_TABLES:
            before = then.get(table, 0)  # a table created since the backup: all its writes are since
            per_table[table] = count - before if count >= before else None
    return WritesSince(per_table)


@dataclass
class RestorePreview:
    """What a restore would change, shown before the operator confirms: migrations and rows now
    (``None`` when the target cannot be read, e.g. a database not created yet) and in the backup,
    and the writes since the backup where the server can tell."""

    manifest: BackupManifest
    migrations_now: dict[str, str] | None
    rows_now: dict[str, int] | None
    writes: WritesSince = field(default_factory=lambda: WritesSince(unknown="the database cannot be read"))

    def render(self) -> list[str]:
        backup_heads = self.manifest.heads
        lines = ["Migrations (now -> in the backup):"]
        now = self.migrations_now
        for app in sorted(set(backup_heads) | set(now or {})):
            current = "?" if now is None else now.get(app, "none")
            then = backup_heads.get(app, "none")
            lines.append(f"  {app}: {current} -> {then}" + ("" if current == then else "   CHANGES"))
        if self.manifest.format == pitr.FORMAT:
            return [
                *lines,
                f"A point-in-time restore (pgBackRest): the server stops, and the whole server, every database in "
                f"it, goes back to {self.manifest.created_at}.",
                *self.writes.render(),
            ]
        lines.append("Rows per table (now -> in the backup):")
        rows = self.rows_now
        for table in sorted(set(self.manifest.tables) | set(rows or {})):
            current = "?" if rows is None else rows.get(table, "no table")
            then = self.manifest.tables.get(table, "no table")
            if current != then:
                lines.append(f"  {table}: {current} -> {then}")
        if (
            rows is not None
            and all(rows.get(t) == n for t, n in self.manifest.tables.items())
            and set(rows) == set(self.manifest.tables)
        ):
            lines.append("  (every table has as many rows now as in the backup)")
        return [*lines, *self.writes.render()]


def restore_preview(manifest: BackupManifest, using: str) -> RestorePreview:
    """The target's migrations, row counts and writes since the backup, beside the backup's (nothing
    is changed)."""
    engine = get_engine(using)
    try:
        return RestorePreview(manifest, current_migrations(using), engine.row_counts(), writes_since(manifest, engine))
    except DatabaseError:  # a target that does not exist yet (--target-database-url): nothing to compare
        connections[using].close()
        return RestorePreview(manifest, None, None)


def restore_backup(
    name_or_path: str,
    using: str = DEFAULT_DB_ALIAS,
    safety_backup: bool = True,
    target_url: str | None = None,
    terminate_connections: bool = False,
    confirm: Confirm | None = None,
    progress: Progress | None = None,
    take_lock: bool = True,
    validate: bool = True,
) -> RestoreResult:
    """Replace the whole content of database ``using`` (or of ``target_url``, created when missing)
    with a backup, under the migration lock, after a ``pre-restore`` safety backup.

    Verifies first (checksum, engine, format, tools) and asks ``confirm`` before any change: BadInput
    (exit 2) and nothing changed on any mismatch or refusal; LockHeld (exit 3) when another operation
    holds the lock; OperationFailed (exit 1) with the database as it was when the restore fails or other
    sessions block it; RecoveryFailed (exit 4) naming the safety backup if putting it back failed.
    """
    manifest = get_backup(name_or_path, allow_path=True)
    with _target(using, target_url) as alias:
        engine = get_engine(alias)
        check_restorable(
            manifest,
            engine,
            f"backup {manifest.name!r} is a {manifest.engine} backup and the target database is "
            f"{engine.vendor}: refusing to restore across engines; nothing was changed",
        )
        require_intact(manifest)
        point = None
        if manifest.format == pitr.FORMAT:
            if target_url is not None:
                raise BadInput(
                    f"backup {manifest.name!r} is a pgBackRest point: it restores the server it was taken on, "
                    "in place, not into another database; nothing was changed"
                )
            point = pitr.Point.read(manifest.path)
            found = pitr.problems(point)
            if found:
                raise BadInput(f"cannot restore to {point.restore_point}: {found[0]}; nothing was changed")
        if confirm is not None and not confirm(manifest, engine.display_name(), alias):
            raise BadInput("restore aborted: the confirmation did not match; nothing was changed")
        database = engine.database_info()
        with audited("restore", manifest.name, engine=engine.vendor, database=database) as run:
            if point is not None:
                result = _restore_point(manifest, point, engine, alias, take_lock, validate)
            else:
                result = _restore_locked(
                    manifest, engine, alias, safety_backup, terminate_connections, progress, take_lock, validate
                )
            result.duration_s = run.elapsed()
            if take_lock:  # safe_migrate's own recovery restore is recorded by its run's row ("restored")
                records.record_restore(alias, manifest.name, result.duration_s, result.kept_runs)
            run.ended(
                size_bytes=manifest.size_bytes,
                duration_s=result.duration_s,
                safety_backup=result.safety_backup,
                kept_runs=result.kept_runs,
                validation_ok=result.validation.get("ok"),
            )
        return result


def _restore_locked(
    manifest: BackupManifest,
    engine: DatabaseEngine,
    alias: str,
    safety_backup: bool,
    terminate_connections: bool,
    progress: Progress | None,
    take_lock: bool = True,
    validate: bool = True,
) -> RestoreResult:
    created = False
    if not engine.database_exists():
        engine.create_database()
        created = True
    # safe_migrate restores its pre-migrate backup while it already holds the lock (take_lock=False).
    lock = engine.migration_lock(current_owner("restore_db")) if take_lock else nullcontext()
    with lock:
        terminated = engine.terminate_other_sessions() if terminate_connections else []
        safety = create_backup(using=alias, reason="pre-restore") if safety_backup and not created else None
        runs = records.runs_before_restore(alias) if not created else []
        try:
            engine.restore(manifest.dump_file(), progress, lock_timeout())
        except RestoredContentMismatch as exc:
            interrupts.current().decide()  # putting the previous content back must not be abandoned
            _recover(engine, safety, exc.message)
        # Committed: the database holds the backup. A signal during the bookkeeping below must not
        # report "failed, the database is as it was" (exit 1) about a database that was replaced.
        interrupts.current().decide()
        kept = records.write_back_runs(alias, runs)
        validation = _validate(alias) if validate else {}
        migrations = current_migrations(alias)
    return RestoreResult(
        backup=manifest.name,
        database=engine.database_info(),
        created_database=created,
        safety_backup=safety.name if safety else None,
        terminated_sessions=terminated,
        duration_s=0.0,
        migrations=migrations,
        validation=validation,
        kept_runs=kept,
    )


def _restore_point(
    manifest: BackupManifest, point: pitr.Point, engine: DatabaseEngine, alias: str, take_lock: bool, validate: bool
) -> RestoreResult:
    """The server back to a pgBackRest point (backups/pitr.py). No pre-restore safety backup: the point
    is on the server's previous timeline, and going forward again is pgBackRest's to do by hand."""
    if take_lock:  # no other safe_migrate or restore_db may run on a server about to be stopped
        with engine.migration_lock(current_owner("restore_db")):
            pass
    runs = records.runs_before_restore(alias)
    pitr.restore_in_place(point, engine)
    interrupts.current().decide()
    kept = records.write_back_runs(alias, runs)
    return RestoreResult(
        backup=manifest.name,
        database=engine.database_info(),
        created_database=False,
        safety_backup=None,
        terminated_sessions=[],
        duration_s=0.0,
        migrations=current_migrations(alias),
        validation=_validate(alias) if validate else {},
        kept_runs=kept,
    )


def _recover(engine: DatabaseEngine, safety: BackupManifest | None, problem: str) -> None:
    """The engine replaced the content but it is wrong: put the safety backup back, then fail."""
    if safety is None:
        raise RecoveryFailed(f"{problem}, and no safety backup was taken: restore the previous content by hand")
    try:
        engine.restore(safety.dump_file(), None, lock_timeout())
    except OpsError as exc:
        raise RecoveryFailed(
            f"{problem}, and putting the previous content back failed too ({exc.message}): "
            f"restore {safety.path} by hand"
        ) from None
    raise OperationFailed(f"{problem}; the previous content was put back from safety backup {safety.name}")
