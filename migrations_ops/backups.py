"""Backups that can be trusted: the catalog, manifests, atomic files, verification, restore, prune.

A backup is a data file plus a manifest ``<name>.json`` in BACKUP_DIR. The data file is written to a
temporary name, fsynced, hashed while it is written (or read once) and renamed; the manifest is
written last, the same way. A data file without a manifest is never listed, so killing a backup at
any instant never leaves something that looks valid. Every vendor difference is in the engines.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from migrations_ops import audit, interrupts, records
from migrations_ops.aliases import temporary_alias
from migrations_ops.database_url import parse_database_url
from migrations_ops.engines import ENGINES, engine_class, get_engine
from migrations_ops.engines.base import (
    DatabaseEngine,
    DumpFile,
    Progress,
    RestoredContentMismatch,
    current_owner,
    fsync_path,
    is_disk_full,
    sha256_of,
)
from migrations_ops.engines.processes import write_hashed
from migrations_ops.errors import BadInput, OperationFailed, OpsError, RecoveryFailed, scrub
from migrations_ops.status import RUN_RECORD_TABLES, applied_migrations, current_migrations
from migrations_ops.timeouts import lock_timeout
from migrations_ops.validation import run_validation

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
REASONS = ("manual", "pre-migrate", "pre-restore", "rehearsal")
IMPORTED = "imported"  # the reason of a dump made without us and adopted (backup_db --adopt)
MANIFEST_SUFFIX = ".json"
TEMP_MAX_AGE_S = 3600  # prune removes temporary files of interrupted backups older than this

# confirm(manifest, database_name) -> True to go on; called after verification, before any change.
Confirm = Callable[["BackupManifest", str], bool]


@dataclass
class BackupManifest:
    """The contract's manifest; ``directory`` (where it was read from) is not serialised."""

    name: str
    created_at: str
    engine: str
    database: dict[str, Any]
    server_version: str
    tool_version: str
    format: str
    file: str
    size_bytes: int
    sha256: str
    duration_s: float
    reason: str
    migrations: dict[str, list[str]] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)
    source: str | None = None  # adopted backups: the file they were copied from
    # The server's cumulative writes per table when the backup began (engine.write_counters()): None
    # where the engine keeps none, for adopted dumps, and in manifests written before it was recorded.
    write_counters: dict[str, int] | None = None
    directory: Path | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("directory")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], directory: Path | None = None) -> BackupManifest:
        """Parse a manifest; ValueError when it is not one of ours."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = {name for name in cls.__dataclass_fields__ if name != "directory"}
        optional = {"source", "write_counters"}  # later additions: manifests written before them stay readable
        missing = sorted(known - optional - set(data))
        if missing:
            raise ValueError(f"missing fields: {', '.join(missing)}")
        manifest = cls(**{key: data[key] for key in known if key in data}, directory=directory)
        if not NAME_PATTERN.match(manifest.name) or not NAME_PATTERN.match(manifest.file):
            raise ValueError("invalid name or file")
        if not isinstance(manifest.tables, dict) or not isinstance(manifest.migrations, dict):
            raise ValueError("invalid tables or migrations")
        if manifest.write_counters is not None and not isinstance(manifest.write_counters, dict):
            raise ValueError("invalid write_counters")
        return manifest

    @property
    def path(self) -> Path:
        return (self.directory or backup_dir()) / self.file

    @property
    def manifest_path(self) -> Path:
        return (self.directory or backup_dir()) / f"{self.name}{MANIFEST_SUFFIX}"

    def dump_file(self) -> DumpFile:
        """The backup as an engine restores it (checked against the manifest's row counts)."""
        return DumpFile(self.path, self.format, self.tables)

    @property
    def heads(self) -> dict[str, str]:
        """The last applied migration per app (by name), for listings."""
        return {app: sorted(names)[-1] for app, names in sorted(self.migrations.items()) if names}


@dataclass
class VerificationReport:
    name: str
    ok: bool
    checks: list[dict[str, Any]]
    restore_test: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def failures(self) -> list[str]:
        return [f"{check['name']}: {'; '.join(check['details'])}" for check in self.checks if not check["ok"]]


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


# --- the directory, names and atomic files ---
def backup_dir(create: bool = True) -> Path:
    """BACKUP_DIR, created with mode 0700 when missing."""
    directory = Path(settings.BACKUP_DIR)
    if create and not directory.is_dir():
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
        except OSError as exc:
            raise BadInput(f"cannot create backup directory {directory}: {exc.strerror}") from None
    return directory


def validate_name(name: str) -> str:
    """The name itself, or BadInput: letters, digits, '.', '_', '-', at most 100, no '..'."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise BadInput(
            f"invalid backup name {name!r}: use letters, digits, '.', '_' and '-' (at most 100, "
            "starting with a letter or digit, no '..')"
        )
    return name


def _default_name(engine: DatabaseEngine, reason: str, base: str | None = None) -> str:
    base = base or Path(str(engine.database_info()["name"])).stem or "db"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-._")[:50] or "db"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{slug}-{stamp}-{reason}"


def _publish(temporary: Path, final: Path) -> None:
    """Give ``temporary`` its final name without ever replacing an existing file; fsync the directory."""
    try:
        os.link(temporary, final)
    except FileExistsError:
        raise BadInput(f"{final.name} already exists in {final.parent}") from None
    finally:
        temporary.unlink(missing_ok=True)
    fsync_path(final.parent)


def _write_manifest(manifest: BackupManifest) -> None:
    directory = manifest.directory or backup_dir()
    temporary = directory / f".{manifest.name}.{secrets.token_hex(4)}.json.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest.to_dict(), handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    _publish(temporary, manifest.manifest_path)


def _publish_backup(temporary: Path, final: Path, manifest: BackupManifest) -> None:
    """The data file under its final name, then the manifest; the data file goes again if the
    manifest cannot be written (a data file is never listed without its manifest anyway)."""
    _publish(temporary, final)
    try:
        _write_manifest(manifest)
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
def _backup_attempt(name: str, temporary: Path, started: float) -> Iterator[None]:
    """Any failure while a backup is written: its temporary file goes, a failed ``backup.end`` is logged.
    A full disk is said as such, naming BACKUP_DIR, whichever layer met it (tool, engine, manifest)."""
    try:
        yield
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if is_disk_full(exc):
            exc = disk_full_error(name, temporary.parent)
        _raise_audited("backup", name, started, exc)


def _audit_backup_end(manifest: BackupManifest) -> None:
    audit.record(
        "backup.end",
        name=manifest.name,
        outcome="ok",
        bytes=manifest.size_bytes,
        duration_s=manifest.duration_s,
        file=manifest.file,
        error=None,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, OpsError):
        return exc.message
    if not isinstance(exc, Exception):  # KeyboardInterrupt, interrupts.Interrupted (SIGINT/SIGTERM)
        return f"interrupted {exc}".strip()
    return scrub(f"{exc.__class__.__name__}: {exc}")


def _raise_audited(operation: str, name: str, started: float, exc: BaseException) -> NoReturn:
    """Record ``<operation>.end`` as failed, then re-raise: ours (and Ctrl-C) as they are, others wrapped."""
    audit.record(
        f"{operation}.end",
        name=name,
        outcome="failed",
        duration_s=round(time.monotonic() - started, 3),
        error=_error_text(exc),
    )
    if isinstance(exc, OpsError) or not isinstance(exc, Exception):
        raise exc  # ours, and interrupts, as they are: the caller turns a signal into its exit
    raise OperationFailed(f"{operation} failed: {_error_text(exc)}") from exc


# --- writing ---
def create_backup(
    using: str = DEFAULT_DB_ALIAS,
    name: str | None = None,
    reason: str = "manual",
    progress: Progress | None = None,
) -> BackupManifest:
    """Back up database ``using`` into BACKUP_DIR and return its manifest.

    BadInput (exit 2) for an invalid or existing name, an unknown reason or missing/too old tools
    (nothing written); OperationFailed (exit 1) when the dump fails (nothing left that is listed).
    """
    if reason not in REASONS:
        raise BadInput(f"unknown backup reason {reason!r}: one of {', '.join(REASONS)}")
    engine = get_engine(using)
    name = validate_name(name) if name is not None else _default_name(engine, reason)
    directory = backup_dir()
    manifest_path = directory / f"{name}{MANIFEST_SUFFIX}"
    backup_format = engine.preferred_format()
    final = directory / f"{name}{engine.file_suffix(backup_format)}"
    if manifest_path.exists() or final.exists():
        raise BadInput(f"a backup named {name!r} already exists in {directory}")
    engine.check_dump_tools()
    database = engine.database_info()
    temporary = directory / f".{final.name}.{secrets.token_hex(4)}.tmp"
    started = time.monotonic()
    created_at = _now()
    audit.record("backup.start", name=name, reason=reason, engine=engine.vendor, database=database)
    with _backup_attempt(name, temporary, started):
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
            duration_s=round(time.monotonic() - started, 3),
            reason=reason,
            migrations=result.migrations,
            tables=result.tables,
            write_counters=result.write_counters,
            directory=directory,
        )
        _publish_backup(temporary, final, manifest)
    _audit_backup_end(manifest)
    return manifest


# --- the catalog ---
def _read_manifest(path: Path) -> BackupManifest:
    with open(path, encoding="utf-8") as handle:
        return BackupManifest.from_dict(json.load(handle), directory=path.parent)


def list_backups() -> list[BackupManifest]:
    """Every complete backup (valid manifest and its data file present), newest first."""
    directory = backup_dir(create=False)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob(f"*{MANIFEST_SUFFIX}"):
        if path.name.startswith("."):
            continue
        try:
            manifest = _read_manifest(path)
        except (OSError, ValueError, TypeError):
            continue  # not one of ours, or unreadable: never offered as a backup
        if manifest.manifest_path == path and manifest.path.is_file():
            found.append(manifest)
    return sorted(found, key=lambda m: (m.created_at, m.name), reverse=True)


def get_backup(name_or_path: str, allow_path: bool = False) -> BackupManifest:
    """The manifest of a backup by name (or, with ``allow_path``, by the path of its manifest or file)."""
    # A file in the current directory is a path even without a '/': `restore_db backup.sql`.
    if allow_path and (os.sep in str(name_or_path) or _is_file(Path(name_or_path))):
        return _backup_at_path(Path(name_or_path))
    name = validate_name(name_or_path)
    path = backup_dir(create=False) / f"{name}{MANIFEST_SUFFIX}"
    if not path.is_file():
        raise BadInput(f"no backup named {name!r} in {backup_dir(create=False)} (see list_backups)")
    try:
        manifest = _read_manifest(path)
    except (OSError, ValueError, TypeError) as exc:
        raise BadInput(f"the manifest of backup {name!r} is unreadable: {exc}") from None
    if manifest.name != name:
        raise BadInput(f"the manifest {path.name} names another backup ({manifest.name!r})")
    return manifest


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for what cannot name a file at all (too long, a NUL byte) instead of
    OSError: a mistyped name is bad input, not a failure."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _backup_at_path(path: Path) -> BackupManifest:
    path = path.expanduser()
    if not _is_file(path):
        raise BadInput(f"no backup at {path}")
    candidates = [path] if path.name.endswith(MANIFEST_SUFFIX) else []
    if not candidates:
        stem = path.name
        while "." in stem and not candidates:
            stem = stem.rsplit(".", 1)[0]
            if (path.parent / f"{stem}{MANIFEST_SUFFIX}").is_file():
                candidates.append(path.parent / f"{stem}{MANIFEST_SUFFIX}")
    if not candidates:
        raise BadInput(
            f"{path} has no manifest beside it: adopt it first with `manage.py backup_db --adopt {path}` "
            "(checks it, records its checksum, migrations and row counts), then use the name it prints"
        )
    try:
        manifest = _read_manifest(candidates[0])
    except (OSError, ValueError, TypeError) as exc:
        raise BadInput(f"{candidates[0]} is not a backup manifest: {exc}") from None
    if not path.name.endswith(MANIFEST_SUFFIX) and manifest.file != path.name:
        raise BadInput(f"the manifest beside {path} describes another file ({manifest.file})")
    return manifest


def integrity_problems(manifest: BackupManifest, checksum: bool = True) -> list[str]:
    """Size and (``checksum``) sha256 of the data file against its manifest."""
    path = manifest.path
    if not path.is_file():
        return [f"data file {path.name} is missing"]
    size = path.stat().st_size
    if size != manifest.size_bytes:
        return [f"{path.name} is {size} bytes, the manifest says {manifest.size_bytes} (truncated or altered)"]
    if size == 0 and manifest.tables:
        # Size and sha256 agree with a manifest rewritten for an empty file: no engine reads tables from it
        # (SQLite takes an empty file for an empty database), so it must be refused before anything runs.
        return [f"{path.name} is empty, but the manifest lists {len(manifest.tables)} tables"]
    if not checksum:
        return []
    digest = sha256_of(path)
    if digest != manifest.sha256:
        return [f"sha256 of {path.name} is {digest[:16]}..., the manifest says {manifest.sha256[:16]}... (corrupted)"]
    return []


def require_intact(manifest: BackupManifest, unchanged: str = "nothing was changed") -> None:
    """BadInput (exit 2) when the data file no longer matches its manifest (size, then sha256)."""
    problems = integrity_problems(manifest)
    if problems:
        raise BadInput(f"backup {manifest.name!r} failed verification: {problems[0]}; {unchanged}")


# --- verification ---
def verify_backup(
    name: str,
    restore_test: bool = False,
    using: str = DEFAULT_DB_ALIAS,
    progress: Progress | None = None,
) -> VerificationReport:
    """Checksum, then readability by the engine's tools; with ``restore_test`` a restore into a scratch
    database ``<db>_verify_<random>`` (always dropped) whose row counts must equal the manifest's.

    BadInput for an unknown or invalid name; problems are reported (``ok`` False), not raised.
    """
    manifest = get_backup(name)
    started = time.monotonic()
    audit.record("verify.start", name=manifest.name, restore_test=restore_test)
    checks: list[dict[str, Any]] = []
    report = VerificationReport(name=manifest.name, ok=False, checks=checks)
    try:
        problems = integrity_problems(manifest)
        checks.append({"name": "checksum", "ok": not problems, "details": problems or [manifest.sha256]})
        if not problems:
            reader = engine_class(manifest.engine)(connections[using])
            problems = reader.verify_file(manifest.path, manifest.format)
            checks.append({"name": "readable", "ok": not problems, "details": problems})
        if not problems and restore_test:
            report.restore_test = _restore_test(manifest, using, progress)
            checks.append(
                {"name": "restore_test", "ok": report.restore_test["ok"], "details": report.restore_test["details"]}
            )
        report.ok = all(check["ok"] for check in checks)
    except BaseException as exc:
        _raise_audited("verify", manifest.name, started, exc)
    audit.record(
        "verify.end",
        name=manifest.name,
        outcome="ok" if report.ok else "problems",
        bytes=manifest.size_bytes,
        duration_s=round(time.monotonic() - started, 3),
        error=None if report.ok else "; ".join(report.failures()),
    )
    return report


def check_restorable(manifest: BackupManifest, engine: DatabaseEngine, wrong_engine: str) -> None:
    """BadInput (``wrong_engine``) for a backup of another engine, or when the tools cannot read it."""
    if manifest.engine != engine.vendor:
        raise BadInput(wrong_engine)
    engine.check_restore_tools(manifest.format, manifest.tool_version)


@dataclass
class ScratchContent:
    """What a dump holds, read from a scratch database it was restored into (then dropped)."""

    database: str
    tables: dict[str, int]
    migrations: dict[str, list[str]]
    error: str | None
    duration_s: float


def _scratch_content(dump: DumpFile, using: str, label: str, progress: Progress | None) -> ScratchContent:
    """Restore ``dump`` into a new ``<db>_<label>_<random>`` beside database ``using``, read its row
    counts and applied migrations, and drop it (also on failure or Ctrl-C)."""
    scratch = get_engine(using).scratch_settings(f"{label}_{secrets.token_hex(4)}")
    started = time.monotonic()
    tables: dict[str, int] = {}
    migrations: dict[str, list[str]] = {}
    error = None
    with temporary_alias(scratch) as alias:
        engine = get_engine(alias)
        engine.create_database()
        try:
            try:
                engine.restore(dump, progress, lock_timeout())
            except OperationFailed as exc:
                error = f"{exc.message} (in the scratch copy {engine.display_name()})"
            else:
                tables = engine.row_counts()
                migrations = applied_migrations(alias)
        finally:
            engine.drop_database()
    return ScratchContent(str(scratch["NAME"]), tables, migrations, error, round(time.monotonic() - started, 3))


def _restore_test(manifest: BackupManifest, using: str, progress: Progress | None) -> dict[str, Any]:
    live = get_engine(using)
    check_restorable(
        manifest,
        live,
        f"a restore test of a {manifest.engine} backup needs a {manifest.engine} database, "
        f"and {using!r} is {live.vendor}: give --database-url",
    )
    content = _scratch_content(DumpFile(manifest.path, manifest.format), using, "verify", progress)
    if content.error:
        return {"ok": False, "database": content.database, "details": [content.error], "tables": {}}
    counts = content.tables
    details = [
        f"{table}: {counts.get(table)} rows restored, the manifest says {manifest.tables.get(table)}"
        for table in sorted(set(counts) | set(manifest.tables))
        if counts.get(table) != manifest.tables.get(table)
    ]
    return {
        "ok": not details,
        "database": content.database,
        "details": details,
        "tables": counts,
        "duration_s": content.duration_s,
    }


# --- adopting dumps made without us ---
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
    if not _is_file(source):
        raise BadInput(f"no file at {source}; nothing was adopted")
    live = get_engine(using)
    vendor, backup_format = _detect_format(source)
    if vendor != live.vendor:
        raise BadInput(
            f"{source} is a {vendor} dump and the database is {live.vendor}: give --database-url of a "
            f"{vendor} database (a scratch copy is restored beside it); nothing was adopted"
        )
    name = validate_name(name) if name is not None else _default_name(live, IMPORTED, base=source.name.split(".")[0])
    directory = backup_dir()
    final = directory / f"{name}{live.file_suffix(backup_format)}"
    if (directory / f"{name}{MANIFEST_SUFFIX}").exists() or final.exists():
        raise BadInput(f"a backup named {name!r} already exists in {directory}")
    live.check_restore_tools(backup_format, "")
    temporary = directory / f".{final.name}.{secrets.token_hex(4)}.tmp"
    started = time.monotonic()
    audit.record("backup.start", name=name, reason=IMPORTED, engine=vendor, source=str(source))
    with _backup_attempt(name, temporary, started):
        with open(source, "rb") as handle:
            sha256, size = write_hashed(handle, temporary)
        problems = live.verify_file(temporary, backup_format)
        if problems:
            raise BadInput(f"{source} cannot be adopted: {'; '.join(problems)}; nothing was adopted")
        facts = live.file_facts(temporary, backup_format)
        content = _scratch_content(DumpFile(temporary, backup_format), using, "adopt", progress)
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
            duration_s=round(time.monotonic() - started, 3),
            reason=IMPORTED,
            migrations=content.migrations,
            tables=content.tables,
            source=str(source.resolve()),
            directory=directory,
        )
        _publish_backup(temporary, final, manifest)
    _audit_backup_end(manifest)
    return manifest


# --- restore ---
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
        if confirm is not None and not confirm(manifest, engine.display_name(), alias):
            raise BadInput("restore aborted: the confirmation did not match; nothing was changed")
        started = time.monotonic()
        database = engine.database_info()
        audit.record("restore.start", name=manifest.name, engine=engine.vendor, database=database)
        try:
            result = _restore_locked(
                manifest, engine, alias, safety_backup, terminate_connections, progress, take_lock, validate
            )
        except BaseException as exc:
            _raise_audited("restore", manifest.name, started, exc)
        result.duration_s = round(time.monotonic() - started, 3)
        if take_lock:  # safe_migrate's own recovery restore is recorded by its run's row ("restored")
            records.record_restore(alias, manifest.name, result.duration_s, result.kept_runs)
        audit.record(
            "restore.end",
            name=manifest.name,
            outcome="ok",
            bytes=manifest.size_bytes,
            duration_s=result.duration_s,
            safety_backup=result.safety_backup,
            kept_runs=result.kept_runs,
            validation_ok=result.validation.get("ok"),
            error=None,
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


# --- prune ---
def prune_backups(keep: int, dry_run: bool = False, reasons: Iterable[str] | None = None) -> list[BackupManifest]:
    """Remove the oldest backups (among those of ``reasons``, default all) beyond the newest ``keep``.

    ``keep`` must be at least 1, so the newest backup is never removed. The manifest goes first, so an
    interrupted prune never leaves a listed backup without its file. Returns what was (or would be) removed.
    """
    if not isinstance(keep, int) or keep < 1:
        raise BadInput(f"--keep must be at least 1 (got {keep!r}): the newest backup is never pruned")
    wanted = set(reasons) if reasons is not None else None
    candidates = [m for m in list_backups() if wanted is None or m.reason in wanted]
    doomed = candidates[keep:]
    if dry_run:
        return doomed
    directory = backup_dir(create=False)
    for manifest in doomed:
        manifest.manifest_path.unlink(missing_ok=True)
        manifest.path.unlink(missing_ok=True)
        audit.record("prune", name=manifest.name, bytes=manifest.size_bytes, outcome="ok", reason=manifest.reason)
    if directory.is_dir():
        fsync_path(directory)
        cutoff = time.time() - TEMP_MAX_AGE_S
        # ".*.tmp*": a temporary file, and what a tool kept beside it (a killed SQLite copy's "-journal").
        for leftover in directory.glob(".*.tmp*"):
            with suppress(FileNotFoundError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
    return doomed
