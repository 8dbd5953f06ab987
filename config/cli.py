"""Entry point behind manage.py.

`--database-url` must take effect before Django reads its settings, so it is lifted out of argv
here and exported as DATABASE_URL: every command accepts it, Django's own included, and the URL gets
the settings' own treatment (SQLite's IMMEDIATE transactions and timeout). The migrations_ops
commands declare it too: in a project whose manage.py has no such hook they apply it themselves
(migrations_ops.management.base.use_database_url); here they never see it.
Configuration errors become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import os
import sys

EXIT_BAD_INPUT = 2


def apply_database_url_override(argv: list[str]) -> list[str]:
    """Export the value of ``--database-url`` (if any) as DATABASE_URL and return argv without it,
    so that every command (Django's own included) accepts the option."""
    remaining: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--database-url" and index + 1 < len(argv):
            os.environ["DATABASE_URL"] = argv[index + 1]
            index += 2
            continue
        if arg.startswith("--database-url="):
            os.environ["DATABASE_URL"] = arg.split("=", 1)[1]
        else:
            remaining.append(arg)
        index += 1
    return remaining


def run(argv: list[str]) -> int:
    """Run a management command line; return the process exit code."""
    from django.core.exceptions import ImproperlyConfigured

    argv = apply_database_url_override(argv)
    try:
        from django.core.management import execute_from_command_line

        execute_from_command_line(argv)
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    return 0
