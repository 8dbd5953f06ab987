from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_slow"
    label = "ma_slow"
    default_auto_field = "django.db.models.BigAutoField"
