"""Test settings: SQLite as `default`, the real PostgreSQL server as alias `postgres`.

PostgreSQL comes from TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
When it cannot be reached the alias is left out and PostgreSQL tests skip with the reason, unless
REQUIRE_POSTGRES=1, in which case the run fails at start-up: CI must never pass by skipping.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from config.settings import *  # noqa: F403
from migrations_ops.database_url import parse_database_url, redact_url

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"


def _postgres_unreachable_reason(url: str) -> str | None:
    import psycopg2

    from tests.postgres import connect

    try:
        conn = connect(url, connect_timeout=3)
    except psycopg2.Error as exc:
        return f"PostgreSQL at {redact_url(url)} is unreachable: {str(exc).strip().splitlines()[0]}"
    conn.close()
    return None


POSTGRES_UNAVAILABLE = _postgres_unreachable_reason(TEST_DATABASE_URL)
if POSTGRES_UNAVAILABLE and REQUIRE_POSTGRES:
    raise RuntimeError(f"REQUIRE_POSTGRES=1 but {POSTGRES_UNAVAILABLE}")

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
if not POSTGRES_UNAVAILABLE:
    DATABASES["postgres"] = parse_database_url(TEST_DATABASE_URL)
    DATABASES["postgres"]["TEST"] = {"NAME": f"test_billing_{os.getpid()}"}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

_TMP = Path(tempfile.mkdtemp(prefix="billing-tests-"))
BACKUP_DIR = _TMP / "backups"
MIGRATION_LOG = _TMP / "log" / "migration.log"


def _remove_tmp() -> None:
    # Every process that loads these settings (each xdist worker) made its own directory: a run
    # must not leave them behind in /tmp.
    if _TMP.exists():
        shutil.rmtree(_TMP)


atexit.register(_remove_tmp)

# The suite runs beside itself (pytest -n 2): another worker's sessions are no burst of this run's
# application. tests/test_online_control.py turns the load signal on where it is the subject.
MIGRATION_ONLINE_MAX_LOAD_RISE = float(os.environ.get("MIGRATION_ONLINE_MAX_LOAD_RISE", "0"))
