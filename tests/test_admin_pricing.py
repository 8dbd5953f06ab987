"""PricingConfig admin: permissions, impact preview, history, filters and search."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from accounts.models import User
from billing.models import PricingConfig, Subscription

pytestmark = pytest.mark.django_db
UTC = datetime.UTC
CHANGELIST = "/admin/billing/pricingconfig/"


def staff(*codenames: str) -> Client:
    user = User.objects.create_user(email=f"{uuid.uuid4().hex[:8]}@example.com", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="billing", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def form_data(config: PricingConfig, **changes) -> dict:
    data = {
        "name": config.name,
        "plan": config.plan,
        "variant_id": config.variant_id,
        "variant_name": config.variant_name,
        "is_active": "on" if config.is_active else "",
        "currency": config.currency,
        "base_price": str(config.base_price),
        "delivery_fee": str(config.delivery_fee),
        "tax_rate": str(config.tax_rate),
        "discount_rate": str(config.discount_rate),
        "discount_rules": "{}",
        "loyalty_points_per_unit": "1.00",
        "effective_from_0": config.effective_from.strftime("%Y-%m-%d"),
        "effective_from_1": config.effective_from.strftime("%H:%M:%S"),
        "effective_until_0": "",
        "effective_until_1": "",
    }
    return {**data, **changes}


@pytest.fixture
def basic() -> PricingConfig:
    return PricingConfig.objects.get(plan="basic", variant_id="default")


def test_editors_change_viewers_read_others_see_nothing(basic):
    change_url = reverse("admin:billing_pricingconfig_change", args=[basic.pk])
    editor = staff("view_pricingconfig", "change_pricingconfig")
    response = editor.post(change_url, form_data(basic, base_price="10.49"))
    assert response.status_code == 302
    basic.refresh_from_db()
    assert basic.base_price == Decimal("10.49")

    viewer = staff("view_pricingconfig")
    page = viewer.get(change_url)
    assert page.status_code == 200 and b'name="_save"' not in page.content  # read-only form
    assert viewer.post(change_url, form_data(basic, base_price="1.00")).status_code == 403
    assert viewer.get(reverse("admin:billing_pricingconfig_add")).status_code == 403
    basic.refresh_from_db()
    assert basic.base_price == Decimal("10.49")

    nobody = staff()
    assert nobody.get(CHANGELIST).status_code == 403
    assert nobody.get(change_url).status_code == 403
    assert nobody.get(reverse("admin:billing_pricingconfig_preview", args=[basic.pk])).status_code == 403


def test_overlap_is_a_form_error_and_history_records_changes(admin_client, basic):
    add = reverse("admin:billing_pricingconfig_add")
    clash = form_data(basic, name="Clash", base_price="11.00")
    response = admin_client.post(add, clash)
    assert response.status_code == 200
    assert "already covers part of this window" in response.content.decode()
    assert PricingConfig.objects.filter(name="Clash").count() == 0
    response = admin_client.post(
        reverse("admin:billing_pricingconfig_change", args=[basic.pk]), form_data(basic, base_price="9.49")
    )
    assert response.status_code == 302
    entries = LogEntry.objects.filter(object_id=str(basic.pk))
    assert entries.count() == 1 and "Base price" in entries.get().get_change_message()
    history = admin_client.get(reverse("admin:billing_pricingconfig_history", args=[basic.pk]))
    assert history.status_code == 200 and "Base price" in history.content.decode()
    change_page = admin_client.get(reverse("admin:billing_pricingconfig_change", args=[basic.pk])).content.decode()
    assert "subscription cost changes" in change_page and f"pricing_config__id__exact={basic.pk}" in change_page


def test_filters_and_search(admin_client):
    response = admin_client.get(CHANGELIST, {"plan": "premium", "is_active__exact": "1"})
    assert [c.plan for c in response.context["cl"].result_list] == ["premium"]
    response = admin_client.get(CHANGELIST, {"q": "Default pricing: standard"})
    assert [c.plan for c in response.context["cl"].result_list] == ["standard"]
    response = admin_client.get(CHANGELIST, {"variant_id": "nope"})
    assert list(response.context["cl"].result_list) == []


def test_preview_action_and_page_show_subscriptions_and_mrr(admin_client, basic):
    user = User.objects.create_user(email="sub@example.com")
    for status, price in (("active", "9.99"), ("past_due", "9.99"), ("paused", "9.99"), ("cancelled", "9.99")):
        Subscription.objects.create(
            user=user, plan="basic", status=status, price=Decimal(price), base_cost=Decimal(price),
            delivery_cost=0, tax_amount=0, discount_amount=0, loyalty_discount=0, total_cost=Decimal(price),
        )  # fmt: skip
    draft = PricingConfig.objects.create(
        name="Basic 2030",
        plan="basic",
        base_price=Decimal("12.99"),
        is_active=False,
        effective_from=datetime.datetime(2030, 1, 1, tzinfo=UTC),
    )
    response = admin_client.post(CHANGELIST, {"action": "preview_impact", "_selected_action": [draft.pk]})
    assert response.status_code == 200
    (preview,) = response.context["previews"]
    assert (preview.subscriptions, preview.live_subscriptions, preview.changed) == (3, 2, 3)
    assert (preview.mrr_before, preview.mrr_after) == (Decimal("19.98"), Decimal("25.98"))
    html = response.content.decode()
    assert "19.98" in html and "25.98" in html and "Basic 2030" in html
    page = admin_client.get(reverse("admin:billing_pricingconfig_preview", args=[draft.pk]))
    assert page.status_code == 200 and page.context["previews"][0].mrr_after == Decimal("25.98")
    assert Subscription.objects.filter(total_cost=Decimal("12.99")).count() == 0  # nothing written
    viewer = staff("view_pricingconfig")
    assert viewer.get(reverse("admin:billing_pricingconfig_preview", args=[draft.pk])).status_code == 200
