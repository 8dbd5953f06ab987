"""Backups that can be trusted: the catalog, manifests, atomic files, verification, restore, prune.

A backup is a data file plus a manifest ``<name>.json`` in BACKUP_DIR. The data file is written to a
temporary name, fsynced, hashed while it is written (or read once) and renamed; the manifest is
written last, the same way. A data file without a manifest is never listed, so killing a backup at
any instant never leaves something that looks valid. Every vendor difference is in the engines.

One module per concern, each importing only those before it here (and the ground below the package:
engines, errors, audit, records, status, validation, aliases, timeouts, interrupts, database_url):

- ``auditing``: ``audited(operation, name, **fields)``, the one audited context of every operation
  (``<operation>.start``, ``<operation>.end`` with outcome, duration and error, also on failure);
- ``catalog``: BACKUP_DIR, names, BackupManifest, listing, lookup, integrity problems;
- ``create``: atomic files, create_backup;
- ``verify``: verify_backup, the scratch restore (also used by adopt);
- ``adopt``: adopt_backup (dumps made without us);
- ``restore``: restore_preview, writes_since, restore_backup;
- ``retention``: prune_backups.

Everything public is re-exported here: callers use ``backups.create_backup`` or
``from migrations_ops.backups import ...``.
"""

from migrations_ops.backups.adopt import adopt_backup
from migrations_ops.backups.auditing import AuditedOperation, audited
from migrations_ops.backups.catalog import (
    IMPORTED,
    MANIFEST_SUFFIX,
    NAME_PATTERN,
    POINT_FORMAT,
    REASONS,
    BackupManifest,
    backup_dir,
    check_restorable,
    get_backup,
    integrity_problems,
    list_backups,
    require_intact,
    validate_name,
)
from migrations_ops.backups.create import create_backup, disk_full_error
from migrations_ops.backups.restore import (
    STATISTICS_RESET,
    Confirm,
    RestorePreview,
    RestoreResult,
    WritesSince,
    restore_backup,
    restore_preview,
    writes_since,
)
from migrations_ops.backups.retention import TEMP_MAX_AGE_S, prune_backups
from migrations_ops.backups.verify import ScratchContent, VerificationReport, verify_backup

# Not ours: backups.py imported it from engines.base, and tests/test_adopt.py reads it as backups.sha256_of.
from migrations_ops.engines.base import sha256_of

__all__ = [
    "IMPORTED",
    "MANIFEST_SUFFIX",
    "NAME_PATTERN",
    "POINT_FORMAT",
    "REASONS",
    "STATISTICS_RESET",
    "TEMP_MAX_AGE_S",
    "AuditedOperation",
    "BackupManifest",
    "Confirm",
    "RestorePreview",
    "RestoreResult",
    "ScratchContent",
    "VerificationReport",
    "WritesSince",
    "adopt_backup",
    "audited",
    "backup_dir",
    "check_restorable",
    "create_backup",
    "disk_full_error",
    "get_backup",
    "integrity_problems",
    "list_backups",
    "prune_backups",
    "require_intact",
    "restore_backup",
    "restore_preview",
    "sha256_of",
    "validate_name",
    "verify_backup",
    "writes_since",
]
