"""Parsing of DATABASE_URL values: one place that knows which engines migrations_ops supports.

Errors never echo a password: every URL in a message goes through :func:`redact_url`, which masks
whatever could be one whether or not the URL parses (an operator's typo is the likeliest URL to be
echoed), and :func:`url_secrets` gives the same parts to the scrubber of driver messages.
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

MASK = "***"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*$")


def _secret_span(url: str) -> tuple[int, int] | None:
    """Where a password could be in ``url``, parsed or not: (start, end), or None.

    The scheme's ':' is skipped when a '/' follows it (``postgres:/``, ``postgres://``). With an
    '@': everything from the next ':' to the LAST '@' (passwords may hold ':', '/', '@'; a typo may
    drop the '//' or the scheme). Without one: a ':' followed by something that is not a port, up to
    the next '/' (a forgotten '@'); IPv6 hosts in brackets are left alone.
    """
    at = url.rfind("@")
    index = url.find(":")
    if index > 0 and url[index + 1 : index + 2] == "/" and _SCHEME.match(url[:index]):
        index = url.find(":", index + 1)
    if at >= 0:
        return (index + 1, at) if 0 <= index < at else None
    while index >= 0:
        end = url.find("/", index + 1)
        segment = url[index + 1 : end if end >= 0 else len(url)]
        if "]" not in segment:  # not a ':' inside an IPv6 address
            return None if segment.isdigit() or not segment else (index + 1, index + 1 + len(segment))
        index = url.find(":", index + 1)
    return None


def url_secrets(url: str) -> list[str]:
    """The substrings of ``url`` that :func:`redact_url` masks (for scrubbing what drivers echo)."""
    span = _secret_span(url or "")
    return [url[span[0] : span[1]]] if span and span[1] > span[0] else []


def redact_url(url: str) -> str:
    """Return ``url`` with anything that could be a password replaced by ``***`` (logs and errors)."""
    span = _secret_span(url or "")
    if not span or span[1] == span[0]:
        return url
    return url[: span[0]] + MASK + url[span[1] :]


def parse_database_url(url: str) -> dict:
    """Turn a dj-database-url style URL into a Django ``DATABASES`` entry.

    Raises ImproperlyConfigured with a one-line, password-free message for anything we cannot use
    (the parser's own messages are not passed on: they quote parts of the URL, a port that is
    really a password among them).
    """
    url = (url or "").strip()
    shown = redact_url(url)
    if "://" not in url:
        raise ImproperlyConfigured(
            f"malformed database URL {shown!r}: expected postgres://user@host:port/name "
            "or sqlite:///path/to/file.sqlite3"
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise ImproperlyConfigured(
            f"unsupported database engine {scheme!r} in {shown!r}: "
            "this project supports PostgreSQL (postgres://) and SQLite (sqlite://)"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a non-numeric port
        config = dj_database_url.parse(url, conn_max_age=0)
    except ValueError:
        raise ImproperlyConfigured(
            f"malformed database URL {shown!r}: the port is not a number, or a character of the "
            "password needs percent-encoding ('@' is %40, '/' is %2F, ':' is %3A)"
        ) from None
    if SUPPORTED_SCHEMES[scheme] == "postgresql" and not config.get("NAME"):
        raise ImproperlyConfigured(f"malformed database URL {shown!r}: no database name")
    if SUPPORTED_SCHEMES[scheme] == "sqlite" and config.get("NAME") in ("", None):
        raise ImproperlyConfigured(f"malformed database URL {shown!r}: no file path")
    return config
