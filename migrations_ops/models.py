"""migrations_ops' own tables (additive: the safe_migrate work adds its MigrationRun here)."""

from __future__ import annotations

from django.db import models


class AppliedMigrationChecksum(models.Model):
    """The checksum of a migration file when it was applied (Flyway-style edit detection).

    Written by the post_migrate handler in :mod:`migrations_ops.checksums`: a forwards migration
    stores its file's checksum, a backwards one deletes it. ``baseline`` marks migrations that were
    applied before this table existed, whose checksum was first recorded afterwards.
    """

    app = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    applied_at = models.DateTimeField()
    baseline = models.BooleanField(default=False)

    class Meta:
        db_table = "migrations_ops_applied_checksum"
        constraints = [models.UniqueConstraint(fields=["app", "name"], name="migrations_ops_checksum_app_name_uniq")]

    def __str__(self) -> str:
        return f"{self.app}.{self.name} {self.sha256[:12]}"
