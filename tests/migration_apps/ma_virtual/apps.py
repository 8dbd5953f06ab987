from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_virtual"
    label = "ma_virtual"
    default_auto_field = "django.db.models.BigAutoField"
