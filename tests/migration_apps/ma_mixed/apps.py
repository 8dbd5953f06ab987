from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_mixed"
    label = "ma_mixed"
    default_auto_field = "django.db.models.BigAutoField"
