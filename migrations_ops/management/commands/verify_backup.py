"""verify_backup NAME [--restore-test] [--json]: Verify a backup: checksum and readability; --restore-
test restores it into a scratch database.
"""

from __future__ import annotations

from migrations_ops.backups import verify_backup
from migrations_ops.errors import OperationFailed
from migrations_ops.management.base import OpsCommand
from migrations_ops.progress import terminal_progress


class Command(OpsCommand):
    def add_arguments(self, parser):
        parser.add_argument("name", help="backup name (see list_backups)")
        parser.add_argument(
            "--restore-test",
            action="store_true",
            help="restore into a scratch database, compare row counts with the manifest, drop it",
        )

    def handle(self, *args, **options):
        progress = terminal_progress("restore test", self._verbosity, self._json) if options["restore_test"] else None
        try:
            report = verify_backup(
                options["name"], restore_test=options["restore_test"], using=self.using, progress=progress
            )
        finally:
            if progress:
                progress.finish()
        if self._json:
            self.print_json(report.to_dict())
        else:
            for check in report.checks:
                status = "ok" if check["ok"] else "FAILED"
                shown = "" if check["ok"] and check["name"] != "checksum" else ": " + "; ".join(check["details"])
                self.info(f"{check['name']}: {status}{shown}")
        if not report.ok:
            raise OperationFailed(f"backup {report.name} failed verification: {'; '.join(report.failures())}")
        self.info(f"backup {report.name} verified")
