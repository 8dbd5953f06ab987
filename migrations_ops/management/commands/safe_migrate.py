"""safe_migrate: back up, migrate, validate, and never leave a half-migrated database."""

from __future__ import annotations

import sys

from migrations_ops.errors import BadInput
from migrations_ops.management.base import OpsCommand
from migrations_ops.planning import TRANSACTION, MigrationPlan
from migrations_ops.progress import terminal_progress
from migrations_ops.runner import SafeMigrateOptions, SafeMigration


class Command(OpsCommand):
    help = (
        "Migrate like `migrate`, with a verified backup first, validation after, and a rollback "
        "(one transaction) or a restore (non-atomic plans) on any failure."
    )

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
        parser.add_argument("--accept-existing-issues", action="store_true", help="only new validation failures count")
        parser.add_argument("--fake", action="store_true", help="as migrate --fake, under the same safety")
        parser.add_argument("--fake-initial", action="store_true", help="as migrate --fake-initial")

    def handle(self, *args, **options):
        if options["from_backup"] and not options["rehearse"]:
            raise BadInput("--from-backup goes with --rehearse (to restore a backup, use restore_db)")
        run_options = SafeMigrateOptions(
            app_label=options["app_label"],
            migration_name=options["migration_name"],
            plan_only=options["plan"],
            dry_run=options["dry_run"],
            rehearse=options["rehearse"],
            from_backup=options["from_backup"],
            allow_row_loss=frozenset(options["allow_row_loss"]),
            fake=options["fake"],
            fake_initial=options["fake_initial"],
            accept_existing_issues=options["accept_existing_issues"],
        )
        runner = SafeMigration(
            self.using,
            run_options,
            report=lambda line: self.info(line),
            confirm=self._confirm if options["interactive"] else None,
            progress=lambda label: terminal_progress(label, self._verbosity, self._json),
        )
        summary = runner.run()
        plan = getattr(runner, "plan", None)
        if self._json:
            self.print_json(summary.to_dict())
        else:
            if plan is not None and (run_options.plan_only or run_options.dry_run):
                self._print_plan(plan)
            if summary.rehearsal:
                self._print_rehearsal(summary.rehearsal)
            durations = ", ".join(f"{k[:-2]} {v:.2f}s" for k, v in summary.durations.items())
            self.info(f"Status: {summary.status} ({durations})")
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
        from django.db import connections

        return str(connections[self.using].settings_dict["NAME"])

    def _print_plan(self, plan: MigrationPlan) -> None:
        out = self.stdout.write
        path = (
            "one transaction: any failure rolls back, no restore needed"
            if plan.rollback_path == TRANSACTION
            else "migration by migration: a failure restores the pre-migrate backup ("
            + "; ".join(plan.non_transactional_reasons)
            + ")"
        )
        out(f"Rollback path: {path}")
        for step in plan.steps:
            flags = [
                "backwards" if step.backwards else "forwards",
                "atomic" if step.atomic else "NON-ATOMIC",
                "reversible" if step.reversible else "IRREVERSIBLE",
            ]
            out(f"  {step.revision}  [{', '.join(flags)}]")
            out(f"      {step.description}")
        if plan.tables:
            out("Tables:")
            for name, effect in sorted(plan.tables.items()):
                parts = []
                if effect.created:
                    parts.append("created")
                if effect.dropped:
                    parts.append("DROPPED")
                if effect.columns_added:
                    parts.append("+columns " + ", ".join(effect.columns_added))
                if effect.columns_removed:
                    parts.append("-columns " + ", ".join(effect.columns_removed))
                if effect.columns_altered:
                    parts.append("~ " + ", ".join(effect.columns_altered))
                if effect.indexes:
                    parts.append("indexes: " + ", ".join(effect.indexes))
                if effect.constraints:
                    parts.append("constraints: " + ", ".join(effect.constraints))
                if effect.data_migrations:
                    parts.append(
                        "data migrations (rows touched unknown until run): " + ", ".join(effect.data_migrations)
                    )
                out(f"  {name}: {'; '.join(parts)}")

    def _print_rehearsal(self, rehearsal: dict) -> None:
        out = self.stdout.write
        out(f"Rehearsal on a copy of {rehearsal['backup']} (path: {rehearsal['path']}):")
        for revision, seconds in rehearsal.get("migration_durations", {}).items():
            out(f"  {revision}: {seconds:.3f}s")
        locks = rehearsal.get("exclusive_lock_s") or {}
        if locks:
            out("  longest ACCESS EXCLUSIVE hold per table:")
            for table, seconds in sorted(locks.items(), key=lambda kv: -kv[1]):
                out(f"    {table}: {seconds:.3f}s")
        if rehearsal.get("irreversible"):
            out("  reverse check FAILED:")
            for line in rehearsal["irreversible"]:
                out(f"    {line}")
        elif rehearsal.get("status") == "applied":
            out(f"  reverse check: {rehearsal.get('reverse_checked_tables', 0)} tables identical after migrating back")
