"""validate_db [--deep] [--json]: Check the database's integrity: foreign keys, constraints, indexes,
schema, migrations, invariants.
"""

from __future__ import annotations

from migrations_ops.errors import OperationFailed
from migrations_ops.management.base import OpsCommand
from migrations_ops.validation import run_validation


class Command(OpsCommand):
    def add_arguments(self, parser):
        parser.add_argument(
            "--deep", action="store_true", help="also run the slow checks (amcheck / PRAGMA integrity_check)"
        )

    def handle(self, *args, **options):
        report = run_validation(self.using, deep=options["deep"])
        if self._json:
            self.print_json(report.to_dict())
        else:
            self.info(report.render())
        if not report.ok:
            names = ", ".join(result.name for result in report.failures())
            raise OperationFailed(f"validation failed: {names}")
