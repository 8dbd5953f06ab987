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


class MigrationRun(models.Model):
    """One safe_migrate run, written after its outcome (so a rollback or restore cannot erase it)."""

    started_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=32, db_index=True)
    exit_code = models.SmallIntegerField()
    applied = models.JSONField(default=list)
    backup = models.CharField(max_length=255, blank=True)
    rollback = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    durations = models.JSONField(default=dict)
    operator = models.CharField(max_length=150, blank=True)
    host = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField(null=True)

    class Meta:
        db_table = "migrations_ops_migrationrun"
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.started_at:%Y-%m-%d %H:%M:%S} {self.status}"


class MigrationFileOrigin(models.Model):
    """Which installed distribution (and version) shipped an applied migration's file.

    Written beside its :class:`AppliedMigrationChecksum` (empty for the project's own apps), so an
    edit that arrived with a package upgrade is reported as such, not as tampering. ``repaired_*``
    record the last time an operator re-recorded the checksum with ``repair_checksums``.
    """

    app = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    distribution = models.CharField(max_length=255, blank=True)
    version = models.CharField(max_length=64, blank=True)
    repaired_at = models.DateTimeField(null=True, blank=True)
    repair_reason = models.TextField(blank=True)
    repaired_by = models.CharField(max_length=150, blank=True)

    class Meta:
        db_table = "migrations_ops_migration_origin"
        constraints = [models.UniqueConstraint(fields=["app", "name"], name="migrations_ops_origin_app_name_uniq")]

    def __str__(self) -> str:
        return f"{self.app}.{self.name} {self.distribution} {self.version}".strip()
