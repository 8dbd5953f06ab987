from django.apps import AppConfig


class Config(AppConfig):
    name = "tests.migration_apps.ma_online_guard"
    label = "ma_online_guard"
