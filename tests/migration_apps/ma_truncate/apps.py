from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_truncate"
    label = "ma_truncate"
    default_auto_field = "django.db.models.BigAutoField"
