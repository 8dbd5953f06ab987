"""Damaged backups offered to restore_db, verify_backup and safe_migrate --rehearse --from-backup:
refused with the contract's exit code and one line, the database and BACKUP_DIR untouched.

One scenario test over every damage (test_restore.py and test_backups.py cover the flip/truncate
cases of one command each; here every damage meets every command that reads a backup). The
commands run in-process (``run_from_argv``, what manage.py calls) on both engines, with a
migration pending (ma_slow) so the rehearsal has a plan to rehearse.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from migrations_ops import backups
from migrations_ops.errors import ExitCode
from tests import dbs
from tests.helpers import corrupt, fingerprint, with_apps
from tests.reliability.harness import as_default, invoke

DAMAGES = [
    "truncated",  # the data file cut in half, the manifest as written
    "corrupted",  # one bit flipped in the middle
    "empty",  # an empty data file with a manifest that agrees about its size and sha256
    "edited_sha256",  # the manifest's checksum edited
    "file_outside_relative",  # the manifest's "file" points out of BACKUP_DIR
    "file_outside_absolute",
    "foreign_engine",  # an intact backup of the other engine
]

# What each command must answer: 2 (bad input) for restore_db and the rehearsal whatever the damage;
# verify_backup reports problems (1), refuses a manifest it cannot take (2), and has nothing to say
# against an intact backup of another engine (0: it verifies files, it restores nothing).
VERIFY_EXIT = {
    "file_outside_relative": ExitCode.BAD_INPUT,
    "file_outside_absolute": ExitCode.BAD_INPUT,
    "foreign_engine": ExitCode.OK,
}
REFUSAL = {
    "truncated": "truncated or altered",
    "corrupted": "(corrupted)",
    "empty": "empty",
    "edited_sha256": "(corrupted)",
    "file_outside_relative": "invalid name or file",
    "file_outside_absolute": "invalid name or file",
    "foreign_engine": "across engines",
}


def _edit_manifest(manifest: backups.BackupManifest, **fields) -> None:
    data = json.loads(manifest.manifest_path.read_text())
    data.update(fields)
    manifest.manifest_path.write_text(json.dumps(data))


def _damaged(db, how: str, tmp_path) -> None:
    """Backup "snap" of ``db`` (or, foreign_engine, of a database of the other engine), damaged."""
    if how == "foreign_engine":
        other = dbs.new_database("sqlite" if db.vendor == "postgresql" else "postgresql", tmp_path)
        try:
            other.query("CREATE TABLE t (id integer)")
            backups.create_backup(using=other.alias, name="snap")
        finally:
            dbs.dispose(other)
        return
    manifest = backups.create_backup(using=db.alias, name="snap")
    if how in ("truncated", "corrupted"):
        corrupt(manifest.path, "truncate" if how == "truncated" else "flip")
    elif how == "empty":
        manifest.path.write_bytes(b"")
        _edit_manifest(manifest, size_bytes=0, sha256=hashlib.sha256(b"").hexdigest())
    elif how == "edited_sha256":
        _edit_manifest(manifest, sha256="0" * 64)
    elif how == "file_outside_relative":
        _edit_manifest(manifest, file="../../etc/passwd")
    else:
        _edit_manifest(manifest, file="/etc/passwd")


def _one_line(code: int, err: str, expected: int, why: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expected, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and why in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_backup_is_refused_by_every_command_and_nothing_is_touched(migrated_db, tmp_path, settings, how):
    db = migrated_db
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    _damaged(db, how, tmp_path)
    with_apps(settings, "ma_slow")  # a plan for the rehearsal (ma_slow.0001 pending)
    files = sorted(p.name for p in backups.backup_dir().iterdir())
    before = fingerprint(db)
    with as_default(db):
        code, _out, err = invoke("restore_db", "snap", "--noinput")
        _one_line(code, err, ExitCode.BAD_INPUT, REFUSAL[how])

        code, _out, err = invoke("safe_migrate", "--rehearse", "--from-backup", "snap", "--noinput")
        _one_line(code, err, ExitCode.BAD_INPUT, REFUSAL[how])

        code, _out, err = invoke("verify_backup", "snap")
        expected = VERIFY_EXIT.get(how, ExitCode.FAILED)
        if expected == ExitCode.OK:
            assert code == ExitCode.OK and err == "", err
        else:
            _one_line(code, err, expected, REFUSAL[how])
    assert fingerprint(db) == before
    assert sorted(p.name for p in backups.backup_dir().iterdir()) == files  # no safety backup, no copy
