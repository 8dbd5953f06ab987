"""The base of every migrations_ops command: common options, JSON output and exit codes.

Commands stay thin (parse, call one operation, print); the work lives in plain modules.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import ConnectionDoesNotExist, OperationalError

from migrations_ops import interrupts
from migrations_ops.database_url import parse_database_url
from migrations_ops.errors import BadInput, ExitCode, OpsError, first_line, scrub


def use_database_url(url: str) -> None:
    """Point the ``default`` alias of this process at ``url``, before any query.

    What a project's manage.py may do before its settings load (this project's config/cli.py
    exports DATABASE_URL, so the option reaches no command there); in a project whose manage.py has
    no such hook, the command applies it itself. DATABASE_URL is exported too, for child processes
    whose settings read it and for the scrubbing of its password from any message.
    """
    try:
        configured = connections.configure_settings({DEFAULT_DB_ALIAS: parse_database_url(url)})
    except ImproperlyConfigured as exc:
        raise BadInput(f"--database-url: {exc}") from None
    if hasattr(connections._connections, DEFAULT_DB_ALIAS):  # a connection made before: drop it
        connections[DEFAULT_DB_ALIAS].close()
        del connections[DEFAULT_DB_ALIAS]
    connections.settings[DEFAULT_DB_ALIAS] = configured[DEFAULT_DB_ALIAS]
    os.environ["DATABASE_URL"] = url


class OpsCommand(BaseCommand):
    """Adds `--database-url` (the ``default`` database for this run: :func:`use_database_url`) and `--json`."""

    json_output = True  # whether the command supports --json

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # The command module's docstring is its --help text: said once, in the file that does it.
        if not cls.__dict__.get("help"):
            doc = sys.modules[cls.__module__].__doc__ or ""
            cls.help = " ".join(doc.split(":", 1)[-1].split())

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.add_argument(
            "--database-url",
            metavar="URL",
            help="database to operate on (overrides DATABASE_URL for this run)",
        )
        if self.json_output:
            parser.add_argument(
                "--json", action="store_true", help="print one JSON document on stdout and nothing else there"
            )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            default=True,
            help="never prompt (for scripts and deploys)",
        )
        return parser

    @property
    def using(self) -> str:
        return DEFAULT_DB_ALIAS

    def print_json(self, document: Any) -> None:
        self.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str))

    def info(self, message: str, level: int = 1) -> None:
        """Human output, suppressed with --json and below the given verbosity."""
        if not self._json and self._verbosity >= level:
            self.stdout.write(message)

    def execute(self, *args, **options):
        self._json = bool(options.get("json"))
        self._verbosity = int(options.get("verbosity", 1))
        if options.get("database_url"):  # before the system checks and the command's first query
            use_database_url(options["database_url"])
        try:
            # SIGINT/SIGTERM from the first database call to the exit: a prompt, clean end (interrupts.py).
            # From the command line the process exits right after: the outcome stands (see interrupts.py).
            with interrupts.handling_interrupts(then_ignore=self._called_from_command_line):
                return super().execute(*args, **options)
        except ConnectionDoesNotExist as exc:  # `--database ALIAS` of the domain's commands
            raise BadInput(f"unknown database alias: {exc}") from None
        except OperationalError as exc:
            # Connecting failed (or the server went away): a precondition, not a half-done change.
            raise BadInput(f"database unreachable: {first_line(exc)}") from exc

    def run_from_argv(self, argv):
        """Like Django's, but every error is one scrubbed line and the contract's exit code."""
        self._called_from_command_line = True
        parser = self.create_parser(argv[0], argv[1])
        # argparse's own refusals (an unknown option, `--keep x`) too: one `error:` line and exit 2,
        # not its usage over several lines (`--help` for that).
        parser.error = lambda message: self._fail(f"{message} (see `manage.py {argv[1]} --help`)", ExitCode.BAD_INPUT)
        options = parser.parse_args(argv[2:])
        cmd_options = vars(options)
        args = cmd_options.pop("args", ())
        verbosity = int(cmd_options.get("verbosity", 1))
        try:
            self.execute(*args, **cmd_options)
        except OpsError as exc:
            self._fail(exc.message, exc.exit_code, exc.detail if verbosity >= 2 else None)
        except CommandError as exc:
            self._fail(str(exc), ExitCode.BAD_INPUT if exc.returncode == 1 else exc.returncode)
        except KeyboardInterrupt:
            self._fail("interrupted", ExitCode.FAILED)
        except interrupts.Interrupted as exc:
            self._fail(f"interrupted by {exc}", ExitCode.FAILED)
        except Exception as exc:  # the last line of defence: one line, never a traceback by default
            detail = traceback.format_exc() if verbosity >= 2 else None
            self._fail(f"{exc.__class__.__name__}: {exc}", ExitCode.FAILED, detail)

    def _fail(self, message: str, code: int, detail: str | None = None) -> None:
        # One line whatever the message quotes (a name typed with a newline or a NUL in it).
        sys.stderr.write(f"error: {_one_line(scrub(message))}\n")
        if detail:
            sys.stderr.write(scrub(detail).rstrip() + "\n")
        sys.stderr.flush()
        sys.exit(int(code))


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")


def _one_line(text: str) -> str:
    """``text`` with every control character (line breaks, NUL, ...) written as its escape."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)
