"""The row-count guard: after a plan, no table that existed before it has lost rows, unless the plan
drops it or the operator names it (``--allow-row-loss``).

A table is followed through the plan, not by its name: a table the plan renames (RenameModel,
AlterModelTable, their auto-created many-to-many tables; ``MigrationPlan.renamed_tables``) is
compared under its new name, and a table the plan drops (``MigrationPlan.dropped_tables``) is no
loss. SQLite keeps a virtual table's rows (FTS5, FTS3/4, R*Tree) in shadow tables that it creates,
rewrites and drops with it: they are judged by their virtual table, never on their own (an FTS
index merging its segments has fewer rows in ``<name>_data`` and lost nothing).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import TYPE_CHECKING, Any

from migrations_ops.checks import CheckResult
from migrations_ops.status import BOOKKEEPING_TABLES

if TYPE_CHECKING:
    from migrations_ops.planning import MigrationPlan


def row_count_guard(
    plan: MigrationPlan,
    before_counts: Mapping[str, int],
    after_counts: Mapping[str, int],
    own_changes: Mapping[str, int] | None = None,
    allowed: frozenset[str] | set[str] = frozenset(),
    shadow_tables: Mapping[str, set[str]] | None = None,
    replaced: Set[str] = frozenset(),
    estimated: bool = False,
) -> CheckResult:
    """Compare the row counts before the plan (``before_counts``, by table) with those after it.

    Each table of ``before_counts`` (Django's bookkeeping tables aside) is looked up under the name
    the plan leaves it with (``plan.renamed_tables()``). It is a loss when that table is gone and the
    plan did not drop it (``plan.dropped_tables()``), or when it has fewer rows: by ``own_changes``
    when given (rows the plan's own transactions added or removed, per table name, where the engine
    counts them: rows other clients deleted meanwhile are not the plan's loss), else by
    ``after_counts``. ``allowed`` (``--allow-row-loss``) accepts a table by its old or its new name.
    ``shadow_tables`` (virtual table -> its shadow tables, before the plan; default: the plan's)
    are left to their virtual table. A loss after a rename names both: ``a (renamed b): 5 -> 3``.
    ``replaced``: tables (by their name before) whose storage the plan replaced (TRUNCATE, a rewrite),
    judged by ``after_counts`` even with ``own_changes``: the server counts no deleted row for a TRUNCATE.
    ``estimated``: the counts are the catalog's estimates (shown with ``~``); only ``own_changes`` decides,
    and a replaced table, whose rows before nobody counted, is a loss.
    """
    if estimated and own_changes is None:
        raise ValueError("estimated row counts decide nothing: the guard needs the plan's own row changes")
    shadows = plan.shadow_tables if shadow_tables is None else shadow_tables
    shadow = {name for names in shadows.values() for name in names}
    renamed = plan.renamed_tables()
    taken = set(renamed.values())  # names that end up on another table
    dropped = plan.dropped_tables()
    losses: dict[str, dict[str, Any]] = {}
    for table, count in sorted(before_counts.items()):
        final = renamed.get(table, table)
        if table in BOOKKEEPING_TABLES or table in shadow or {table, final} & set(allowed):
            continue
        if table in dropped and (final not in after_counts or final in taken):
            continue
        if final not in after_counts:
            after = None
        elif estimated and table in replaced:
            # Truncated or rewritten by a run that should do neither, with nobody's count from before.
            losses[table] = {"before": count, "after": "storage replaced, rows before not counted", "estimated": True}
            continue
        elif own_changes is not None and table not in replaced:
            # Counted by name as the server saw it: under every name the table had in the plan.
            after = count + sum(own_changes.get(name, 0) for name in dict.fromkeys(plan.table_names(table)))
        else:
            after = after_counts[final]
        if after is None or after < count:
            losses[table] = {"before": count, "after": after}
            if estimated:
                losses[table]["estimated"] = True
            if final != table:
                losses[table]["renamed"] = final
    summary = (
        "; ".join(_describe(table, loss) for table, loss in losses.items())
        + " (name the table with --allow-row-loss to accept)"
        if losses
        else "no table lost rows"
    )
    return CheckResult(name="row_count_guard", ok=not losses, details={"summary": summary, "losses": losses})


def _describe(table: str, loss: Mapping[str, Any]) -> str:
    name = f"{table} (renamed {loss['renamed']})" if "renamed" in loss else table
    after = "table gone" if loss["after"] is None else loss["after"]
    if loss.get("estimated"):  # counts from the catalog's estimate: the difference is the plan's own deletes
        before = f"~{loss['before']}"
        after = f"~{after}" if isinstance(after, int) else after
        return f"{name}: {before} -> {after}"
    return f"{name}: {loss['before']} -> {after}"
