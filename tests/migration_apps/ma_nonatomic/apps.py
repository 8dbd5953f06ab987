from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_nonatomic"
    label = "ma_nonatomic"
    default_auto_field = "django.db.models.BigAutoField"
