"""list_backups [--verify] [--json]: List the backups in BACKUP_DIR, newest first; a backup whose file
no longer matches its manifest is marked (its size always; its checksum with --verify).
"""

from __future__ import annotations

from migrations_ops.backups import POINT_FORMAT, integrity_problems, list_backups
from migrations_ops.formatting import human_size
from migrations_ops.management.base import OpsCommand


class Command(OpsCommand):
    def add_arguments(self, parser):
        parser.add_argument("--verify", action="store_true", help="also check every file's sha256 (reads them all)")

    def handle(self, *args, **options):
        backups = list_backups()
        problems = {m.name: integrity_problems(m, checksum=options["verify"]) for m in backups}
        if self._json:
            self.print_json([{**manifest.to_dict(), "file_problems": problems[manifest.name]} for manifest in backups])
            return
        if not backups:
            self.info("no backups")
            return
        header = ("NAME", "CREATED (UTC)", "REASON", "SIZE", "ENGINE", "DATABASE", "FILE", "MIGRATION HEADS")
        rows = [header]
        for m in backups:
            heads = " ".join(f"{app}.{name.split('_')[0]}" for app, name in m.heads.items()) or "-"
            database = str(m.database.get("name", "?"))
            if m.database.get("host"):
                database = f"{database}@{m.database['host']}:{m.database.get('port')}"
            created = m.created_at[:19].replace("T", " ")
            state = "DAMAGED" if problems[m.name] else ("verified" if options["verify"] else "size ok")
            size = "pgBackRest point" if m.format == POINT_FORMAT else human_size(m.size_bytes)
            rows.append((m.name, created, m.reason, size, m.engine, database, state, heads))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        for row in rows:
            self.stdout.write(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
            )
        for name, found in problems.items():
            for problem in found:
                self.stderr.write(f"warning: backup {name}: {problem}")
