"""migrations_ops.dialect: one way to pick a per-vendor implementation, one error for an unsupported vendor."""

from __future__ import annotations

import pytest
from django.db import connections

from analytics.rollup import DIALECTS as ROLLUP_DIALECTS
from billing.pricing import DIALECTS as PRICING_DIALECTS
from billing.pricing import dialect_for
from migrations_ops.dialect import UnsupportedVendor, for_vendor
from seeding import WRITERS


def test_picks_the_entry_of_the_connections_vendor():
    connection = connections["default"]
    assert for_vendor({connection.vendor: "mine", "other": "theirs"}, connection, feature="x") == "mine"
    assert for_vendor({"postgresql": 1, "sqlite": 2}, "sqlite", feature="x") == 2


def test_an_unsupported_vendor_is_one_clear_error_naming_feature_vendor_and_the_supported_ones():
    with pytest.raises(
        UnsupportedVendor,
        match=r"^set-based pricing is not implemented for oracle "
        r"\(supported: postgresql, sqlite\)$",
    ):
        for_vendor({"sqlite": 1, "postgresql": 2}, "oracle", feature="set-based pricing")
    assert isinstance(UnsupportedVendor("x"), NotImplementedError)


def test_a_default_replaces_the_error():
    assert for_vendor({"postgresql": "ddl"}, "sqlite", feature="x", default=None) is None
    assert for_vendor({"postgresql": "ddl"}, "postgresql", feature="x", default=None) == "ddl"


def test_every_switch_covers_both_engines_the_project_runs_on():
    for mapping in (PRICING_DIALECTS, ROLLUP_DIALECTS, WRITERS):
        assert set(mapping) == {"postgresql", "sqlite"}
    assert dialect_for(connections["default"]) is PRICING_DIALECTS[connections["default"].vendor]
