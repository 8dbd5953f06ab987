from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_fts"
    label = "ma_fts"
    default_auto_field = "django.db.models.BigAutoField"
