"""migration_status [--check] [--history] [--json]: Show the current migration per app, the pending
ones and conflicting migrations (several leaves in one app), and an open expand/contract window of
``safe_migrate --online`` (which migrations, what --complete will do, since when), and a running or
killed online run with its progress (online_control pauses and limits it); --check exits 1
when any migration is pending or conflicting (an open window is shown, not an error: it is how a
deploy looks between its two halves).
"""

from __future__ import annotations

from migrations_ops.errors import OperationFailed
from migrations_ops.management.base import OpsCommand
from migrations_ops.online import control
from migrations_ops.online.checkpoint import open_window, window_lines, window_summary
from migrations_ops.status import describe_conflicts, migration_status, render_status


class Command(OpsCommand):
    def add_arguments(self, parser):
        parser.add_argument(
            "--check", action="store_true", help="exit with status 1 when migrations are pending or conflicting"
        )
        parser.add_argument("--history", action="store_true", help="also list applied migrations with their time")

    def handle(self, *args, **options):
        status = migration_status(self.using, history=options["history"])
        window = open_window(self.using)
        status["window"] = window_summary(window) if window else None
        running = control.status(self.using)
        status["online_run"] = running
        if self._json:
            self.print_json(status)
        else:
            self.info(render_status(status))
            if window:
                self.info("\n".join(window_lines(window)))
            if running:
                self.info("\n".join(control.status_lines(running)))
        if not options["check"]:
            return
        problems = [describe_conflicts(status["conflicts"])] if status["conflicts"] else []
        if status["pending"]:
            revisions = ", ".join(entry["revision"] for entry in status["pending"])
            problems.append(f"{status['pending_count']} migration(s) pending: {revisions}")
        if problems:
            raise OperationFailed("; ".join(problems))
