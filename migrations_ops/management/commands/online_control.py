"""online_control {pause,continue,limit} [--rows-per-second N] [--batch-pause DURATION] [--clear]
[--reason TEXT] [--json]: Pause, continue or rate-limit the online run running on this database, from
any shell or host (through the database); it takes effect before the run's next batch, and is
recorded in the audit log with who made it. ``migration_status`` shows the run's progress.
"""

from __future__ import annotations

from migrations_ops.api import online_control
from migrations_ops.management.base import OpsCommand
from migrations_ops.online.control import ACTIONS


class Command(OpsCommand):
    def add_arguments(self, parser):
        parser.add_argument("action", choices=ACTIONS, help="pause, continue, or limit the running online run")
        parser.add_argument("--rows-per-second", type=float, help="limit: at most this many changed rows per second")
        parser.add_argument("--batch-pause", help="limit: a pause between batches, e.g. 200ms, 1s")
        parser.add_argument("--clear", action="store_true", help="limit: remove the limits set so far")
        parser.add_argument("--reason", default="", help="why (kept in the audit log and shown by migration_status)")

    def handle(self, *args, **options):
        control = online_control(
            self.using,
            options["action"],
            rows_per_second=options["rows_per_second"],
            batch_pause=options["batch_pause"],
            clear=options["clear"],
            reason=options["reason"],
        )
        if self._json:
            self.print_json(control)
            return
        shown = ", ".join(f"{key}={value}" for key, value in sorted(control.items()) if value not in (None, ""))
        self.info(f"{options['action']}: done; the run applies it before its next batch ({shown})")
