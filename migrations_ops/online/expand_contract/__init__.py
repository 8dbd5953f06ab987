"""Expand/contract: the operations that both releases survive only in two halves (one module each).

``safe_migrate --online`` runs each one's expand half and leaves a *window* open (recorded in the
checkpoint table); the new release is deployed; ``--online --complete`` runs the contract half, and
``--online --abort`` takes the database back to the old release's schema. See base.py.
"""

from __future__ import annotations

from migrations_ops.online.expand_contract import (
    add_not_null,
    alter_type,
    delete_model,
    remove_field,
    rename_field,
    rename_model,
    set_not_null,
)
from migrations_ops.online.expand_contract.base import BACKFILL, Context, Unsupported, WindowPlan

KINDS = (add_not_null, set_not_null, alter_type, rename_field, rename_model, remove_field, delete_model)


def window_plan(ctx: Context) -> WindowPlan | None:
    """The expand/contract plan of ``ctx.operation``, None when it needs none (Unsupported: it cannot)."""
    for kind in KINDS:
        planned = kind.plan(ctx)
        if planned is not None:
            return planned
    return None


__all__ = ["BACKFILL", "Context", "Unsupported", "WindowPlan", "window_plan"]
