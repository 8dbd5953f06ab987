"""Exit codes of the operator contract and the exceptions that carry them.

Every error a migrations_ops operation raises is an :class:`OpsError` whose ``exit_code`` is the
contract's; commands turn it into one line on stderr. Messages pass through :func:`scrub` so that
no password ever reaches a terminal, a log or a JSON document.
"""

from __future__ import annotations

import re
from enum import IntEnum

from django.core.management.base import CommandError

from config.database import redact_url, url_secrets


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
_KEYWORD_PASSWORD = re.compile(r"(?i)(?P<head>\bpassword\s*=\s*)(?P<pw>'[^']*'|\"[^\"]*\"|\S+)")


def known_passwords() -> list[str]:
    """Secrets of every configured database, to be removed from any text we emit: the passwords,
    and whatever could be one in the configured URL and in each database's name, user and host
    (a mistyped URL such as ``postgres:///u:pw@host/db`` makes the password part of the name, and
    the driver then quotes it)."""
    import os

    from django.conf import settings
    from django.db import connections

    configs = [*settings.DATABASES.values(), *connections.settings.values()]
    secrets = {cfg.get("PASSWORD") for cfg in configs}
    texts = [getattr(settings, "DATABASE_URL", ""), os.environ.get("DATABASE_URL", "")]
    texts += [str(cfg.get(key) or "") for cfg in configs for key in ("NAME", "USER", "HOST")]
    for text in texts:
        secrets.update(url_secrets(text))
    return sorted((s for s in secrets if s), key=len, reverse=True)


def scrub(text: str, extra_secrets: list[str] | None = None) -> str:
    """Remove passwords from ``text``: anything that could be one in a URL-like run (parsed or not),
    ``password=...`` pairs, and the configured databases' secrets."""
    if not text:
        return text
    text = _AT_TOKEN.sub(lambda m: m.group("lead") + redact_url(m.group("url")), text)
    text = _KEYWORD_PASSWORD.sub(lambda m: m.group("head") + "***", text)
    try:
        secrets = known_passwords()
    except Exception:  # settings not configured yet: the patterns above still apply
        secrets = []
    for secret in [*(extra_secrets or []), *secrets]:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text
