from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_rename_nonatomic"
    label = "ma_rename_nonatomic"
    default_auto_field = "django.db.models.BigAutoField"
