"""The check registry: integrity checks register here, the way Django apps register system checks.

A check is a function ``(connection) -> CheckResult | dict | None``:

* return :func:`passed` / :func:`failed` / :func:`skipped` (a :class:`CheckResult` whose name and
  duration the runner fills in), or
* return a details dict: it fails when ``details["count"]`` is non-zero (the usual shape is
  ``{"count": n, "first": [...first offending ids or rows...]}``), or
* raise :class:`SkipCheck` with the reason it does not apply.

Vendor differences are declared, never tested inside a check: ``vendors=("postgresql",)`` limits
a check to those engines. ``requires={"table": ["column", ...]}`` skips a check (with the reason)
while the tables or columns it reads do not exist yet, e.g. before the migration that adds them.

Checks must only read: they run inside the caller's transaction (safe_migrate validates inside
its migration transaction), on the caller's connection, each one in a savepoint.

migrations_ops never imports a domain app: each app registers its invariants from its
``AppConfig.ready()`` (see ``billing/integrity.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

SAMPLE_SIZE = 10  # how many offending ids / rows a failing check shows

# Set by run_validation(just_restored=True) for the length of the run: the database was just
# replaced by a single-transaction restore, in which the server itself validated every
# constraint it created. Checks may then skip what that restore proved (see pg_foreign_keys).
JUST_RESTORED: ContextVar[bool] = ContextVar("just_restored", default=False)

CORE = "core"
DJANGO = "django"
DOMAIN = "domain"
_TAG_ORDER = {CORE: 0, DJANGO: 1, DOMAIN: 2}


@dataclass
class CheckResult:
    name: str
    ok: bool
    details: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    skipped: bool = False
    reason: str | None = None

    def problems(self) -> Problems:
        """What this result found, by identity (see :class:`Problems`)."""
        return Problems.of(self.details)

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"name": self.name, "ok": self.ok, "details": self.details}
        document["duration_s"] = round(self.duration_s, 6)
        if self.skipped:
            document["skipped"] = True
            document["reason"] = self.reason
        return document


# Details that describe a check's run, not a problem: text around the problems, and counters of
# what was examined (models_checked, checked, foreign_keys...), which grow with the schema.
CONTEXT_KEYS = frozenset({"fix", "note", "summary", "skipped", "not_checked", "warnings"})
# Counters of problems: more of them is a new problem even when the sample shown is the same.
COUNT_KEYS = frozenset({"count", "violating_rows"})


@dataclass(frozen=True)
class Problems:
    """A failing check's problems by identity: each offending row or object (``atoms``) and the
    problem counters (``counts``), without the text and the run's counters around them.

    ``--accept-existing-issues`` compares these, so a check whose details mention how many models
    or migrations it examined does not turn an old problem into a new one when a model is added.
    """

    atoms: frozenset[tuple[str, ...]]
    counts: tuple[tuple[tuple[str, ...], float], ...]

    @classmethod
    def of(cls, details: Mapping[str, Any]) -> Problems:
        atoms: set[tuple[str, ...]] = set()
        counts: dict[tuple[str, ...], float] = {}
        _collect(details, (), atoms, counts)
        return cls(frozenset(atoms), tuple(sorted(counts.items())))

    def within(self, accepted: Problems) -> bool:
        """True when every problem here was already there in ``accepted`` (and none grew in number)."""
        before = dict(accepted.counts)
        return self.atoms <= accepted.atoms and all(
            value <= before.get(path, 0) for path, value in self.counts if value
        )


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _identity(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _collect(value: Any, path: tuple[str, ...], atoms: set, counts: dict) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in CONTEXT_KEYS:
                continue
            if isinstance(item, int | float) and not isinstance(item, bool):
                if key in COUNT_KEYS:
                    counts[(*path, key)] = item
                continue  # any other number counts what was examined, not what is wrong
            _collect(item, (*path, str(key)), atoms, counts)
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, Mapping):
                # An object in a list (an orphaned foreign key, an invalid index, a changed file) is
                # known by its descriptive fields; its counts and samples are nested under it.
                label = {k: v for k, v in item.items() if _scalar(v) and not isinstance(v, int | float)}
                label = {k: v for k, v in label.items() if k not in CONTEXT_KEYS}
                _collect(item, (*path, _identity(label)), atoms, counts)
            else:
                atoms.add((*path, _identity(item)))
    else:
        atoms.add((*path, _identity(value)))


class SkipCheck(Exception):
    """Raised by a check that does not apply to this database; the reason is reported."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def passed(details: dict[str, Any] | None = None) -> CheckResult:
    return CheckResult(name="", ok=True, details=details or {})


def failed(details: dict[str, Any]) -> CheckResult:
    return CheckResult(name="", ok=False, details=details)


def skipped(reason: str) -> CheckResult:
    return CheckResult(name="", ok=True, details={"skipped": reason}, skipped=True, reason=reason)


CheckFunction = Callable[[BaseDatabaseWrapper], "CheckResult | dict[str, Any] | None"]


@dataclass(frozen=True)
class Check:
    name: str
    function: CheckFunction
    vendors: frozenset[str] | None
    deep_only: bool
    tags: tuple[str, ...]
    requires: Mapping[str, tuple[str, ...]]
    description: str

    def applies_to(self, vendor: str, deep: bool) -> bool:
        return (self.vendors is None or vendor in self.vendors) and (deep or not self.deep_only)


_registry: dict[tuple[str, frozenset[str] | None], Check] = {}


def register(
    name: str,
    *,
    vendors: Iterable[str] | None = None,
    deep_only: bool = False,
    tags: Sequence[str] = (),
    requires: Mapping[str, Iterable[str]] | Iterable[str] | None = None,
) -> Callable[[CheckFunction], CheckFunction]:
    """Register ``function`` as the check ``name`` (a decorator).

    ``vendors``: the connection vendors it applies to (None: every vendor). ``deep_only``: run only
    with ``--deep``. ``requires``: tables (or a mapping table -> columns) that must exist, else the
    check is reported skipped. Registering a name twice replaces the earlier check (module reloads).
    """
    if isinstance(requires, Mapping):
        required = {table: tuple(columns) for table, columns in requires.items()}
    else:
        required = {table: () for table in (requires or ())}

    def decorator(function: CheckFunction) -> CheckFunction:
        doc = (function.__doc__ or "").strip().splitlines()
        vendor_set = frozenset(vendors) if vendors is not None else None
        _registry[(name, vendor_set)] = Check(
            name=name,
            function=function,
            vendors=vendor_set,
            deep_only=deep_only,
            tags=tuple(tags),
            requires=required,
            description=doc[0] if doc else name,
        )
        return function

    return decorator


def unregister(name: str) -> None:
    for key in [key for key in _registry if key[0] == name]:
        del _registry[key]


def registered_checks(
    vendor: str | None = None, *, deep: bool = True, names: Iterable[str] | None = None
) -> list[Check]:
    """Registered checks in registration order, filtered by vendor, depth and (optionally) name."""
    wanted = set(names) if names is not None else None
    if wanted is not None and (unknown := wanted - {name for name, _ in _registry}):
        raise KeyError(f"unknown check(s): {', '.join(sorted(unknown))}")
    selected = [
        check
        for check in _registry.values()
        if (vendor is None or check.applies_to(vendor, deep)) and (wanted is None or check.name in wanted)
    ]
    # Engine checks first, then Django-level ones, then the apps' invariants (registration order within).
    return sorted(selected, key=lambda check: min((_TAG_ORDER.get(tag, 3) for tag in check.tags), default=3))


# --- helpers for check authors -------------------------------------------------------------------


def fetch_sample(
    connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any] = (), limit: int = SAMPLE_SIZE
) -> tuple[int, list[tuple]]:
    """Run a query that selects offending rows; return (their count, the first ``limit`` of them).

    Set-based on either engine: a plain count first (PostgreSQL runs it as a parallel scan; the
    windowed query below it cannot), then, only when something offends, the first rows with the
    count as a window over the whole result. Rows are ordered by their first column.
    """
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({sql}) q", list(params))
        if not cursor.fetchone()[0]:
            return 0, []
        cursor.execute(f"SELECT q.*, COUNT(*) OVER () FROM ({sql}) q ORDER BY 1 LIMIT {int(limit)}", list(params))
        rows = cursor.fetchall()
    if not rows:
        return 0, []
    return int(rows[0][-1]), [tuple(row[:-1]) for row in rows]


def offending(connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any] = (), **extra: Any) -> dict:
    """Details of a check whose offending rows ``sql`` selects: ``{"count", "first", ...extra}``.

    Single-column rows are shown as bare values (ids), wider rows as lists.
    """
    count, rows = fetch_sample(connection, sql, params)
    first = [_jsonable(row[0]) if len(row) == 1 else [_jsonable(v) for v in row] for row in rows]
    return {"count": count, "first": first, **extra}


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
