from django.db import migrations

from migrations_ops.operations import BatchKey, RunSQLBatched

# Fails (division by zero) at the batch that reaches subscription ONLINE_FAIL_AT, after the
# upgrade's expand and backfill have run: the online run must undo all of it.
FORWARD = """
UPDATE subscriptions SET points_earned = 7
WHERE points_earned <> 7 AND {batch} AND 1 / (CASE WHEN id >= (SELECT min(id) + 40 FROM subscriptions) THEN 0 ELSE 1 END) = 1
"""
REVERSE = "UPDATE subscriptions SET points_earned = 0 WHERE points_earned = 7 AND {batch}"


class Migration(migrations.Migration):
    """A batched data change that fails midway (for the online failure tests)."""

    dependencies = [("billing", "0003_backfill_subscription_costs")]
    operations = [RunSQLBatched(FORWARD, REVERSE, key=BatchKey("subscriptions"), description="Fails midway")]
