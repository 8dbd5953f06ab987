from django.db import migrations

from billing.migration_ops import PostgreSQLOnlySQL


class Migration(migrations.Migration):
    """users.permissions keeps a database default (a plain user's permissions), also on databases
    that applied accounts 0002 before it declared db_default: code that predates the column keeps
    inserting users during a deploy. A catalog-only change; a no-op where 0002 already set it."""

    dependencies = [("accounts", "0004_user_stripe_customer_id")]

    operations = [
        PostgreSQLOnlySQL(
            """ALTER TABLE users ALTER COLUMN permissions SET DEFAULT '{"admin": false, "manage_users": false}'::jsonb""",
            migrations.RunSQL.noop,
        )
    ]
