from django.db import migrations

from migrations_ops.operations import BatchKey, RunSQLBatched

# Plain SQL that PostgreSQL and SQLite both run: one set-based statement whatever the number of
# users. Subscriptions are linked to these accounts by billing 0003's single backfill UPDATE.
CREATE_ACCOUNTS = """
INSERT INTO loyalty_accounts (user_id, points_balance, lifetime_points, tier, created_at, updated_at)
SELECT u.id, 0, 0, 'bronze', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP
FROM users u
WHERE {batch} AND NOT EXISTS (SELECT 1 FROM loyalty_accounts la WHERE la.user_id = u.id)
"""
# Only accounts that never saw a transaction are this migration's own; others hold history.
DELETE_EMPTY_ACCOUNTS = """
DELETE FROM loyalty_accounts
WHERE {batch} AND points_balance = 0 AND lifetime_points = 0
  AND NOT EXISTS (SELECT 1 FROM points_transactions pt WHERE pt.account_id = loyalty_accounts.id)
"""


# Earlier versions of this file that databases may have applied, reviewed as equivalent for them
# (validate_db's migration_checksums accepts these; see README "Migration file checksums").
REVIEWED_CHECKSUMS = {
    "25d7b0771c6919b7fd9017dfef299c4049a0fcbcbf103f61e17f3414a02da373": (
        "the same statements, run through RunSQLBatched so that safe_migrate --online can batch them"
    ),
}


class Migration(migrations.Migration):
    """Create a loyalty account for each existing user."""

    dependencies = [
        ("loyalty", "0002_pointstransaction_payment_intent"),
        ("accounts", "0001_initial"),
    ]

    operations = [
        RunSQLBatched(
            CREATE_ACCOUNTS,
            DELETE_EMPTY_ACCOUNTS,
            key=BatchKey("users", alias="u"),
            reverse_key=BatchKey("loyalty_accounts"),
            description="A loyalty account for each existing user",
        )
    ]
