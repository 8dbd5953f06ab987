from django.db import migrations

# Plain SQL that PostgreSQL and SQLite both run: one set-based statement whatever the number of
# users. Subscriptions are linked to these accounts by billing 0003's single backfill UPDATE.
CREATE_ACCOUNTS = """
INSERT INTO loyalty_accounts (user_id, points_balance, lifetime_points, tier, created_at, updated_at)
SELECT u.id, 0, 0, 'bronze', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP
FROM users u
WHERE NOT EXISTS (SELECT 1 FROM loyalty_accounts la WHERE la.user_id = u.id)
"""
# Only accounts that never saw a transaction are this migration's own; others hold history.
DELETE_EMPTY_ACCOUNTS = """
DELETE FROM loyalty_accounts
WHERE points_balance = 0 AND lifetime_points = 0
  AND NOT EXISTS (SELECT 1 FROM points_transactions pt WHERE pt.account_id = loyalty_accounts.id)
"""


def create_accounts(apps, schema_editor):
    schema_editor.execute(CREATE_ACCOUNTS)


def delete_accounts(apps, schema_editor):
    schema_editor.execute(DELETE_EMPTY_ACCOUNTS)


class Migration(migrations.Migration):
    """Create a loyalty account for each existing user."""

    dependencies = [
        ("loyalty", "0002_pointstransaction_payment_intent"),
        ("accounts", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_accounts, delete_accounts, elidable=False)]
