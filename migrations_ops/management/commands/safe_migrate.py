"""safe_migrate: Migrate like `migrate`, with a verified backup first, validation after, and on any failure
a rollback (one transaction), a reversal (non-atomic plans) or, with --allow-data-loss, a restore.
"""

from __future__ import annotations

import sys

from django.db import connections

from migrations_ops.api import safe_migrate
from migrations_ops.management.base import OpsCommand
from migrations_ops.options import SafeMigrateOptions
from migrations_ops.planning import MigrationPlan
from migrations_ops.progress import terminal_progress


class Command(OpsCommand):
    def add_arguments(self, parser):
        parser.add_argument("app_label", nargs="?", help="app to migrate (default: all)")
        parser.add_argument("migration_name", nargs="?", help="target migration, or 'zero'")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--plan", action="store_true", help="print the plan and touch nothing")
        mode.add_argument("--dry-run", action="store_true", help="take the backup, print the plan, migrate nothing")
        mode.add_argument(
            "--rehearse", action="store_true", help="run everything on a scratch copy; the live database is untouched"
        )
        parser.add_argument("--from-backup", metavar="NAME", help="with --rehearse: copy this backup instead")
        parser.add_argument(
            "--allow-row-loss",
            metavar="TABLE",
            action="append",
            default=[],
            help="accept fewer rows in TABLE afterwards (repeatable)",
        )
        parser.add_argument(
            "--allow-data-loss",
            action="store_true",
            help="if reversing a failed plan is impossible, restore the backup (losing other clients' writes since)",
        )
        parser.add_argument("--accept-existing-issues", action="store_true", help="only new validation failures count")
        parser.add_argument(
            "--online",
            action="store_true",
            help="PostgreSQL: expand, backfill in batches, validate, each step a short transaction (the application "
            "keeps running); --plan --online shows how",
        )
        online = parser.add_mutually_exclusive_group()
        online.add_argument("--resume", action="store_true", help="with --online: continue a killed online run")
        online.add_argument(
            "--abort",
            action="store_true",
            help="with --online: undo an unfinished online run, or go back from an open expand/contract window",
        )
        online.add_argument(
            "--complete",
            action="store_true",
            help="with --online: the contract half of the open expand/contract window (after the new release "
            "is deployed)",
        )
        parser.add_argument(
            "--lint", action="store_true", help="with --plan: exit 1 when the plan would block the application"
        )
        parser.add_argument("--fake", action="store_true", help="as migrate --fake, under the same safety")
        parser.add_argument("--fake-initial", action="store_true", help="as migrate --fake-initial")

    def handle(self, *args, **options):
        run_options = SafeMigrateOptions(
            app_label=options["app_label"],
            migration_name=options["migration_name"],
            plan_only=options["plan"],
            dry_run=options["dry_run"],
            rehearse=options["rehearse"],
            from_backup=options["from_backup"],
            allow_row_loss=options["allow_row_loss"],
            fake=options["fake"],
            fake_initial=options["fake_initial"],
            accept_existing_issues=options["accept_existing_issues"],
            online=options["online"],
            resume=options["resume"],
            abort=options["abort"],
            complete=options["complete"],
            lint=options["lint"],
            allow_data_loss=options["allow_data_loss"],
        )
        # The checks the API and the service make too (options.py); refused here, a BadInput is the
        # contract's one `error:` line and exit 2, with nothing on stdout. (api.safe_migrate checks
        # again: a refusal there would come back as a summary.)
        run_options.validate()
        summary = safe_migrate(
            self.using,
            run_options,
            report=lambda line: self.info(line),
            confirm=self._confirm if options["interactive"] else None,
            progress=lambda label: terminal_progress(label, self._verbosity, self._json),
        )
        if self._json:
            self.print_json(summary.to_dict())
        else:
            if summary.plan is not None and (run_options.plan_only or run_options.dry_run):
                self.info(summary.render_plan())
            self.info(summary.render())
        if summary.exit_code:
            self._fail(summary.error or summary.status, summary.exit_code)

    def _confirm(self, plan: MigrationPlan) -> bool:
        """A backwards plan removes schema and data: the operator types the database name."""
        name = self.engine_name()
        if not sys.stdin.isatty():
            return False
        self.stdout.write(f"This plan migrates BACKWARDS ({len(plan.steps)} step(s)); tables may lose data:")
        for step in plan.steps:
            self.stdout.write(f"  - {step.revision}: {step.description}")
        answer = input(f"Type the database name ({name}) to continue: ")
        return answer.strip() == name

    def engine_name(self) -> str:
        return str(connections[self.using].settings_dict["NAME"])
