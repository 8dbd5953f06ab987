"""Verifying backups: checksum, readability by the engine's tools, and a restore test into a scratch
database; the scratch restore also reads what an adopted dump holds."""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from migrations_ops.aliases import temporary_alias
from migrations_ops.backups import pitr
from migrations_ops.backups.auditing import audited
from migrations_ops.backups.catalog import BackupManifest, check_restorable, get_backup, integrity_problems
from migrations_ops.engines import engine_class, get_engine
from migrations_ops.engines.base import DumpFile, Progress
from migrations_ops.errors import OperationFailed
from migrations_ops.status import applied_migrations
from migrations_ops.timeouts import lock_timeout


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
    with audited("verify", manifest.name, restore_test=restore_test) as run:
        checks: list[dict[str, Any]] = []
        report = VerificationReport(name=manifest.name, ok=False, checks=checks)
        problems = integrity_problems(manifest)
        checks.append({"name": "checksum", "ok": not problems, "details": problems or [manifest.sha256]})
        if not problems and manifest.format == pitr.FORMAT:
            # The point's backup still in the repository, and every WAL segment from it to the point.
            point = pitr.Point.read(manifest.path)
            problems = pitr.problems(point)
            details = problems or [f"backup {point.backup_label}, restore point {point.restore_point} at {point.lsn}"]
            checks.append({"name": "reachable", "ok": not problems, "details": details})
            if not problems and restore_test:
                report.restore_test = pitr.restore_test(point, get_engine(using), manifest.migrations)
                checks.append(
                    {"name": "restore_test", "ok": report.restore_test["ok"], "details": report.restore_test["details"]}
                )
            restore_test = False  # done: the dump's restore test below is not a point's
        elif not problems:
            reader = engine_class(manifest.engine)(connections[using])
            problems = reader.verify_file(manifest.path, manifest.format)
            checks.append({"name": "readable", "ok": not problems, "details": problems})
        if not problems and restore_test:
            report.restore_test = _restore_test(manifest, using, progress)
            checks.append(
                {"name": "restore_test", "ok": report.restore_test["ok"], "details": report.restore_test["details"]}
            )
        report.ok = all(check["ok"] for check in checks)
        run.ended(
            outcome="ok" if report.ok else "problems",
            size_bytes=manifest.size_bytes,
            error=None if report.ok else "; ".join(report.failures()),
        )
    return report


@dataclass
class ScratchContent:
    """What a dump holds, read from a scratch database it was restored into (then dropped)."""

    database: str
    tables: dict[str, int]
    migrations: dict[str, list[str]]
    error: str | None
    duration_s: float


def scratch_content(dump: DumpFile, using: str, label: str, progress: Progress | None) -> ScratchContent:
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
    content = scratch_content(DumpFile(manifest.path, manifest.format), using, "verify", progress)
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
