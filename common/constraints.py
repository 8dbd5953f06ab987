"""Check constraints the models declare again and again, each spelled once.

Each factory returns the same `CheckConstraint` (the same `Q` tree, children in the same order) the
models used to spell out by hand, so migrations see no change: `makemigrations --check` stays clean.
Names are passed in, not derived: they are database object names that migrations already created.
"""

from __future__ import annotations

import operator
from functools import reduce

from django.db import models
from django.db.models import Q


def _nullable(field: str, condition: Q, nullable: bool) -> Q:
    """`condition`, or NULL when the column may be NULL (a CHECK on NULL passes anyway, but the
    models say so explicitly and the migrations carry it)."""
    return Q(**{f"{field}__isnull": True}) | condition if nullable else condition


def non_negative(*fields: str, name: str, nullable: bool = False) -> models.CheckConstraint:
    """Every one of `fields` is >= 0 (or NULL, when `nullable`)."""
    conditions = [_nullable(field, Q(**{f"{field}__gte": 0}), nullable) for field in fields]
    return models.CheckConstraint(condition=reduce(operator.and_, conditions), name=name)


def between(field: str, low: int, high: int, *, name: str) -> models.CheckConstraint:
    """`low <= field <= high`, e.g. a rate in [0, 1]."""
    return models.CheckConstraint(condition=Q(**{f"{field}__gte": low}) & Q(**{f"{field}__lte": high}), name=name)


def one_of(field: str, choices: type[models.Choices], *, name: str, nullable: bool = False) -> models.CheckConstraint:
    """`field` holds one of the values of `choices`: the database refuses what the model's choices
    would, from the same list (a new choice shows up as a migration of the constraint)."""
    condition = _nullable(field, Q(**{f"{field}__in": list(choices.values)}), nullable)
    return models.CheckConstraint(condition=condition, name=name)
