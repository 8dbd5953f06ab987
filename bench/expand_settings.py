"""Settings for bench_expand_contract.py: the project's settings plus the bench-only app expand_release.

DJANGO_SETTINGS_MODULE=bench.expand_settings .venv/bin/python manage.py ...
"""

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.expand_release.apps.Config"]
