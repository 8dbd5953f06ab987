from django.apps import AppConfig


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register this app's invariants with validate_db (migrations_ops never imports the app).
        from loyalty import integrity, receivers  # noqa: F401

        # Points for the payments billing announces (common.signals; billing never imports loyalty).
        receivers.connect()
