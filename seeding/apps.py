from django.apps import AppConfig


class SeedingConfig(AppConfig):
    """Demo data across the domain apps (`seed_demo_data`): the one package that imports them all.

    No models and no migrations; an app only so that Django finds its command."""

    name = "seeding"
    verbose_name = "Demo data"
