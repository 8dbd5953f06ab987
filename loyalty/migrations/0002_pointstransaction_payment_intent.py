import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """Link points transactions to the Stripe payment intent that earned them."""

    dependencies = [
        ("billing", "0002_enhanced_subscription_payment_models"),
        ("loyalty", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="pointstransaction",
            name="payment_intent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="points_transactions",
                to="billing.paymentintent",
            ),
        ),
    ]
