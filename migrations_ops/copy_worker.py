"""The process that migrates a rehearsal's scratch copy: ``python -m migrations_ops.copy_worker``.

A rehearsal must be unable to reach the live database. Migrating the copy through a second
connection alias of the live process is not enough: a data migration that uses the default
manager instead of ``.using(schema_editor.connection.alias)`` (common in third-party apps) writes
to whatever ``default`` is. So the copy is migrated here, in a process whose settings are the
parent's with ``DATABASES = {"default": <the copy>}``: the live database is not configured at all.

Protocol: one JSON document on stdin (settings module, setting overrides, ``sys.path``, the
options); lines ``@@say <text>`` on stdout to relay, one ``@@result <json>`` line at the end.
Anything else on stdout (a migration's print) is relayed as it is.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from migrations_ops.strategies.worker_protocol import RESULT, SAY


def configure(request: dict[str, Any]) -> None:
    """Load the parent's settings module with its overrides (the copy as the only database)."""
    sys.path[:] = request["sys_path"]
    os.environ["DJANGO_SETTINGS_MODULE"] = request["settings_module"]
    from django.conf import settings

    for name, value in request["overrides"].items():
        setattr(settings, name, value)  # before django.setup(): no connection exists yet
    import django

    django.setup()


def main() -> int:
    request = json.loads(sys.stdin.read())
    configure(request)
    # Only now, with the copy as the only database, may Django's models be imported.
    from migrations_ops.strategies.rehearsal_copy import rehearse_copy

    def say(line: str) -> None:
        sys.stdout.write(SAY + line.strip().replace("\n", " ") + "\n")
        sys.stdout.flush()

    findings = rehearse_copy(request["options"], say)
    sys.stdout.write(RESULT + json.dumps(findings, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
