"""The pricing engine: rounding rules, cost history, and set-based repricing on both engines."""

from __future__ import annotations

import datetime
import random
import uuid
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import User
from billing.models import PricingConfig, Subscription, SubscriptionCostHistory
from billing.pricing import CostBreakdown, apply_pricing, compute_breakdown, preview_config, quote, reprice
from migrations_ops.validation import run_validation

D = Decimal
UTC = datetime.UTC


def config(**kwargs) -> PricingConfig:
    values = {
        "name": "t",
        "plan": "basic",
        "base_price": D("10.00"),
        "delivery_fee": D("0"),
        "tax_rate": D("0"),
        "discount_rate": D("0"),
        "discount_rules": {},
    }
    return PricingConfig(**{**values, **kwargs})


# --- the rules, in Decimal -------------------------------------------------------------------


def test_half_up_at_half_a_cent_for_discount_and_tax():
    # 1.00 x 0.5 % = 0.005 -> 0.01 (banker's rounding would give 0.00)
    b = compute_breakdown(config(base_price=D("1.00"), discount_rate=D("0.0050")))
    assert b.discount == D("0.01")
    # tax on 0.10 at 5 % = 0.005 -> 0.01
    b = compute_breakdown(config(base_price=D("0.10"), tax_rate=D("0.0500")))
    assert b.tax == D("0.01") and b.total == D("0.11")
    # 0.0049999 rounds down: 0.33 x 1.5 % = 0.00495 -> 0.00
    assert compute_breakdown(config(base_price=D("0.33"), discount_rate=D("0.0150"))).discount == D("0.00")


def test_tax_is_on_the_discounted_amount_plus_delivery():
    b = compute_breakdown(
        config(base_price=D("100.00"), delivery_fee=D("5.00"), discount_rate=D("0.1000"), tax_rate=D("0.0825"))
    )
    # (100 + 5 - 10) x 8.25 % = 7.8375 -> 7.84
    assert b == CostBreakdown(D("100.00"), D("5.00"), D("7.84"), D("10.00"), D("0.00"), D("102.84"))


def test_yearly_terms_deliveries_and_min_months_rules():
    cfg = config(
        base_price=D("29.99"),
        delivery_fee=D("4.99"),
        tax_rate=D("0.0825"),
        discount_rate=D("0.0500"),
        discount_rules={"min_months": 12, "rate": "0.10"},
    )
    monthly = compute_breakdown(cfg, billing_interval="month", delivery_frequency="weekly")
    assert (monthly.base, monthly.delivery, monthly.discount) == (D("29.99"), D("19.96"), D("1.50"))
    yearly = compute_breakdown(cfg, billing_interval="year", delivery_frequency="biweekly")
    # 12 x 29.99 = 359.88; 15 % = 53.982 -> 53.98; delivery 4.99 x 2 x 12 = 119.76
    assert (yearly.base, yearly.delivery, yearly.discount) == (D("359.88"), D("119.76"), D("53.98"))
    assert yearly.tax == D("35.12")  # (359.88 + 119.76 - 53.98) x 8.25 % = 35.11695
    assert yearly.total == yearly.base + yearly.delivery + yearly.tax - yearly.discount


def test_discount_is_capped_at_the_base_and_loyalty_at_the_subtotal():
    cfg = config(base_price=D("10.00"), discount_rate=D("0.8000"), discount_rules=[{"min_months": 1, "rate": "0.5"}])
    assert compute_breakdown(cfg).discount == D("10.00")
    b = compute_breakdown(config(base_price=D("10.00")), loyalty_discount=D("25.00"))
    assert (b.loyalty_discount, b.total) == (D("10.00"), D("0.00"))


# --- applying it (one subscription) and repricing (set-based), both engines -------------------


def family_config(using: str, **values) -> PricingConfig:
    """A saved config of the standard plan's family box (yearly terms get 10 % more off)."""
    defaults = {
        "plan": "standard",
        "variant_id": "family-box",
        "delivery_fee": D("4.99"),
        "tax_rate": D("0.0825"),
        "discount_rate": D("0.0500"),
        "discount_rules": {"min_months": 12, "rate": "0.10"},
        "effective_from": datetime.datetime(2024, 1, 1, tzinfo=UTC),
    }
    return PricingConfig.objects.using(using).create(**{**defaults, **values})


def make_subscriptions(using: str) -> tuple[PricingConfig, list[Subscription]]:
    """A priced config and subscriptions of every interval, frequency and status, priced by it."""
    user = User.objects.db_manager(using).create_user(email=f"{uuid.uuid4().hex[:8]}@example.com")
    PricingConfig.objects.using(using).filter(plan="standard").update(is_active=False)
    cfg = family_config(using, name="family", base_price=D("27.99"), loyalty_points_per_unit=D("1"))
    subs = []
    combos = [
        ("month", "weekly", "active", D("0")),
        ("month", "biweekly", "past_due", D("3.00")),
        ("year", "monthly", "active", D("0")),
        ("year", None, "paused", D("0")),
        ("month", "monthly", "cancelled", D("0")),
    ]
    for interval, frequency, status, loyalty in combos:
        s = Subscription.objects.using(using).create(
            user=user,
            plan="standard",
            variant_id="family-box",
            status=status,
            price=D("0"),
            billing_interval=interval,
            delivery_frequency=frequency,
            loyalty_discount=loyalty,
        )
        apply_pricing(s, reason="backfill", using=using)
        subs.append(s)
    return cfg, subs


@pytest.mark.django_db
def test_apply_pricing_writes_history_only_when_the_cost_changes():
    cfg, subs = make_subscriptions("default")
    sub = subs[0]
    assert SubscriptionCostHistory.objects.filter(subscription=sub).count() == 1
    first = SubscriptionCostHistory.objects.get(subscription=sub)
    assert first.old_breakdown is None and first.new_total == sub.total_cost and first.pricing_config == cfg
    assert apply_pricing(sub) is None  # same config, same cost: nothing written
    assert SubscriptionCostHistory.objects.filter(subscription=sub).count() == 1
    PricingConfig.objects.filter(pk=cfg.pk).update(base_price=D("31.49"))
    row = apply_pricing(sub, reason="pricing_change")
    sub.refresh_from_db()
    assert row.old_total == first.new_total and row.new_total == sub.total_cost
    assert row.new_breakdown == quote(sub)[1].as_json() and row.new_breakdown["base"] == "31.49"
    assert sub.price == sub.total_cost


def test_reprice_sql_matches_the_python_rules(migrated_db):
    using = migrated_db.alias
    cfg, subs = make_subscriptions(using)
    before = {s.pk: CostBreakdown.of(s) for s in Subscription.objects.using(using).filter(pk__in=[s.pk for s in subs])}
    # a no-op first: the SQL computes exactly what the Python path stored
    noop = reprice(using=using)
    assert (noop.changed, noop.history_rows) == (0, 0)
    PricingConfig.objects.using(using).filter(pk=cfg.pk).update(
        base_price=D("29.99"), tax_rate=D("0.0900"), delivery_fee=D("5.05")
    )
    dry = reprice(plan="standard", dry_run=True, using=using)
    assert dry.changed == 4 and dry.dry_run
    assert SubscriptionCostHistory.objects.using(using).filter(reason="pricing_change").count() == 0
    result = reprice(plan="standard", using=using)
    assert (result.candidates, result.changed, result.history_rows) == (4, 4, 4)  # cancelled one kept
    assert (result.mrr_before, result.mrr_after) == (dry.mrr_before, dry.mrr_after)
    fresh = PricingConfig.objects.using(using).get(pk=cfg.pk)
    mrr_after = D(0)
    for s in Subscription.objects.using(using).filter(pk__in=[s.pk for s in subs]):
        if s.status == "cancelled":
            assert CostBreakdown.of(s) == before[s.pk]
            continue
        expected = compute_breakdown(
            fresh,
            billing_interval=s.billing_interval,
            delivery_frequency=s.delivery_frequency,
            loyalty_discount=before[s.pk].loyalty_discount,
        )
        assert CostBreakdown.of(s) == expected and s.price == expected.total
        history = SubscriptionCostHistory.objects.using(using).get(subscription=s, reason="pricing_change")
        assert history.new_breakdown == expected.as_json()
        assert history.old_breakdown == before[s.pk].as_json()
        assert D(history.old_total) == before[s.pk].total and history.pricing_config_id == cfg.pk
        if s.status in ("active", "past_due"):
            mrr_after += expected.total / (12 if s.billing_interval == "year" else 1)
    assert result.mrr_after == mrr_after.quantize(D("0.01"))
    assert reprice(using=using).changed == 0  # idempotent
    report = run_validation(using=using)
    assert report.ok, report.render()


def test_reprice_filters_by_plan_and_variant(migrated_db):
    using = migrated_db.alias
    cfg, _ = make_subscriptions(using)
    PricingConfig.objects.using(using).filter(pk=cfg.pk).update(base_price=D("1.00"))
    assert reprice(plan="basic", using=using).candidates == 0
    assert reprice(plan="standard", variant="other", using=using).candidates == 0
    assert reprice(plan="standard", variant="family-box", using=using).changed == 4


@pytest.mark.django_db
def test_preview_reports_mrr_before_and_after_without_writing():
    cfg, subs = make_subscriptions("default")
    draft = family_config(
        "default",
        name="draft",
        base_price=D("37.99"),
        is_active=False,
        effective_from=datetime.datetime(2030, 1, 1, tzinfo=UTC),
    )
    totals = list(Subscription.objects.order_by("pk").values_list("total_cost", flat=True))
    preview = preview_config(draft)
    assert (preview.subscriptions, preview.live_subscriptions, preview.changed) == (4, 3, 4)
    live = [s for s in subs if s.status in ("active", "past_due")]
    assert preview.mrr_before == sum(s.total_cost / (12 if s.billing_interval == "year" else 1) for s in live).quantize(
        D("0.01")
    )
    assert preview.mrr_after > preview.mrr_before
    assert list(Subscription.objects.order_by("pk").values_list("total_cost", flat=True)) == totals


@pytest.mark.django_db
def test_reprice_command_prints_counts_and_mrr(capsys):
    cfg, _ = make_subscriptions("default")
    PricingConfig.objects.filter(pk=cfg.pk).update(base_price=D("30.99"))
    call_command("reprice_subscriptions", "--plan", "standard", "--dry-run")
    assert "would re-price 4 of 4 subscriptions" in capsys.readouterr().out
    call_command("reprice_subscriptions")
    out = capsys.readouterr().out
    assert "re-priced 4 of" in out and "4 cost changes recorded" in out and "MRR" in out


@pytest.mark.django_db
@pytest.mark.parametrize(
    "bad",
    [pytest.param(["--plan", "gold"], id="unknown-plan"), pytest.param(["--variant", "nope"], id="unknown-variant")],
)
def test_reprice_command_refuses_bad_input(bad):
    make_subscriptions("default")
    with pytest.raises(CommandError) as refused:
        call_command("reprice_subscriptions", *bad)
    assert refused.value.returncode == 2


def _random_rules(rng: random.Random) -> dict | list:
    rate = lambda: f"{rng.randrange(0, 3001) / 10000:.4f}"  # noqa: E731
    return rng.choice(
        [
            {},
            {"min_months": 12, "rate": rate()},
            {"min_months": 1, "rate": rate()},
            [{"min_months": 1, "rate": rate()}, {"min_months": 12, "rate": rate()}],
        ]
    )


def test_reprice_sql_equals_compute_breakdown_over_many_generated_inputs(migrated_db):
    """The set-based SQL (integer cents, rates x 10^4) and the Decimal rules are two spellings of one
    rule: over many random configs and subscriptions, including half-cent ties, discounts past 100 %
    and loyalty discounts past the subtotal, they agree to the cent."""
    using = migrated_db.alias
    rng = random.Random(20260101)
    user = User.objects.db_manager(using).create_user(email="many@example.com")
    configs = []
    for i in range(120):
        configs.append(
            PricingConfig(
                name=f"generated {i}",
                plan="standard",
                variant_id=f"gen-{i}",
                base_price=D(rng.choice([rng.randrange(1, 100_000), rng.randrange(1, 200) * 5 + 1])) / 100,
                delivery_fee=D(rng.choice([0, rng.randrange(0, 2_000)])) / 100,
                tax_rate=D(rng.choice([0, 825, 5000, rng.randrange(0, 10_001)])) / 10_000,
                discount_rate=D(rng.choice([0, 50, 9_000, rng.randrange(0, 10_001)])) / 10_000,
                discount_rules=_random_rules(rng),
                effective_from=datetime.datetime(2024, 1, 1, tzinfo=UTC),
            )
        )
    configs = PricingConfig.objects.using(using).bulk_create(configs)
    subs = [
        Subscription(
            user=user,
            plan="standard",
            variant_id=cfg.variant_id,
            status=rng.choice(["active", "paused", "past_due"]),
            price=D("0"),
            billing_interval=rng.choice(["month", "year"]),
            delivery_frequency=rng.choice(["weekly", "biweekly", "monthly", None]),
            loyalty_discount=D(rng.choice([0, rng.randrange(0, 50_000)])) / 100,
        )
        for cfg in configs
        for _ in range(5)
    ]
    Subscription.objects.using(using).bulk_create(subs)
    result = reprice(plan="standard", using=using)
    assert result.changed == len(subs)
    by_variant = {c.variant_id: PricingConfig.objects.using(using).get(pk=c.pk) for c in configs}
    stored = Subscription.objects.using(using).filter(variant_id__startswith="gen-")
    assert stored.count() == len(subs)
    for s, original in zip(stored.order_by("pk"), subs, strict=True):
        expected = compute_breakdown(
            by_variant[s.variant_id],
            billing_interval=s.billing_interval,
            delivery_frequency=s.delivery_frequency,
            loyalty_discount=original.loyalty_discount,
        )
        assert CostBreakdown.of(s) == expected, (s.variant_id, s.billing_interval, s.delivery_frequency)
    assert reprice(plan="standard", using=using).changed == 0
