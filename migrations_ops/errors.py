"""Exit codes of the operator contract and the exceptions that carry them.

Every error a migrations_ops operation raises is an :class:`OpsError` whose ``exit_code`` is the
contract's; commands turn it into one line on stderr. Messages pass through :func:`scrub` so that
no password ever reaches a terminal, a log or a JSON document.
"""

from __future__ import annotations

import os
import re
from enum import IntEnum

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connections

from migrations_ops.database_url import MASK, redact_url, url_secrets


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


# A run of text holding an '@' (a URL, or a driver quoting a database name made of one): masked as a
# URL. Quotes may be part of a password, so only the run's leading punctuation is set aside.
_AT_TOKEN = re.compile(r"(?P<lead>['\"(<\[]*)(?P<url>[^\s]*@[^\s'\")>]*)")
# A name a driver quotes ("database \"u:pw\" does not exist"): a URL cut short at '?' or '#' leaves no '@'.
_QUOTED = re.compile(r'"(?P<inner>[^"\n]*)"')
_QUOTED_SPAN = re.compile(r'"[^\n]*"')
# libpq's connection-string errors quote pieces of the string ("invalid connection option", "missing
# \"=\" after"): a '?' inside a password makes those pieces the password's.
_DSN_ERROR = re.compile(r"invalid dsn|connection option|connection info string", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(?i)(?P<head>\bpassword\s*=\s*)(?P<pw>'[^']*'|\"[^\"]*\"|\S+)")


def known_passwords() -> list[str]:
    """Secrets of every configured database, to be removed from any text we emit: the passwords,
    and whatever could be one in the configured URL and in each database's name, user and host
    (a mistyped URL such as ``postgres:///u:pw@host/db`` makes the password part of the name, and
    the driver then quotes it)."""
    configs = [*settings.DATABASES.values(), *connections.settings.values()]
    secrets = {cfg.get("PASSWORD") for cfg in configs}
    for url in (getattr(settings, "DATABASE_URL", ""), os.environ.get("DATABASE_URL", "")):
        secrets.update(url_secrets(url))
    for text in (str(cfg.get(key) or "") for cfg in configs for key in ("NAME", "USER", "HOST")):
        # A field that holds part of a URL ends wherever a '?' or '#' cut it: all of its tail could be secret.
        secrets.update(text[text.index(secret) :] for secret in url_secrets(text))
    return sorted((s for s in secrets if s), key=len, reverse=True)


def _mask_quoted(name: str) -> str:
    """A name a driver quotes, masked from where a password could start to its end: made from a mistyped
    URL it may hold the rest of the password after a '/', '@', '?' or '#' too, with no way to tell."""
    masked = redact_url(name)
    return masked if masked == name else masked[: masked.index(MASK) + len(MASK)]


def scrub(text: str, extra_secrets: list[str] | None = None) -> str:
    """Remove passwords from ``text``: the configured databases' secrets first (exactly as configured,
    before any pattern reshapes the text), then anything that could be one in a quoted name or a
    URL-like run (parsed or not), and ``password=...`` pairs."""
    if not text:
        return text
    try:
        secrets = known_passwords()
    except Exception:  # settings not configured yet: the patterns below still apply
        secrets = []
    for secret in sorted({*(extra_secrets or []), *secrets}, key=len, reverse=True):
        if secret and len(secret) >= 3:
            text = text.replace(secret, MASK)
    if _DSN_ERROR.search(text):
        # From a line's first quote to its last: a '"' inside the password splits libpq's quoted piece
        # ('invalid connection option ""<rest of the password>"'), and each half must go.
        text = _QUOTED_SPAN.sub(f'"{MASK}"', text)
    text = _QUOTED.sub(lambda m: '"' + _mask_quoted(m.group("inner")) + '"', text)
    text = _AT_TOKEN.sub(lambda m: m.group("lead") + redact_url(m.group("url")), text)
    return _KEYWORD_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
