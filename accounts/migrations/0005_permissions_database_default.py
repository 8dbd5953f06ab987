from django.db import migrations

from migrations_ops.operations import PostgreSQLOnlySQL

# Earlier versions of this file that databases may have applied, reviewed as equivalent for them
# (validate_db's migration_checksums accepts these; see README "Migration file checksums").
REVIEWED_CHECKSUMS = {
    "59b881a6b2edae9f10860a98c793f5540d735fa1bf4a415e7342cc6213717cb9": (
        "the import only: PostgreSQLOnlySQL moved from billing.migration_ops to migrations_ops.operations (the same class, the same SQL), so that accounts does not import billing"
    ),
}


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
