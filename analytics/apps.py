from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register this app's invariants with validate_db (migrations_ops never imports the app).
        from analytics import integrity  # noqa: F401
