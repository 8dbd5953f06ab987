"""Entry point behind manage.py.

`--database-url` must take effect before Django reads its settings, so it is lifted out of argv
here and exported as DATABASE_URL; the commands still declare the option so that `--help` shows it.
Configuration errors become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import os
import sys

EXIT_BAD_INPUT = 2


def apply_database_url_override(argv: list[str]) -> list[str]:
    """Export the value of ``--database-url`` (if any) as DATABASE_URL; argv is returned unchanged."""
    for index, arg in enumerate(argv):
        if arg == "--database-url":
            if index + 1 >= len(argv):
                return argv  # argparse reports the missing value
            os.environ["DATABASE_URL"] = argv[index + 1]
        elif arg.startswith("--database-url="):
            os.environ["DATABASE_URL"] = arg.split("=", 1)[1]
    return argv


def run(argv: list[str]) -> int:
    """Run a management command line; return the process exit code."""
    from django.core.exceptions import ImproperlyConfigured

    apply_database_url_override(argv)
    try:
        from django.core.management import execute_from_command_line

        execute_from_command_line(argv)
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    return 0
