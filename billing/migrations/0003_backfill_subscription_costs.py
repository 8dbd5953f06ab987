from django.db import migrations
from django.db.models import F

COST_COLUMNS = ("base_cost", "delivery_cost", "tax_amount", "discount_amount", "loyalty_discount", "total_cost")


def backfill_costs(apps, schema_editor):
    Subscription = apps.get_model("billing", "Subscription")
    # One UPDATE for all six columns: a baseline subscription cost exactly its price.
    Subscription.objects.using(schema_editor.connection.alias).filter(total_cost__isnull=True).update(
        base_cost=F("price"),
        delivery_cost=0,
        tax_amount=0,
        discount_amount=0,
        loyalty_discount=0,
        total_cost=F("price"),
    )


def clear_costs(apps, schema_editor):
    Subscription = apps.get_model("billing", "Subscription")
    Subscription.objects.using(schema_editor.connection.alias).filter(total_cost__isnull=False).update(
        **{column: None for column in COST_COLUMNS}
    )


class Migration(migrations.Migration):
    """Backfill the cost breakdown of existing subscriptions from their baseline price."""

    dependencies = [("billing", "0002_enhanced_subscription_payment_models")]

    operations = [migrations.RunPython(backfill_costs, clear_costs, elidable=False)]
