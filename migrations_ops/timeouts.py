"""Durations the operator configures ('5s', '500ms', '2min'), parsed in one place."""

from __future__ import annotations

import re

from django.conf import settings

from migrations_ops.errors import BadInput

_UNITS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}


def parse_duration(value: str | int | float) -> float:
    """'5s', '500ms', '2min', '3' (seconds) -> seconds; ValueError for anything else."""
    if isinstance(value, int | float):
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h)?\s*", str(value))
    if not match:
        raise ValueError(f"invalid timeout {value!r}: expected e.g. 5s, 500ms, 2min")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def setting_seconds(name: str) -> float:
    """A duration setting in seconds; a malformed one is bad input (exit 2), not a crash."""
    try:
        return parse_duration(getattr(settings, name))
    except ValueError as exc:
        raise BadInput(f"{name}: {exc}") from None


def lock_timeout() -> float:
    """MIGRATION_LOCK_TIMEOUT in seconds."""
    return setting_seconds("MIGRATION_LOCK_TIMEOUT")
