from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_expand"
    label = "ma_expand"
    default_auto_field = "django.db.models.BigAutoField"
