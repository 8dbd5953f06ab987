"""Run the registered integrity checks against one database and build the report.

``run_validation(using, deep)`` is called by ``validate_db``, after a restore, and by safe_migrate
before and after migrating, possibly inside its open transaction on the same connection: every
check runs in a savepoint on the caller's connection, never commits and opens no connection.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction

from migrations_ops import checks
from migrations_ops.checks import Check, CheckResult, SkipCheck
from migrations_ops.engines import get_engine


@dataclass
class ValidationReport:
    using: str
    vendor: str
    deep: bool
    checks: list[CheckResult] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.checks)

    def failures(self) -> list[CheckResult]:
        return [result for result in self.checks if not result.ok]

    def warnings(self) -> list[str]:
        """Each passed check's warnings, as ``check: text`` (what validate_db prints as ``warning:``)."""
        return [
            f"{result.name}: {text}"
            for result in self.checks
            if result.ok
            for text in result.details.get("warnings", [])
        ]

    def to_dict(self) -> dict[str, Any]:
        """The contract's shape: ``{"ok", "checks": [{"name", "ok", "details"}], "tables"}`` (plus extras)."""
        return {
            "ok": self.ok,
            "checks": [result.to_dict() for result in self.checks],
            "tables": dict(self.tables),
            "deep": self.deep,
            "duration_s": round(self.duration_s, 6),
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any], using: str = DEFAULT_DB_ALIAS) -> ValidationReport:
        """The inverse of :meth:`to_dict` (a report sent across a process boundary)."""
        vendor = document.get("vendor", "")
        report = cls(using=using, vendor=vendor, deep=bool(document.get("deep")), tables=dict(document["tables"]))
        report.duration_s = float(document.get("duration_s", 0.0))
        for check in document["checks"]:
            report.checks.append(
                CheckResult(
                    name=check["name"],
                    ok=check["ok"],
                    details=check["details"],
                    duration_s=check.get("duration_s", 0.0),
                    skipped=bool(check.get("skipped")),
                    reason=check.get("reason"),
                )
            )
        return report

    def render(self) -> str:
        """Human output: one line per check (✓, ✗ or -, duration), details under failures and notes."""
        lines = []
        for result in self.checks:
            mark = "-" if result.skipped else ("✓" if result.ok else "✗")
            line = f"{mark} {result.name} ({result.duration_s * 1000:.0f} ms)"
            if result.skipped:
                line += f" skipped: {result.reason}"
            lines.append(line)
            if not result.ok:
                lines.extend(f"    {text}" for text in _detail_lines(result.details))
            else:
                lines.extend(f"    warning: {text}" for text in result.details.get("warnings", []))
                if result.details.get("note"):
                    lines.append(f"    note: {result.details['note']}")
        total_rows = sum(self.tables.values())
        failures = self.failures()
        verdict = "OK" if not failures else f"FAILED: {len(failures)} of {len(self.checks)} checks"
        lines.append(
            f"{verdict} ({len(self.tables)} tables, {total_rows} rows, {self.duration_s:.2f} s, "
            f"{'deep' if self.deep else 'quick'})"
        )
        return "\n".join(lines)


def _detail_lines(details: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in details.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{key}:")
            for item in value:
                lines.append("  - " + ", ".join(f"{k}={v}" for k, v in item.items()))
        else:
            lines.append(f"{key}: {value}")
    return lines


def load_checks() -> None:
    """Make sure the core and Django-level checks are registered (apps register theirs in ready())."""
    from migrations_ops import core_checks, django_checks  # noqa: F401


def run_validation(
    using: str = DEFAULT_DB_ALIAS,
    deep: bool = False,
    *,
    only: Iterable[str] | None = None,
    just_restored: bool = False,
    count_rows: bool = True,
) -> ValidationReport:
    """Run every check registered for this database's vendor (``deep``: the deep ones too).

    ``only`` limits the run to the named checks. Row counts of every table fill ``tables`` (not with
    ``count_rows`` False: counting reads every table, however little the plan touched).
    ``just_restored``: the database was just replaced by a single-transaction restore, so checks
    skip what the server proved inside it (foreign keys it created validated) and say so.
    """
    token = checks.JUST_RESTORED.set(just_restored)
    try:
        return _run_validation(using, deep, only, count_rows)
    finally:
        checks.JUST_RESTORED.reset(token)


def _run_validation(using: str, deep: bool, only: Iterable[str] | None, count_rows: bool = True) -> ValidationReport:
    load_checks()
    connection = connections[using]
    connection.ensure_connection()  # unreachable: OperationalError for the caller, not N failed checks
    started = time.perf_counter()
    report = ValidationReport(using=using, vendor=connection.vendor, deep=deep)
    selected = checks.registered_checks(connection.vendor, deep=deep, names=only)
    schema = _Schema(connection) if any(check.requires for check in selected) else None
    for check in selected:
        report.checks.append(_run_one(check, connection, schema))
    if count_rows:
        report.tables = get_engine(using).row_counts()
    report.duration_s = time.perf_counter() - started
    return report


def _run_one(check: Check, connection, schema: _Schema | None) -> CheckResult:
    started = time.perf_counter()
    try:
        missing = schema.missing(check.requires) if schema and check.requires else None
        if missing:
            result = checks.skipped(f"{missing} not present (migrations pending?)")
        else:
            with transaction.atomic(using=connection.alias):
                outcome = check.function(connection)
            result = _as_result(outcome)
    except SkipCheck as exc:
        result = checks.skipped(exc.reason)
    except DatabaseError as exc:
        if get_engine(connection.alias).cannot_continue(exc):
            raise  # blocked, cancelled or disconnected: no finding about the data, and no next wait
        result = checks.failed({"error": f"{exc.__class__.__name__}: {str(exc).strip()}"})
    result.name = check.name
    result.duration_s = time.perf_counter() - started
    return result


def _as_result(outcome: CheckResult | dict[str, Any] | None) -> CheckResult:
    if isinstance(outcome, CheckResult):
        return outcome
    if outcome is None:
        return checks.passed()
    if isinstance(outcome, dict):
        return CheckResult(name="", ok=not outcome.get("count"), details=outcome)
    raise TypeError(f"a check returned {type(outcome).__name__}: expected CheckResult, dict or None")


class _Schema:
    """Tables and columns of the database, read once per validation run."""

    def __init__(self, connection) -> None:
        self.connection = connection
        with connection.cursor() as cursor:
            self.tables = set(connection.introspection.table_names(cursor))
        self._columns: dict[str, set[str]] = {}

    def columns(self, table: str) -> set[str]:
        if table not in self._columns:
            with self.connection.cursor() as cursor:
                description = self.connection.introspection.get_table_description(cursor, table)
            self._columns[table] = {column.name for column in description}
        return self._columns[table]

    def missing(self, requires) -> str | None:
        for table, columns in requires.items():
            if table not in self.tables:
                return f"table {table}"
            absent = [column for column in columns if column not in self.columns(table)]
            if absent:
                return f"column(s) {', '.join(f'{table}.{c}' for c in absent)}"
        return None
