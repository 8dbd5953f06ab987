"""The custom user (`users` table) of the billing backend."""

from __future__ import annotations

import uuid

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.utils import timezone

# What the upgrade's data migration derives from `role` (and the reverse derives back).
ROLE_PERMISSIONS: dict[str, dict[str, bool]] = {
    "admin": {"admin": True, "manage_users": True},
    "staff": {"admin": False, "manage_users": True},
    "user": {"admin": False, "manage_users": False},
}


def user_permissions() -> dict[str, bool]:
    """The permissions of a plain user: the column default, so adding the column (accounts 0002)
    gives every existing row the common case without rewriting the table."""
    return dict(ROLE_PERMISSIONS["user"])


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra):
        if not email:
            raise ValueError("an email address is required")
        email = self.normalize_email(email).lower()
        role = extra.get("role", User.Role.USER)
        extra.setdefault("permissions", dict(ROLE_PERMISSIONS[role]))
        user = self.model(email=email, **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        extra.setdefault("role", User.Role.ADMIN)
        if extra["is_staff"] is not True or extra["is_superuser"] is not True:
            raise ValueError("a superuser needs is_staff=True and is_superuser=True")
        return self._create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        STAFF = "staff", "Staff"
        USER = "user", "User"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.USER, db_index=True)
    # Added by the upgrade (accounts 0002) and filled from `role` (accounts 0003).
    # db_default: code that predates the column keeps inserting users during a deploy.
    permissions = models.JSONField(default=user_permissions, db_default=ROLE_PERMISSIONS["user"], blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    # The Stripe customer (cus_...) whose payments are this user's: Stripe Billing and Checkout
    # intents carry no metadata of ours, only the customer. Filled by the webhook.
    stripe_customer_id = models.CharField(max_length=255, null=True, blank=True, unique=True)

    objects = UserManager()

    EMAIL_FIELD = "email"
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        db_table = "users"
        ordering = ["email"]
        constraints = [
            models.CheckConstraint(condition=models.Q(role__in=["admin", "staff", "user"]), name="users_role_valid"),
        ]

    def __str__(self) -> str:
        return self.email
