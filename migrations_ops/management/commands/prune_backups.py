"""prune_backups --keep N [--dry-run]: Remove the oldest backups beyond the newest N (never the
newest).
"""

from __future__ import annotations

from migrations_ops.backups import prune_backups
from migrations_ops.management.base import OpsCommand


class Command(OpsCommand):
    def add_arguments(self, parser):
        parser.add_argument("--keep", type=int, required=True, metavar="N", help="how many backups to keep (>= 1)")
        parser.add_argument("--dry-run", action="store_true", help="only show what would be removed")

    def handle(self, *args, **options):
        removed = prune_backups(options["keep"], dry_run=options["dry_run"])
        if self._json:
            self.print_json({"dry_run": options["dry_run"], "removed": [m.name for m in removed]})
            return
        verb = "would remove" if options["dry_run"] else "removed"
        for manifest in removed:
            self.info(f"{verb} {manifest.name} ({manifest.created_at[:19]}, {manifest.reason})")
        if not removed:
            self.info("nothing to prune")
