"""Settings for `manage.py` subprocesses started by tests: the real settings (DATABASE_URL /
--database-url decide the database), plus the test-only migration apps named in
TEST_MIGRATION_APPS (comma-separated labels from tests/migration_apps)."""

import os

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS

INSTALLED_APPS = [
    *INSTALLED_APPS,
    *(
        f"tests.migration_apps.{label}.apps.Config"
        for label in filter(None, os.environ.get("TEST_MIGRATION_APPS", "").split(","))
    ),
]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The suite runs beside itself (pytest -n 2): another worker's sessions are no burst of this run's
# application. tests/test_online_control.py turns the load signal on where it is the subject.
MIGRATION_ONLINE_MAX_LOAD_RISE = float(os.environ.get("MIGRATION_ONLINE_MAX_LOAD_RISE", "0"))
