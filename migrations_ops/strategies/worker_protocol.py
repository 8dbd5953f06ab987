"""What the rehearsal's child process (copy_worker.py) writes on stdout for the live side to read:
``@@say <text>`` lines to relay, one ``@@result <json>`` line at the end (stdlib only: the child
imports it before Django is set up)."""

SAY = "@@say "
RESULT = "@@result "
