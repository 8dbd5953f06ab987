from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_online_truncate"
    label = "ma_online_truncate"
