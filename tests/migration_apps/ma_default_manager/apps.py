from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_default_manager"
    label = "ma_default_manager"
    default_auto_field = "django.db.models.BigAutoField"
