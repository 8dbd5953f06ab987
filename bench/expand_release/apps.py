from django.apps import AppConfig


class Config(AppConfig):
    name = "bench.expand_release"
    label = "expand_release"
    default_auto_field = "django.db.models.BigAutoField"
