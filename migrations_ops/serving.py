"""Start the application safely: static files, then `safe_migrate`, then gunicorn in this process.

The runbook's "auto-migration on start" without its danger: the server starts only on a database that
`safe_migrate` (backup, migrate, validate, roll back or restore on failure) brought to the head. When
it fails, the caller exits with its code (1 rolled back, 3 lock held, 4 recovery failed, ...) and no
server ever listens, so a load balancer keeps sending traffic to the previous release.

Static files are collected first: that touches no database, so a failure there (an unwritable
STATIC_ROOT) leaves the database as it was and nothing is migrated for a release that cannot start.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import NoReturn

from django.conf import settings
from django.core.management import call_command
from django.db import connections

from migrations_ops.api import safe_migrate
from migrations_ops.errors import BadInput, first_line
from migrations_ops.options import SafeMigrateOptions
from migrations_ops.pipeline import MigrationSummary, Reporter

DEFAULT_BIND = "127.0.0.1:8000"
DEFAULT_WORKERS = 2


@dataclass(frozen=True)
class ServeOptions:
    bind: str = DEFAULT_BIND
    workers: int = DEFAULT_WORKERS


def check_can_serve(options: ServeOptions) -> None:
    """Refuse (exit 2, nothing changed) what would only fail after migrating."""
    if options.workers < 1:
        raise BadInput(f"--workers must be at least 1 (got {options.workers})")
    if not options.bind.strip():
        raise BadInput("--bind needs an address (HOST:PORT, unix:PATH)")
    if importlib.util.find_spec("gunicorn") is None:
        raise BadInput("gunicorn is not installed in this environment (pip install -r requirements.txt)")


def collect_static() -> None:
    """`collectstatic --noinput`, quietly, into STATIC_ROOT (what WhiteNoise serves in production)."""
    try:
        call_command("collectstatic", interactive=False, verbosity=0)
    except Exception as exc:  # any failure here is an unmet precondition of starting: exit 2
        raise BadInput(f"collectstatic failed, nothing was migrated: {first_line(exc)}") from exc


def migrate_to_head(using: str, report: Reporter | None = None) -> MigrationSummary:
    """`safe_migrate --noinput` to the head: never prompts, never raises for a failed run."""
    return safe_migrate(using, SafeMigrateOptions(), report=report, confirm=None)


def wsgi_target() -> str:
    """WSGI_APPLICATION (`config.wsgi.application`) as gunicorn spells it (`config.wsgi:application`)."""
    module, _, name = settings.WSGI_APPLICATION.rpartition(".")
    return f"{module}:{name}"


def gunicorn_argv(options: ServeOptions) -> list[str]:
    """gunicorn of this interpreter's environment (the venv's), logging requests to stdout.
    GUNICORN_CMD_ARGS adds any other gunicorn setting (timeouts, TLS, ...)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        wsgi_target(),
        "--bind",
        options.bind,
        "--workers",
        str(options.workers),
        "--access-logfile",
        "-",
    ]


def exec_server(argv: list[str]) -> NoReturn:
    """Replace this process with the server: same pid, so a supervisor's signals reach gunicorn."""
    connections.close_all()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
