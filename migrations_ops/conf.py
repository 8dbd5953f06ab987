"""The settings migrations_ops reads, and their defaults for a project that does not set them.

A project that installs the app needs to set none of them: :func:`apply_defaults` (run by
MigrationsOpsConfig.ready, before any command) gives each one the project lacks its default on
``django.conf.settings``, so that every reader can simply say ``settings.BACKUP_DIR``. A setting the
project defines is left exactly as it is (this project's config/settings.py defines them all, from
the environment, with the same defaults). Paths are under the project's ``BASE_DIR``, or the
current directory for a project without one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Durations are strings in timeouts.parse_duration's syntax ('5s', '200ms', '2min').
DEFAULTS: dict[str, Any] = {
    "BACKUP_KEEP": 10,  # pre-migrate/pre-restore backups kept after a successful run
    "MIGRATION_LOCK_TIMEOUT": "5s",
    "MIGRATION_ONLINE_LOCK_TIMEOUT": "200ms",
    # the guard: a write-blocking online step running longer is cancelled and undone
    "MIGRATION_ONLINE_STATEMENT_TIMEOUT": "1s",
    "MIGRATION_ONLINE_RETRY_BUDGET": "2min",
    "MIGRATION_ONLINE_BATCH_SIZE": 5000,
    "MIGRATION_ONLINE_BATCH_TARGET": "100ms",
    "MIGRATION_ONLINE_BATCH_PAUSE": "0s",
    "MIGRATION_ONLINE_MAX_REPLICA_LAG": "10s",
    "MIGRATION_ONLINE_REPLICA_WAIT": "10min",
    # back-off (online/governor.py): sessions queued on locks, a transaction holding back vacuum, WAL
    # MB/s (0: not watched), and the longest back-off before the run fails and undoes itself
    "MIGRATION_ONLINE_MAX_LOCK_WAITERS": 5,
    "MIGRATION_ONLINE_MAX_TRANSACTION_AGE": "10min",
    "MIGRATION_ONLINE_MAX_WAL_RATE": 0,
    # back off while the application runs this many times more statements at once than it usually
    # does during the run (online/governor.py LoadWatch; 0: not watched)
    "MIGRATION_ONLINE_MAX_LOAD_RISE": 3,
    # on: once the walks wrote half the WAL between two checkpoints, keep them within what the server's
    # checkpoints are sized for, max_wal_size / (1 + checkpoint_completion_target) per checkpoint_timeout
    # (for a slow disk at a small max_wal_size: docs/online.md)
    "MIGRATION_ONLINE_CHECKPOINT_PACING": False,
    "MIGRATION_ONLINE_BACKOFF_WAIT": "10min",
    # reviewed operations of migrations the project cannot rewrite (online/declarations.py): none
    "MIGRATION_ONLINE_DECLARATIONS": {},
    # the safety point before a migration: "dump" (a logical backup) or "pgbackrest" (backups/pitr.py)
    "MIGRATION_SAFETY_POINT": "dump",
    "PGBACKREST_STANZA": "",
    "PGBACKREST_CONFIG": "",  # empty: pgBackRest's own default configuration file
    "PGBACKREST_COMMAND": "pgbackrest",  # run as the repository's owner, e.g. "runuser -u postgres -- pgbackrest"
    "PGBACKREST_BACKUP_TYPE": "incr",  # taken before a point when the newest backup is older than the max age
    "PGBACKREST_MAX_AGE": "24h",
    "PGBACKREST_ARCHIVE_TIMEOUT": "60s",  # the restore point's WAL segment must be archived within it
    "PGBACKREST_STOP_COMMAND": "",  # restore_db stops and starts the server with these (empty: it refuses)
    "PGBACKREST_START_COMMAND": "",
    "PGBACKREST_RESTORE_TIMEOUT": "30min",  # the server must be out of recovery within it
    "PGBACKREST_PG_BIN": "",  # the server's bin directory (pg_ctl) for verify_backup --restore-test
}


def path_defaults(base_dir: Path) -> dict[str, Path]:
    """Where backups and the audit trail go in a project that does not say."""
    return {
        "BACKUP_DIR": base_dir / "var" / "backups",
        "MIGRATION_LOG": base_dir / "var" / "log" / "migration.log",
    }


def apply_defaults(settings: Any = None) -> dict[str, Any]:
    """Give every migrations_ops setting the project lacks its default; return the ones set.

    ``BASE_DIR`` too (the current directory) when the project has none: django_checks shows
    migration files relative to it and a rehearsal's worker process starts there.
    """
    if settings is None:
        from django.conf import settings
    base = getattr(settings, "BASE_DIR", None)
    base_dir = Path(base) if base else Path.cwd()
    missing: dict[str, Any] = {} if hasattr(settings, "BASE_DIR") else {"BASE_DIR": base_dir}
    for name, value in {**path_defaults(base_dir), **DEFAULTS}.items():
        if not hasattr(settings, name):
            missing[name] = value
    for name, value in missing.items():
        setattr(settings, name, value)
    return missing
