from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_irreversible"
    label = "ma_irreversible"
    default_auto_field = "django.db.models.BigAutoField"
