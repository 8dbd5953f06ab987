"""Writing backups: atomic files, then create_backup.

A backup is a data file plus a manifest ``<name>.json`` in BACKUP_DIR. The data file is written to a
temporary name, fsynced, hashed while it is written (or read once) and renamed; the manifest is
written last, the same way. A data file without a manifest is never listed, so killing a backup at
any instant never leaves something that looks valid. Every vendor difference is in the engines.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS

from migrations_ops.backups import pitr
from migrations_ops.backups.auditing import audited
from migrations_ops.backups.catalog import (
    MANIFEST_SUFFIX,
    REASONS,
    BackupManifest,
    backup_dir,
    default_name,
    validate_name,
)
from migrations_ops.engines import get_engine
from migrations_ops.engines.base import Progress, fsync_path, is_disk_full, sha256_of
from migrations_ops.errors import BadInput, OperationFailed
from migrations_ops.status import applied_migrations
from migrations_ops.timeouts import lock_timeout


# --- atomic files ---
def publish(temporary: Path, final: Path) -> None:
    """Give ``temporary`` its final name without ever replacing an existing file; fsync the directory."""
    try:
        os.link(temporary, final)
    except FileExistsError:
        raise BadInput(f"{final.name} already exists in {final.parent}") from None
    finally:
        temporary.unlink(missing_ok=True)
    fsync_path(final.parent)


def write_json(path: Path, document: dict) -> None:
    """``document`` as a new file ``path`` (mode 0600), fsynced before it is published."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_manifest(manifest: BackupManifest) -> None:
    directory = manifest.directory or backup_dir()
    temporary = directory / f".{manifest.name}.{secrets.token_hex(4)}.json.tmp"
    write_json(temporary, manifest.to_dict())
    publish(temporary, manifest.manifest_path)


def publish_backup(temporary: Path, final: Path, manifest: BackupManifest) -> None:
    """The data file under its final name, then the manifest; the data file goes again if the
    manifest cannot be written (a data file is never listed without its manifest anyway)."""
    publish(temporary, final)
    try:
        write_manifest(manifest)
    except BaseException:
        final.unlink(missing_ok=True)
        raise


def disk_full_error(name: str, directory: Path) -> OperationFailed:
    """The operator's line for a backup that ran out of space (ENOSPC, SQLite's "disk is full")."""
    return OperationFailed(
        f"backup {name} failed: no space left on device in BACKUP_DIR {directory} (the disk is full); "
        "the partial backup was removed and the database was not changed: free space there or set "
        "BACKUP_DIR to a larger disk"
    )


@contextmanager
def removed_on_failure(name: str, temporary: Path) -> Iterator[None]:
    """Any failure while a backup is written: its temporary file goes (the audited context then logs a
    failed ``backup.end``). A full disk is said as such, naming BACKUP_DIR, whichever layer met it (tool,
    engine, manifest)."""
    try:
        yield
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if is_disk_full(exc):
            exc = disk_full_error(name, temporary.parent)
        raise exc


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# --- writing ---
def create_backup(
    using: str = DEFAULT_DB_ALIAS,
    name: str | None = None,
    reason: str = "manual",
    progress: Progress | None = None,
) -> BackupManifest:
    """Back up database ``using`` into BACKUP_DIR and return its manifest: a dump, or with
    MIGRATION_SAFETY_POINT = "pgbackrest" a pgBackRest point (``create_point``) for a manual or
    pre-migrate backup.

    BadInput (exit 2) for an invalid or existing name, an unknown reason or missing/too old tools
    (nothing written); OperationFailed (exit 1) when the dump fails (nothing left that is listed).
    """
    if reason not in REASONS:
        raise BadInput(f"unknown backup reason {reason!r}: one of {', '.join(REASONS)}")
    engine = get_engine(using)
    name = validate_name(name) if name is not None else default_name(engine, reason)
    directory = backup_dir()
    manifest_path = directory / f"{name}{MANIFEST_SUFFIX}"
    # A point cannot be restored into a scratch copy (a rehearsal) nor put back by the dump restore
    # that took a pre-restore backup: those are dumps whatever the setting.
    if pitr.kind() == pitr.PGBACKREST and reason not in ("rehearsal", "pre-restore"):
        if manifest_path.exists():
            raise BadInput(f"a backup named {name!r} already exists in {directory}")
        return create_point(engine, name, reason)
    backup_format = engine.preferred_format()
    final = directory / f"{name}{engine.file_suffix(backup_format)}"
    if manifest_path.exists() or final.exists():
        raise BadInput(f"a backup named {name!r} already exists in {directory}")
    engine.check_dump_tools()
    database = engine.database_info()
    temporary = directory / f".{final.name}.{secrets.token_hex(4)}.tmp"
    with audited("backup", name, reason=reason, engine=engine.vendor, database=database) as run:
        created_at = now()
        with removed_on_failure(name, temporary):
            result = engine.dump(temporary, backup_format, progress=progress, lock_timeout=lock_timeout())
            manifest = BackupManifest(
                name=name,
                created_at=created_at,
                engine=engine.vendor,
                database=database,
                server_version=result.server_version,
                tool_version=result.tool_version,
                format=result.format,
                file=final.name,
                size_bytes=result.size_bytes,
                sha256=result.sha256,
                duration_s=run.elapsed(),
                reason=reason,
                migrations=result.migrations,
                tables=result.tables,
                write_counters=result.write_counters,
                directory=directory,
            )
            publish_backup(temporary, final, manifest)
        run.ended(size_bytes=manifest.size_bytes, duration_s=manifest.duration_s, file=manifest.file)
    return manifest


def create_point(engine, name: str, reason: str) -> BackupManifest:
    """The pgBackRest safety point (backups/pitr.py): a restore point on a recent backup, recorded in
    ``<name>.pitr.json`` and a manifest like any backup's (no data file to dump: seconds at any size)."""
    directory = backup_dir()
    final = directory / f"{name}{pitr.SUFFIX}"
    if final.exists():
        raise BadInput(f"a backup named {name!r} already exists in {directory}")
    database = engine.database_info()
    temporary = directory / f".{final.name}.{secrets.token_hex(4)}.tmp"
    with audited("backup", name, reason=reason, engine=engine.vendor, database=database, kind=pitr.PGBACKREST) as run:
        created_at = now()
        counters = engine.write_counters()
        point = pitr.create_point(engine, name)
        with removed_on_failure(name, temporary):
            write_json(temporary, point.to_dict())
            manifest = BackupManifest(
                name=name,
                created_at=created_at,
                engine=engine.vendor,
                database=database,
                server_version=engine.server_version(),
                tool_version=point.tool_version,
                format=pitr.FORMAT,
                file=final.name,
                size_bytes=temporary.stat().st_size,
                sha256=sha256_of(temporary),
                duration_s=run.elapsed(),
                reason=reason,
                migrations=applied_migrations(engine.connection.alias),
                tables={},  # counting every row is what a point exists to avoid
                write_counters=counters,
                directory=directory,
            )
            publish_backup(temporary, final, manifest)
        run.ended(
            size_bytes=manifest.size_bytes,
            duration_s=manifest.duration_s,
            file=manifest.file,
            restore_point=point.restore_point,
            backup_label=point.backup_label,
            lsn=point.lsn,
        )
    return manifest
