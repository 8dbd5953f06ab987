"""Retention: prune_backups removes the oldest backups beyond a count, and stale temporary files.

Not an audited start/end operation: its audit contract is one ``prune`` line per backup removed (the
point tests/reliability/test_signals.py sends a signal at), kept as it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextlib import suppress

from migrations_ops import audit
from migrations_ops.backups.catalog import BackupManifest, backup_dir, list_backups
from migrations_ops.engines.base import fsync_path
from migrations_ops.errors import BadInput

TEMP_MAX_AGE_S = 3600  # prune removes temporary files of interrupted backups older than this


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
