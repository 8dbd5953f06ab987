from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_rename_model"
    label = "ma_rename_model"
    default_auto_field = "django.db.models.BigAutoField"
