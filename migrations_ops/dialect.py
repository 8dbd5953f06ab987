"""The one place that picks a per-database-vendor implementation.

Code outside the migration engines that must spell something differently per engine keeps a mapping
``{vendor: implementation}`` and asks :func:`for_vendor` for the connection's entry, so an
unsupported engine always fails the same way, naming what is missing and what is supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")
_NO_DEFAULT: Any = object()


class UnsupportedVendor(NotImplementedError):
    """The database engine has no implementation of a feature."""


def for_vendor(implementations: Mapping[str, T], connection: Any, *, feature: str, default: T = _NO_DEFAULT) -> T:
    """The implementation for `connection`'s vendor (a Django connection or a vendor name).

    Without `default`, a vendor missing from `implementations` raises UnsupportedVendor; with it,
    that vendor gets `default` (e.g. a no-op for PostgreSQL-only DDL).
    """
    vendor = connection if isinstance(connection, str) else connection.vendor
    try:
        return implementations[vendor]
    except KeyError:
        if default is not _NO_DEFAULT:
            return default
        supported = ", ".join(sorted(implementations)) or "none"
        raise UnsupportedVendor(f"{feature} is not implemented for {vendor} (supported: {supported})") from None
