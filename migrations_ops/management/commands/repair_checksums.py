"""repair_checksums [app.migration ...] --reason TEXT [--noinput] [--json]: Re-record the checksums
of applied migration files that changed, after you reviewed the change (Flyway's repair); audited.
"""

from __future__ import annotations

from migrations_ops import audit, checksums
from migrations_ops.errors import BadInput
from migrations_ops.management.base import OpsCommand


class Command(OpsCommand):
    def add_arguments(self, parser):
        parser.add_argument(
            "migrations", nargs="*", metavar="app.migration", help="only these (default: every changed one)"
        )
        parser.add_argument(
            "--reason", default="", help="why the changes are safe (kept with the record and in the audit log)"
        )

    def handle(self, *args, **options):
        reason = options["reason"].strip()
        if not reason:  # checked here, not by argparse, so that it is one `error:` line like the rest
            raise BadInput("--reason must say why the changed migrations are safe")
        if not checksums.table_exists(self.using):
            raise BadInput("no checksums recorded yet: run migrate first")
        try:
            repaired = checksums.repair(self.using, options["migrations"] or None, reason, audit.operator())
        except KeyError as exc:
            raise BadInput(f"not an applied migration with a recorded checksum: {exc.args[0]}") from None
        if self._json:
            self.print_json({"repaired": repaired, "reason": reason})
            return
        for item in repaired:
            versions = (
                f" ({item['distribution']} {item['old_version'] or '?'} -> {item['new_version']})"
                if item["distribution"]
                else ""
            )
            self.info(f"{item['migration']}: {item['old'][:12]} -> {item['new'][:12]}{versions}")
        self.info(
            f"Re-recorded {len(repaired)} checksum(s)."
            if repaired
            else "Nothing to repair: every applied migration file matches its checksum."
        )
