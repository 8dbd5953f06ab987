"""The catalog: BACKUP_DIR, backup names, the manifest (BackupManifest), listing, lookup by name or
path, and whether a data file still matches its manifest (integrity problems, engine and tools).

A data file without a manifest is never listed, so killing a backup at any instant never leaves
something that looks valid.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from migrations_ops.engines.base import DatabaseEngine, DumpFile, sha256_of
from migrations_ops.errors import BadInput

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
REASONS = ("manual", "pre-migrate", "pre-restore", "rehearsal")
IMPORTED = "imported"  # the reason of a dump made without us and adopted (backup_db --adopt)
MANIFEST_SUFFIX = ".json"
POINT_FORMAT = "pgbackrest"  # a pgBackRest safety point (backups/pitr.py): no dump, pgBackRest restores it


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


# --- the directory and names ---
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


def default_name(engine: DatabaseEngine, reason: str, base: str | None = None) -> str:
    base = base or Path(str(engine.database_info()["name"])).stem or "db"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-._")[:50] or "db"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{slug}-{stamp}-{reason}"


# --- the catalog ---
def read_manifest(path: Path) -> BackupManifest:
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
            manifest = read_manifest(path)
        except (OSError, ValueError, TypeError):
            continue  # not one of ours, or unreadable: never offered as a backup
        if manifest.manifest_path == path and manifest.path.is_file():
            found.append(manifest)
    return sorted(found, key=lambda m: (m.created_at, m.name), reverse=True)


def get_backup(name_or_path: str, allow_path: bool = False) -> BackupManifest:
    """The manifest of a backup by name (or, with ``allow_path``, by the path of its manifest or file)."""
    # A file in the current directory is a path even without a '/': `restore_db backup.sql`.
    if allow_path and (os.sep in str(name_or_path) or is_file(Path(name_or_path))):
        return _backup_at_path(Path(name_or_path))
    name = validate_name(name_or_path)
    path = backup_dir(create=False) / f"{name}{MANIFEST_SUFFIX}"
    if not path.is_file():
        raise BadInput(f"no backup named {name!r} in {backup_dir(create=False)} (see list_backups)")
    try:
        manifest = read_manifest(path)
    except (OSError, ValueError, TypeError) as exc:
        raise BadInput(f"the manifest of backup {name!r} is unreadable: {exc}") from None
    if manifest.name != name:
        raise BadInput(f"the manifest {path.name} names another backup ({manifest.name!r})")
    return manifest


def is_file(path: Path) -> bool:
    """``path.is_file()``, False for what cannot name a file at all (too long, a NUL byte) instead of
    OSError: a mistyped name is bad input, not a failure."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _backup_at_path(path: Path) -> BackupManifest:
    path = path.expanduser()
    if not is_file(path):
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
        manifest = read_manifest(candidates[0])
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


def check_restorable(manifest: BackupManifest, engine: DatabaseEngine, wrong_engine: str) -> None:
    """BadInput (``wrong_engine``) for a backup of another engine, or when the tools cannot read it."""
    if manifest.engine != engine.vendor:
        raise BadInput(wrong_engine)
    if manifest.format != POINT_FORMAT:  # pgBackRest restores a point; pitr.problems checks it can
        engine.check_restore_tools(manifest.format, manifest.tool_version)
