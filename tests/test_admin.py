"""The admin: every changelist renders, PricingConfig validation reaches the form, read-only stays so."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

import pytest
from django.contrib import admin
from django.urls import reverse

from accounts.models import User
from analytics.models import PaymentAnalytics, SubscriptionAnalytics
from billing.models import PaymentIntent, PricingConfig, Subscription, SubscriptionCostHistory
from loyalty.models import LoyaltyAccount, PointsTransaction

pytestmark = pytest.mark.django_db

UTC = datetime.UTC


@pytest.fixture
def rows(db):
    """One row in every table, so changelists render real rows (and their select_related joins)."""
    alice = User.objects.create_user(email="alice@example.com", id=uuid.uuid4())
    bob = User.objects.create_user(email="bob@example.com", id=uuid.uuid4())
    config = PricingConfig.objects.get(plan="premium", variant_id="default")
    account = LoyaltyAccount.objects.create(user=alice, points_balance=100, lifetime_points=100)
    sub_a = Subscription.objects.create(
        user=alice, plan="premium", status="active", price=Decimal("39.99"), pricing_config=config,
        base_cost=Decimal("39.99"), delivery_cost=0, tax_amount=0, discount_amount=0, loyalty_discount=0,
        total_cost=Decimal("39.99"), loyalty_account=account,
    )  # fmt: skip
    sub_b = Subscription.objects.create(user=bob, plan="basic", status="cancelled", price=Decimal("9.99"))
    SubscriptionCostHistory.objects.create(
        subscription=sub_a, new_breakdown={"total": "39.99"}, new_total=Decimal("39.99"), reason="backfill"
    )
    intent = PaymentIntent.objects.create(
        stripe_payment_intent_id="pi_test_1", subscription=sub_a, user=alice, amount=3999, status="succeeded"
    )
    PointsTransaction.objects.create(account=account, points=100, kind="earn", balance_after=100, subscription=sub_a)
    SubscriptionAnalytics.objects.create(date=datetime.date(2026, 1, 1), active_subscriptions=1)
    PaymentAnalytics.objects.create(date=datetime.date(2026, 1, 1), total_payments=1, succeeded_payments=1)
    return {"alice": alice, "bob": bob, "sub_a": sub_a, "sub_b": sub_b, "intent": intent}


def changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def results(response) -> list:
    return list(response.context["cl"].result_list)


def test_every_registered_changelist_renders(admin_client, rows):
    models = list(admin.site._registry)
    assert {Subscription, PricingConfig, PaymentIntent, LoyaltyAccount, SubscriptionAnalytics} <= set(models)
    for model in models:
        response = admin_client.get(changelist(model))
        assert response.status_code == 200, model
        assert len(results(response)) == model.objects.count(), model


def pricing_form(**overrides) -> dict:
    data = {
        "name": "Basic spring",
        "plan": "basic",
        "variant_id": "default",
        "variant_name": "Default",
        "is_active": "on",
        "currency": "USD",
        "base_price": "11.99",
        "delivery_fee": "0.00",
        "tax_rate": "0.0800",
        "discount_rate": "0",
        "discount_rules": "{}",
        "loyalty_points_per_unit": "1.00",
        "effective_from_0": "2026-03-01",
        "effective_from_1": "00:00:00",
        "effective_until_0": "",
        "effective_until_1": "",
    }
    data.update(overrides)
    return data


def test_overlapping_active_pricing_config_is_refused_on_the_form(admin_client):
    before = PricingConfig.objects.count()
    response = admin_client.post(reverse("admin:billing_pricingconfig_add"), pricing_form())
    assert response.status_code == 200  # the form again, not a redirect
    form = response.context["adminform"].form
    assert any("already covers part of this window" in e for e in form.non_field_errors())
    # Starting inside the clash and open-ended: both date fields are marked, each naming the clash.
    for field in ("effective_from", "effective_until"):
        (note,) = form.errors[field]
        assert note.startswith("Overlaps the active config 'Default pricing: basic'"), note
    assert "Default pricing: basic" in response.content.decode()  # the clashing config is named
    assert PricingConfig.objects.count() == before


def test_valid_pricing_config_is_saved_with_its_creator(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:billing_pricingconfig_add"), pricing_form(variant_id="eco-box", name="Basic eco")
    )
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    saved = PricingConfig.objects.get(name="Basic eco")
    assert saved.created_by == admin_user
    assert saved.base_price == Decimal("11.99")


def test_windows_are_half_open_so_touching_windows_are_accepted(admin_client):
    # The default basic config starts 2020-01-01; a window ending exactly then does not overlap it.
    touching = pricing_form(
        name="Basic 2019", effective_from_0="2019-01-01", effective_until_0="2020-01-01", effective_until_1="00:00:00"
    )
    assert admin_client.post(reverse("admin:billing_pricingconfig_add"), touching).status_code == 302
    one_second_more = pricing_form(
        name="Basic 2019b", effective_from_0="2019-06-01", effective_until_0="2020-01-01", effective_until_1="00:00:01"
    )
    response = admin_client.post(reverse("admin:billing_pricingconfig_add"), one_second_more)
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors()


def test_window_ending_before_it_starts_is_a_field_error(admin_client):
    data = pricing_form(variant_id="eco-box", effective_until_0="2026-02-01", effective_until_1="00:00:00")
    response = admin_client.post(reverse("admin:billing_pricingconfig_add"), data)
    assert response.status_code == 200
    assert "effective_until" in response.context["adminform"].form.errors


def test_pricing_config_filters_and_search(admin_client):
    PricingConfig.objects.create(name="Premium chef", plan="premium", variant_id="chef", base_price=Decimal("59.99"))
    premium = results(admin_client.get(changelist(PricingConfig), {"plan__exact": "premium"}))
    assert {c.plan for c in premium} == {"premium"} and len(premium) == 2
    chef = results(admin_client.get(changelist(PricingConfig), {"variant_id__exact": "chef"}))
    assert [c.name for c in chef] == ["Premium chef"]
    inactive = results(admin_client.get(changelist(PricingConfig), {"is_active__exact": "0"}))
    assert inactive == []
    found = results(admin_client.get(changelist(PricingConfig), {"q": "chef"}))
    assert [c.name for c in found] == ["Premium chef"]


def test_subscription_filters_and_search_by_user_email(admin_client, rows):
    by_email = results(admin_client.get(changelist(Subscription), {"q": "bob@example"}))
    assert by_email == [rows["sub_b"]]
    cancelled = results(admin_client.get(changelist(Subscription), {"status__exact": "cancelled"}))
    assert cancelled == [rows["sub_b"]]
    premium = results(admin_client.get(changelist(Subscription), {"plan__exact": "premium"}))
    assert premium == [rows["sub_a"]]


def test_subscription_costs_are_read_only(admin_client, rows):
    response = admin_client.get(reverse("admin:billing_subscription_change", args=[rows["sub_a"].pk]))
    assert response.status_code == 200
    fields = response.context["adminform"].form.fields
    assert "status" in fields
    assert not {"price", "base_cost", "total_cost", "points_earned"} & set(fields)


def test_payment_intents_cannot_be_added_changed_or_deleted(admin_client, rows):
    intent = rows["intent"]
    assert admin_client.get(reverse("admin:billing_paymentintent_add")).status_code == 403
    assert admin_client.get(reverse("admin:billing_paymentintent_delete", args=[intent.pk])).status_code == 403
    change_url = reverse("admin:billing_paymentintent_change", args=[intent.pk])
    assert admin_client.get(change_url).status_code == 200  # viewable
    assert admin_client.post(change_url, {"status": "canceled"}).status_code == 403
    intent.refresh_from_db()
    assert intent.status == "succeeded"
    found = results(admin_client.get(changelist(PaymentIntent), {"q": "pi_test_1"}))
    assert found == [intent]


@pytest.mark.parametrize("model", [LoyaltyAccount, PointsTransaction, SubscriptionAnalytics, PaymentAnalytics])
def test_loyalty_and_analytics_are_read_only(admin_client, model):
    opts = model._meta
    assert admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add")).status_code == 403
