from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_conflict"
    label = "ma_conflict"
    default_auto_field = "django.db.models.BigAutoField"
