from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_raises"
    label = "ma_raises"
    default_auto_field = "django.db.models.BigAutoField"
