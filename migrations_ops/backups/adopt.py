"""Adopting dumps made without us (``backup_db --adopt``): the old runbook's plain SQL and custom-format
dumps, and SQLite files, checked, read in a scratch copy and given a manifest like any backup."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS

from migrations_ops.backups.auditing import audited
from migrations_ops.backups.catalog import (
    IMPORTED,
    MANIFEST_SUFFIX,
    BackupManifest,
    backup_dir,
    default_name,
    is_file,
    validate_name,
)
from migrations_ops.backups.create import publish_backup, removed_on_failure
from migrations_ops.backups.verify import scratch_content
from migrations_ops.engines import ENGINES, get_engine
from migrations_ops.engines.base import DumpFile, Progress
from migrations_ops.engines.processes import write_hashed
from migrations_ops.errors import BadInput


def _detect_format(path: Path) -> tuple[str, str]:
    """(engine vendor, backup format) of a dump file; BadInput when no engine recognises it."""
    for vendor, engine in ENGINES.items():
        backup_format = engine.detect_format(path)
        if backup_format:
            return vendor, backup_format
    raise BadInput(
        f"{path} is not a pg_dump custom-format archive (pg_dump -Fc), pg_dump plain SQL output or a "
        "SQLite database (decompress it first if it is compressed); nothing was adopted"
    )


def adopt_backup(
    path: str | Path,
    name: str | None = None,
    using: str = DEFAULT_DB_ALIAS,
    progress: Progress | None = None,
) -> BackupManifest:
    """Bring a dump made without us under management: the old runbook's ``pg_dump db > backup.sql``,
    a ``pg_dump -Fc`` file, or a SQLite file.

    The file is copied into BACKUP_DIR (hashed while copied), checked by the engine's tools (a plain
    dump must end with pg_dump's last line), restored into a scratch database beside ``using`` (always
    dropped) to read its migrations and exact row counts, and given a manifest with reason
    ``imported``: verify, rehearse and restore then treat it like any backup. BadInput (exit 2, nothing
    adopted) for a missing, unknown, truncated or unrestorable file, a file of another engine, or an
    invalid or existing name.
    """
    source = Path(path).expanduser()
    if not is_file(source):
        raise BadInput(f"no file at {source}; nothing was adopted")
    live = get_engine(using)
    vendor, backup_format = _detect_format(source)
    if vendor != live.vendor:
        raise BadInput(
            f"{source} is a {vendor} dump and the database is {live.vendor}: give --database-url of a "
            f"{vendor} database (a scratch copy is restored beside it); nothing was adopted"
        )
    name = validate_name(name) if name is not None else default_name(live, IMPORTED, base=source.name.split(".")[0])
    directory = backup_dir()
    final = directory / f"{name}{live.file_suffix(backup_format)}"
    if (directory / f"{name}{MANIFEST_SUFFIX}").exists() or final.exists():
        raise BadInput(f"a backup named {name!r} already exists in {directory}")
    live.check_restore_tools(backup_format, "")
    temporary = directory / f".{final.name}.{secrets.token_hex(4)}.tmp"
    with audited("backup", name, reason=IMPORTED, engine=vendor, source=str(source)) as run:
        with removed_on_failure(name, temporary):
            with open(source, "rb") as handle:
                sha256, size = write_hashed(handle, temporary)
            problems = live.verify_file(temporary, backup_format)
            if problems:
                raise BadInput(f"{source} cannot be adopted: {'; '.join(problems)}; nothing was adopted")
            facts = live.file_facts(temporary, backup_format)
            content = scratch_content(DumpFile(temporary, backup_format), using, "adopt", progress)
            if content.error:
                raise BadInput(f"{source} does not restore: {content.error}; nothing was adopted")
            taken = datetime.fromtimestamp(source.stat().st_mtime, UTC).isoformat(timespec="microseconds")
            manifest = BackupManifest(
                name=name,
                created_at=taken,  # when the dump was written, as far as the file can tell
                engine=vendor,
                database={"name": facts["database"] or source.name, "host": None, "port": None},
                server_version=facts["server_version"],
                tool_version=facts["tool_version"],
                format=backup_format,
                file=final.name,
                size_bytes=size,
                sha256=sha256,
                duration_s=run.elapsed(),
                reason=IMPORTED,
                migrations=content.migrations,
                tables=content.tables,
                source=str(source.resolve()),
                directory=directory,
            )
            publish_backup(temporary, final, manifest)
        run.ended(size_bytes=manifest.size_bytes, duration_s=manifest.duration_s, file=manifest.file)
    return manifest
