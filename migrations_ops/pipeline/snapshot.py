"""The database before a plan: what recovery compares with and the row-count guard counts from."""

from __future__ import annotations

from dataclasses import dataclass

from migrations_ops import footprint


@dataclass
class StateSnapshot:
    migrations: dict[str, list[str]]
    row_counts: dict[str, int]
    footprint: footprint.Footprint | None = None  # schema + django_migrations: what the plan can change
    storage: dict[str, int] | None = None  # engine.table_storage(): tables the plan truncates or rewrites
    estimated: bool = False  # row_counts are the catalog's estimates (Strategy.counts_rows() is False)


__all__ = ["StateSnapshot"]
