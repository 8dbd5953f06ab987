from django.apps import AppConfig


class MigrationsOpsConfig(AppConfig):
    name = "migrations_ops"
    verbose_name = "Migration operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from migrations_ops import checksums, conf, validation

        # Settings the project does not define get their defaults (BACKUP_DIR, MIGRATION_LOG, ...).
        conf.apply_defaults()
        # Record migration file checksums after every migrate (once per run: sender is this app).
        post_migrate.connect(checksums.record_after_migrate, sender=self, dispatch_uid="migrations_ops.checksums")
        validation.load_checks()
