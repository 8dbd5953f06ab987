"""serve [--bind ADDRESS] [--workers N]: Start the application under gunicorn, after collectstatic and
safe_migrate --noinput; when safe_migrate fails the server is not started and the exit code is its own.
"""

from __future__ import annotations

import os

from migrations_ops import serving
from migrations_ops.management.base import OpsCommand


class Command(OpsCommand):
    json_output = False  # it becomes the server: there is no document to print

    def add_arguments(self, parser):
        parser.add_argument(
            "--bind",
            default=serving.DEFAULT_BIND,
            metavar="ADDRESS",
            help=f"where gunicorn listens: HOST:PORT or unix:PATH (default {serving.DEFAULT_BIND})",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=os.environ.get("WEB_CONCURRENCY", str(serving.DEFAULT_WORKERS)),  # argparse applies type
            help=f"gunicorn worker processes (default: WEB_CONCURRENCY, else {serving.DEFAULT_WORKERS})",
        )

    def handle(self, *args, **options):
        serve = serving.ServeOptions(bind=options["bind"], workers=options["workers"])
        serving.check_can_serve(serve)
        serving.collect_static()
        summary = serving.migrate_to_head(self.using, report=lambda line: self.info(line))
        self.info(summary.render())
        if summary.exit_code:
            self._fail(f"not starting the server: {summary.error or summary.status}", summary.exit_code)
        self.info(f"Starting gunicorn on {serve.bind} ({serve.workers} worker(s))")
        serving.exec_server(serving.gunicorn_argv(serve))
