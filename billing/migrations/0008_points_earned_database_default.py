from django.db import migrations

from billing.migration_ops import PostgreSQLOnlySQL


class Migration(migrations.Migration):
    """subscriptions.points_earned keeps a database default (0), also on databases that applied
    billing 0002 before it declared db_default: code that predates the column keeps inserting
    subscriptions during a deploy. A catalog-only change; a no-op where 0002 already set it."""

    dependencies = [("billing", "0007_stripe_refunds_disputes")]

    operations = [
        PostgreSQLOnlySQL("ALTER TABLE subscriptions ALTER COLUMN points_earned SET DEFAULT 0", migrations.RunSQL.noop)
    ]
