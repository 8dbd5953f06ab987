from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_online_rename"
    label = "ma_online_rename"
    default_auto_field = "django.db.models.BigAutoField"
