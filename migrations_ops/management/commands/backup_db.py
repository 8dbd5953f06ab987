"""backup_db [--name NAME] [--json]: Back up the database into BACKUP_DIR (data file + manifest,
written atomically, mode 0600).
"""

from __future__ import annotations

from migrations_ops.backups import create_backup
from migrations_ops.formatting import human_size
from migrations_ops.management.base import OpsCommand
from migrations_ops.progress import terminal_progress


class Command(OpsCommand):
    def add_arguments(self, parser):
        parser.add_argument("--name", help="backup name (default: <db>-<timestamp>-manual)")

    def handle(self, *args, **options):
        progress = terminal_progress("backup", self._verbosity, self._json)
        try:
            manifest = create_backup(using=self.using, name=options["name"], reason="manual", progress=progress)
        finally:
            if progress:
                progress.finish()
        if self._json:
            self.print_json(manifest.to_dict())
            return
        rows = sum(manifest.tables.values())
        self.info(
            f"backup {manifest.name}: {manifest.file}, {human_size(manifest.size_bytes)}, "
            f"{len(manifest.tables)} tables, {rows} rows, {manifest.duration_s:.1f}s"
        )
        self.info(f"sha256 {manifest.sha256}", level=2)
