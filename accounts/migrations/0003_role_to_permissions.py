from django.db import migrations

from migrations_ops.operations import BatchKey, RunSQLBatched

# Frozen copy of the mapping at the time of this migration (never import app code here). Plain
# users already hold their permissions through 0002's column default: only admins and staff are
# rewritten, one set-based statement (or key-range batches with `safe_migrate --online`).
FORWARD = {
    "postgresql": """
UPDATE users SET permissions = CASE role
    WHEN 'admin' THEN '{"admin": true, "manage_users": true}'::jsonb
    ELSE '{"admin": false, "manage_users": true}'::jsonb END
WHERE role IN ('admin', 'staff') AND NOT (permissions @> '{"manage_users": true}'::jsonb
    AND permissions->'admin' = to_jsonb(role = 'admin')) AND {batch}
""",
    "sqlite": """
UPDATE users SET permissions = CASE role
    WHEN 'admin' THEN '{"admin": true, "manage_users": true}'
    ELSE '{"admin": false, "manage_users": true}' END
WHERE role IN ('admin', 'staff') AND NOT (json_extract(permissions, '$.manage_users') = 1
    AND json_extract(permissions, '$.admin') = (role = 'admin')) AND {batch}
""",
}
# The role back from the permissions (for rows that have them). Each statement touches only rows
# that still need it (the online path runs it once more over the whole table at the end).
REVERSE = {
    "postgresql": """
UPDATE users SET role = CASE
    WHEN (permissions->>'admin')::boolean THEN 'admin'
    WHEN (permissions->>'manage_users')::boolean THEN 'staff'
    ELSE 'user' END
WHERE permissions ? 'admin' AND role IS DISTINCT FROM CASE
    WHEN (permissions->>'admin')::boolean THEN 'admin'
    WHEN (permissions->>'manage_users')::boolean THEN 'staff'
    ELSE 'user' END AND {batch}
""",
    "sqlite": """
UPDATE users SET role = CASE
    WHEN json_extract(permissions, '$.admin') THEN 'admin'
    WHEN json_extract(permissions, '$.manage_users') THEN 'staff'
    ELSE 'user' END
WHERE json_type(permissions, '$.admin') IS NOT NULL AND role IS NOT CASE
    WHEN json_extract(permissions, '$.admin') THEN 'admin'
    WHEN json_extract(permissions, '$.manage_users') THEN 'staff'
    ELSE 'user' END AND {batch}
""",
}

# Earlier versions of this file that databases may have applied, reviewed as equivalent for them
# (validate_db's migration_checksums accepts these; see README "Migration file checksums").
REVIEWED_CHECKSUMS = {
    "22d000680509b394c6b18a32610b7d3d87827085972fc519e85a797459253fbc": (
        "the same role-to-permissions mapping, rewritten from ORM updates to one batchable SQL statement"
    ),
}


class Migration(migrations.Migration):
    """Fill users.permissions from users.role (reverse: derive role back from permissions)."""

    dependencies = [("accounts", "0002_user_permissions")]

    operations = [
        RunSQLBatched(
            FORWARD,
            REVERSE,
            key=BatchKey("users"),
            description="Permissions of admins and staff from their role",
        )
    ]
