from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_orphan"
    label = "ma_orphan"
    default_auto_field = "django.db.models.BigAutoField"
