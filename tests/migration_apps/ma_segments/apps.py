from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_segments"
    label = "ma_segments"
    default_auto_field = "django.db.models.BigAutoField"
