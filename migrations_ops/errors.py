"""Exit codes of the operator contract and the exceptions that carry them.

Every error a migrations_ops operation raises is an :class:`OpsError` whose ``exit_code`` is the
contract's; commands turn it into one line on stderr. Messages pass through :func:`scrub` so that
no password ever reaches a terminal, a log or a JSON document.
"""

from __future__ import annotations

import re
from enum import IntEnum

from django.core.management.base import CommandError


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # failed or found problems; the database is as it was
    BAD_INPUT = 2  # bad input or unmet precondition; nothing was changed
    LOCKED = 3  # another safe_migrate / restore_db holds the migration lock
    RECOVERY_FAILED = 4  # recovery itself failed: restore by hand from the named backup


class OpsError(CommandError):
    """An operation failed in a way the operator must hear about, with the contract's exit code."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        message = scrub(message)
        super().__init__(message, returncode=int(self.exit_code))
        self.message = message
        self.detail = scrub(detail) if detail else None


class OperationFailed(OpsError):
    exit_code = ExitCode.FAILED


class BadInput(OpsError):
    exit_code = ExitCode.BAD_INPUT


class LockHeld(OpsError):
    exit_code = ExitCode.LOCKED


class RecoveryFailed(OpsError):
    exit_code = ExitCode.RECOVERY_FAILED


def first_line(exc: BaseException | str, default: str | None = None, limit: int = 500) -> str:
    """The first line of an exception's message (or of a text), cut at ``limit`` characters.

    Errors from drivers and tools run over many lines; the operator gets the first, scrubbed.
    ``default`` stands in for an empty message (else the exception's class name).
    """
    text = str(exc).strip()
    if not text:
        text = default or (exc.__class__.__name__ if isinstance(exc, BaseException) else "")
    line = text.splitlines()[0] if text else ""
    return scrub(line if len(line) <= limit else line[: limit - 3] + "...")


_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s?#]*:)(?P<pw>[^@\s/?#]+)(?=@)")
_KEYWORD_PASSWORD = re.compile(r"(?i)(?P<head>\bpassword\s*=\s*)(?P<pw>'[^']*'|\"[^\"]*\"|\S+)")


def known_passwords() -> list[str]:
    """Passwords of every configured database (to be scrubbed from any text we emit)."""
    from django.conf import settings
    from django.db import connections

    secrets = {cfg.get("PASSWORD") for cfg in settings.DATABASES.values()}
    secrets |= {cfg.get("PASSWORD") for cfg in connections.settings.values()}
    return sorted((s for s in secrets if s), key=len, reverse=True)


def scrub(text: str, extra_secrets: list[str] | None = None) -> str:
    """Remove passwords from ``text``: URL passwords, ``password=...`` pairs, and known secrets."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + "***", text)
    text = _KEYWORD_PASSWORD.sub(lambda m: m.group("head") + "***", text)
    try:
        secrets = known_passwords()
    except Exception:  # settings not configured yet: the regexes above still apply
        secrets = []
    for secret in [*(extra_secrets or []), *secrets]:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text
