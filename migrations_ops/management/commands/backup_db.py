"""backup_db [--name NAME] [--adopt FILE] [--json]: Back up the database into BACKUP_DIR (data file +
manifest, written atomically, mode 0600); --adopt FILE brings a dump made without us (pg_dump plain SQL,
pg_dump -Fc, a SQLite file) under management instead: checked, checksummed, manifest marked imported.
"""

from __future__ import annotations

from migrations_ops.backups import adopt_backup, create_backup
from migrations_ops.formatting import human_size
from migrations_ops.management.base import OpsCommand
from migrations_ops.progress import terminal_progress


class Command(OpsCommand):
    def add_arguments(self, parser):
        parser.add_argument(
            "--name", help="backup name (default: <db>-<timestamp>-manual, or <file>-<timestamp>-imported)"
        )
        parser.add_argument(
            "--adopt",
            metavar="FILE",
            help="adopt an existing dump (`pg_dump db > backup.sql`, `pg_dump -Fc`, a SQLite file) instead of dumping",
        )

    def handle(self, *args, **options):
        adopting = options["adopt"] is not None
        progress = terminal_progress("adopt" if adopting else "backup", self._verbosity, self._json)
        try:
            if adopting:
                manifest = adopt_backup(options["adopt"], name=options["name"], using=self.using, progress=progress)
            else:
                manifest = create_backup(using=self.using, name=options["name"], reason="manual", progress=progress)
        finally:
            if progress:
                progress.finish()
        if self._json:
            self.print_json(manifest.to_dict())
            return
        rows = sum(manifest.tables.values())
        verb = f"adopted {manifest.source} as" if adopting else "backup"
        self.info(
            f"{verb} {manifest.name}: {manifest.file}, {human_size(manifest.size_bytes)}, "
            f"{len(manifest.tables)} tables, {rows} rows, {manifest.duration_s:.1f}s"
        )
        if adopting:
            heads = ", ".join(f"{app} {name}" for app, name in manifest.heads.items()) or "none (not a Django database)"
            self.info(f"migrations: {heads}")
        self.info(f"sha256 {manifest.sha256}", level=2)
