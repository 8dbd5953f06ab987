"""list_backups [--json]: List the backups in BACKUP_DIR, newest first."""

from __future__ import annotations

from migrations_ops.backups import list_backups
from migrations_ops.formatting import human_size
from migrations_ops.management.base import OpsCommand


class Command(OpsCommand):
    def handle(self, *args, **options):
        backups = list_backups()
        if self._json:
            self.print_json([manifest.to_dict() for manifest in backups])
            return
        if not backups:
            self.info("no backups")
            return
        header = ("NAME", "CREATED (UTC)", "REASON", "SIZE", "ENGINE", "DATABASE", "MIGRATION HEADS")
        rows = [header]
        for m in backups:
            heads = " ".join(f"{app}.{name.split('_')[0]}" for app, name in m.heads.items()) or "-"
            database = str(m.database.get("name", "?"))
            if m.database.get("host"):
                database = f"{database}@{m.database['host']}:{m.database.get('port')}"
            created = m.created_at[:19].replace("T", " ")
            rows.append((m.name, created, m.reason, human_size(m.size_bytes), m.engine, database, heads))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        for row in rows:
            self.stdout.write(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
            )
