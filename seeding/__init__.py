"""Deterministic demo data, fast enough for a million rows (the logic behind `seed_demo_data`).

A package of its own, above the domain apps: it writes every app's tables (accounts, billing,
loyalty, analytics) and uses their rules, which the apps themselves may not do to each other
(the import-linter contracts in pyproject.toml).

What it writes depends on the schema it finds (:func:`detect_state`):

* ``head`` (the upgrade applied): users with permissions, subscriptions with the full cost
  breakdown, demo pricing configs next to the migration's defaults, Stripe payment intents, one
  loyalty account per user with a consistent points ledger, and daily analytics.
* ``baseline`` (accounts 0001 + billing 0001 only): users and the baseline subscription columns,
  the state of production before the upgrade (what the migration benchmark starts from).

Everything comes from one ``random.Random(seed)`` and a fixed reference time, so the same seed on
an empty database gives the same rows. Rows are generated in batches as tuples of strings and
handed to a writer: COPY on PostgreSQL, ``executemany`` on SQLite, all in one transaction.
Primary keys are assigned here (after the table's current maximum) so that foreign keys between
the generated rows are known without reading anything back; sequences are reset at the end.

The domain rules are the domain's own: costs from :func:`billing.pricing.compute_breakdown`, points
from :func:`loyalty.ledger.points_for_amount`, tiers from :func:`loyalty.ledger.tier_for`; columns
from the models' fields (those the table has), the upgrade's tables and columns from the migration
graph.

Invariants the data keeps (they are what ``validate_db`` checks):
``total_cost = base_cost + delivery_cost + tax_amount - discount_amount - loyalty_discount`` and
every amount is non-negative; ``price = total_cost``; each user has one loyalty account whose
``points_balance`` is the sum of its transactions and whose ``balance_after`` is the running sum in
id order, never negative; earn > 0, redeem/expire < 0; active pricing configs of one plan and
variant never overlap (windows are half-open); one analytics row per date.

Modules: ``base`` (clock, text forms, report), ``schema`` (state and columns), ``writers`` and
``bulk`` (COPY / executemany, constraints set aside), one per table group (``users``,
``subscriptions``, ``payments``, ``loyalty``, ``analytics``), and ``run`` (the transaction and the
phases in order).
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use (PEP 562), not here: Django imports this package while it loads the apps
# (INSTALLED_APPS names it for its command), before the domain's models can be imported.
_EXPORTS = {
    "DEFAULT_BATCH_SIZE": "base",
    "DEFAULT_DAYS": "base",
    "REFERENCE": "base",
    "Progress": "base",
    "SeedRefused": "base",
    "SeedReport": "base",
    "user_uuid_hex": "base",
    "Seeder": "run",
    "seed": "run",
    "detect_state": "schema",
    "seeded_columns": "schema",
    "upgrade_schema": "schema",
    "WRITERS": "writers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
