"""Parsing of DATABASE_URL values: one place that knows which engines the project supports.

Errors never echo the password: every message goes through :func:`redact_url`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

SUPPORTED_SCHEMES = {
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "pgsql": "postgresql",
    "sqlite": "sqlite",
}

_PASSWORD_IN_URL = re.compile(r"(?P<head>^[A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*:)(?P<password>[^@/?#]*)(?=@)")


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe for logs and errors)."""
    return _PASSWORD_IN_URL.sub(lambda m: m.group("head") + "***", url)


def parse_database_url(url: str) -> dict:
    """Turn a dj-database-url style URL into a Django ``DATABASES`` entry.

    Raises ImproperlyConfigured with a one-line, password-free message for anything we cannot use.
    """
    url = (url or "").strip()
    if "://" not in url:
        raise ImproperlyConfigured(
            f"malformed database URL {redact_url(url)!r}: expected postgres://user@host:port/name "
            "or sqlite:///path/to/file.sqlite3"
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise ImproperlyConfigured(
            f"unsupported database engine {scheme!r} in {redact_url(url)!r}: "
            "this project supports PostgreSQL (postgres://) and SQLite (sqlite://)"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a non-numeric port
        config = dj_database_url.parse(url, conn_max_age=0)
    except ValueError as exc:
        raise ImproperlyConfigured(f"malformed database URL {redact_url(url)!r}: {exc}") from None
    if SUPPORTED_SCHEMES[scheme] == "postgresql" and not config.get("NAME"):
        raise ImproperlyConfigured(f"malformed database URL {redact_url(url)!r}: no database name")
    if SUPPORTED_SCHEMES[scheme] == "sqlite" and config.get("NAME") in ("", None):
        raise ImproperlyConfigured(f"malformed database URL {redact_url(url)!r}: no file path")
    return config
