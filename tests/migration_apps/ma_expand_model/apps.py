from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_expand_model"
    label = "ma_expand_model"
    default_auto_field = "django.db.models.BigAutoField"
