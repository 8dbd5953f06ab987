from django.db import migrations

# Frozen copy of the mapping at the time of this migration (never import app code here).
ROLE_PERMISSIONS = {
    "admin": {"admin": True, "manage_users": True},
    "staff": {"admin": False, "manage_users": True},
    "user": {"admin": False, "manage_users": False},
}


def role_to_permissions(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    db = schema_editor.connection.alias
    # One set-based UPDATE per role, never a loop over users; rows that already hold their role's
    # permissions (every plain user, thanks to 0002's column default) are not rewritten.
    for role, permissions in ROLE_PERMISSIONS.items():
        User.objects.using(db).filter(role=role).exclude(permissions=permissions).update(permissions=permissions)


def permissions_to_role(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    users = User.objects.using(schema_editor.connection.alias).filter(permissions__has_key="admin")
    users.filter(permissions__admin=True).update(role="admin")
    users.filter(permissions__admin=False, permissions__manage_users=True).update(role="staff")
    users.filter(permissions__admin=False).exclude(permissions__manage_users=True).update(role="user")


class Migration(migrations.Migration):
    """Fill users.permissions from users.role (reverse: derive role back from permissions)."""

    dependencies = [("accounts", "0002_user_permissions")]

    operations = [migrations.RunPython(role_to_permissions, permissions_to_role, elidable=False)]
