"""PricingConfig admin: permissions, impact preview, history, filters and search."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.admin.templatetags.admin_list import result_headers
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


def test_changelist_shows_compact_prices_and_window_columns(admin_client, basic):
    PricingConfig.objects.create(
        name="Premium 2026",
        plan="premium",
        variant_id="chef",
        base_price=Decimal("59.99"),
        delivery_fee=Decimal("4.50"),
        tax_rate=Decimal("0.0725"),
        discount_rate=Decimal("0.1000"),
        effective_from=datetime.datetime(2026, 1, 1, tzinfo=UTC),
        effective_until=datetime.datetime(2026, 12, 31, 12, 30, tzinfo=UTC),
    )
    response = admin_client.get(CHANGELIST, {"q": "Premium 2026"})
    html = response.content.decode()
    headers = [str(header["text"]).lower() for header in result_headers(response.context["cl"])]
    assert headers[1:] == ["name", "plan", "variant", "prices", "window", "active"]  # after the checkbox
    assert "USD 59.99 + 4.50 delivery, tax 7.25%, -10%" in html
    assert "2026-01-01 → 2026-12-31 12:30" in html
    assert 'alt="True"' in html  # the active icon
    response = admin_client.get(CHANGELIST, {"q": "Default pricing: basic"})
    assert f"USD {basic.base_price}<" in response.content.decode()  # no zero parts
    assert "2020-01-01 → open-ended" in response.content.decode()
    ordered = admin_client.get(CHANGELIST, {"o": "5"})  # by the window column: effective_from
    starts = [c.effective_from for c in ordered.context["cl"].result_list]
    assert starts == sorted(starts)


@pytest.mark.parametrize(
    ("window", "marked"),
    [
        (("2030-03-01", "2031-01-01"), ["effective_from"]),  # starts inside the clash
        (("2029-01-01", "2030-03-01"), ["effective_until"]),  # ends inside it
        (("2029-01-01", ""), ["effective_from", "effective_until"]),  # the clash lies wholly inside
        (("2030-02-01", "2030-03-01"), ["effective_from", "effective_until"]),  # wholly inside the clash
    ],
)
def test_overlap_marks_the_date_fields_inside_the_clashing_window(admin_client, basic, window, marked):
    PricingConfig.objects.create(
        name="Chef H1 2030",
        plan="basic",
        variant_id="chef",
        base_price=Decimal("20.00"),
        effective_from=datetime.datetime(2030, 1, 1, tzinfo=UTC),
        effective_until=datetime.datetime(2030, 7, 1, tzinfo=UTC),
    )
    start, end = window
    data = form_data(
        basic,
        name="Chef try",
        variant_id="chef",
        effective_from_0=start,
        effective_from_1="00:00:00",
        effective_until_0=end,
        effective_until_1="00:00:00" if end else "",
    )
    response = admin_client.post(reverse("admin:billing_pricingconfig_add"), data)
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert sorted(field for field in form.errors if field != "__all__") == marked
    assert "already covers part of this window" in form.non_field_errors()[0]
    for field in marked:
        assert "Chef H1 2030" in form.errors[field][0]


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
