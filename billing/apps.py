from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register this app's invariants with validate_db (migrations_ops never imports the app).
        from billing import integrity  # noqa: F401
