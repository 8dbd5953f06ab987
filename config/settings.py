"""Settings, read from the environment (see the configuration table in README.md)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import environ

from migrations_ops.database_url import parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-change-me-in-production-0123456789")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "accounts",
    "billing",
    "loyalty",
    "analytics",
    "seeding",  # seed_demo_data: demo data across the domain apps (no models)
    "migrations_ops",
    "axes",  # admin login lockout (django-axes): see AXES_* below
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's CSS and JS) from the application itself, DEBUG or not: see STATIC_* below.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into the lockout response.
    "axes.middleware.AxesMiddleware",
]

# django-axes checks every authenticate() call first; ModelBackend does the real work.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

DATABASE_URL = env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {"default": parse_database_url(DATABASE_URL)}
# SQLite: write transactions take the write lock at BEGIN (IMMEDIATE) and wait up to SQLITE_TIMEOUT
# seconds for it. A DEFERRED transaction that reads, then writes, fails at once with "database is
# locked" when another writer got there first; an immediate one queues (concurrent webhooks).
SQLITE_TIMEOUT = env.float("SQLITE_TIMEOUT", default=5.0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(transaction_mode="IMMEDIATE", timeout=SQLITE_TIMEOUT)

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files are served by WhiteNoise (middleware above), so the admin is styled with DEBUG off,
# under runserver and gunicorn alike. These settings (development, tests) find each file in the
# apps' static/ folders when it is asked for (no collectstatic needed, edits show at once);
# config.settings_production serves only what `collectstatic` gathered into STATIC_ROOT
# (`manage.py serve` runs it), compressed, under hashed names cached for a year.
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "var" / "static")))
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# migrations_ops: where backups and the audit trail live, and how it behaves.
BACKUP_DIR = Path(env.str("BACKUP_DIR", default=str(BASE_DIR / "var" / "backups")))
MIGRATION_LOG = Path(env.str("MIGRATION_LOG", default=str(BASE_DIR / "var" / "log" / "migration.log")))
BACKUP_KEEP = env.int("BACKUP_KEEP", default=10)
MIGRATION_LOCK_TIMEOUT = env.str("MIGRATION_LOCK_TIMEOUT", default="5s")
# safe_migrate --online: every step waits at most this long for its lock (the application queues
# behind a waiting ALTER, so this bounds the application's wait too), retried with backoff and
# jitter within the budget; batches aim at the target duration; the backfill pauses while a
# standby's replay lag is above the bound (0: do not watch standbys), for at most the replica wait.
MIGRATION_ONLINE_LOCK_TIMEOUT = env.str("MIGRATION_ONLINE_LOCK_TIMEOUT", default="200ms")
MIGRATION_ONLINE_STATEMENT_TIMEOUT = env.str("MIGRATION_ONLINE_STATEMENT_TIMEOUT", default="1s")
MIGRATION_ONLINE_RETRY_BUDGET = env.str("MIGRATION_ONLINE_RETRY_BUDGET", default="2min")
MIGRATION_ONLINE_BATCH_SIZE = env.int("MIGRATION_ONLINE_BATCH_SIZE", default=5000)
MIGRATION_ONLINE_BATCH_TARGET = env.str("MIGRATION_ONLINE_BATCH_TARGET", default="100ms")
MIGRATION_ONLINE_BATCH_PAUSE = env.str("MIGRATION_ONLINE_BATCH_PAUSE", default="0s")
MIGRATION_ONLINE_MAX_REPLICA_LAG = env.str("MIGRATION_ONLINE_MAX_REPLICA_LAG", default="10s")
MIGRATION_ONLINE_REPLICA_WAIT = env.str("MIGRATION_ONLINE_REPLICA_WAIT", default="10min")
# Back-off of an online backfill (docs/online.md): sessions queued on locks (0: not watched), a
# transaction holding back vacuum ("0": not watched), WAL in MB/s (0: not watched), the longest back-off.
MIGRATION_ONLINE_MAX_LOCK_WAITERS = env.int("MIGRATION_ONLINE_MAX_LOCK_WAITERS", default=5)
MIGRATION_ONLINE_MAX_TRANSACTION_AGE = env.str("MIGRATION_ONLINE_MAX_TRANSACTION_AGE", default="10min")
MIGRATION_ONLINE_MAX_WAL_RATE = env.float("MIGRATION_ONLINE_MAX_WAL_RATE", default=0.0)
# A burst of application load: its statements running at once, against its usual level (0: not watched).
MIGRATION_ONLINE_MAX_LOAD_RISE = env.float("MIGRATION_ONLINE_MAX_LOAD_RISE", default=3.0)
# Pace the walks' WAL to what the server's checkpoints are sized for, once they wrote half of it.
MIGRATION_ONLINE_CHECKPOINT_PACING = env.bool("MIGRATION_ONLINE_CHECKPOINT_PACING", default=False)
MIGRATION_ONLINE_BACKOFF_WAIT = env.str("MIGRATION_ONLINE_BACKOFF_WAIT", default="10min")
# Operations of migrations this project cannot rewrite (a package's) that --online may run in one
# transaction under the lock timeout, as reviewed: {"app_label.migration_name": {"bounded": [...],
# "brief": [...], "reason": ..., "reviewed_by": ...}} (docs/online.md). Code, reviewed like code:
# not read from the environment.
MIGRATION_ONLINE_DECLARATIONS: dict[str, dict] = {}
# The safety point before a migration (docs/backups.md): "dump" (a logical backup: small databases,
# SQLite) or "pgbackrest" (a restore point on a recent pgBackRest backup, PostgreSQL; seconds at any size).
MIGRATION_SAFETY_POINT = env.str("MIGRATION_SAFETY_POINT", default="dump")
PGBACKREST_STANZA = env.str("PGBACKREST_STANZA", default="")
PGBACKREST_CONFIG = env.str("PGBACKREST_CONFIG", default="")
PGBACKREST_COMMAND = env.str("PGBACKREST_COMMAND", default="pgbackrest")
PGBACKREST_BACKUP_TYPE = env.str("PGBACKREST_BACKUP_TYPE", default="incr")
PGBACKREST_MAX_AGE = env.str("PGBACKREST_MAX_AGE", default="24h")
PGBACKREST_ARCHIVE_TIMEOUT = env.str("PGBACKREST_ARCHIVE_TIMEOUT", default="60s")
PGBACKREST_STOP_COMMAND = env.str("PGBACKREST_STOP_COMMAND", default="")
PGBACKREST_START_COMMAND = env.str("PGBACKREST_START_COMMAND", default="")
PGBACKREST_RESTORE_TIMEOUT = env.str("PGBACKREST_RESTORE_TIMEOUT", default="30min")
PGBACKREST_PG_BIN = env.str("PGBACKREST_PG_BIN", default="")

# Loyalty tiers: the lowest lifetime-points threshold of each tier.
LOYALTY_TIER_THRESHOLDS = {"bronze": 0, "silver": 1_000, "gold": 5_000, "platinum": 20_000}

# Stripe: the signing secret of the webhook endpoint (whsec_...). Empty refuses every webhook (400).
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
# The mode of that secret: an event whose `livemode` differs is refused and recorded (a test-mode
# endpoint pointed at production must never apply test payments). settings_production defaults to True.
STRIPE_LIVEMODE = env.bool("STRIPE_LIVEMODE", default=False)
# Loyalty points per whole unit of a currency (lower-case ISO code, as Stripe sends it) for payments
# the subscription's pricing config does not price: no subscription, or another currency.
# A currency missing here earns nothing. Env syntax: LOYALTY_POINTS_PER_UNIT="usd=1,eur=1,jpy=0.01".
LOYALTY_POINTS_PER_UNIT = {
    code.lower(): Decimal(rate) for code, rate in env.dict("LOYALTY_POINTS_PER_UNIT", default={"usd": "1"}).items()
}

# payment_analytics volumes add up minor units of this currency only; every currency has its own
# rows in payment_currency_analytics.
ANALYTICS_CURRENCY = env.str("ANALYTICS_CURRENCY", default="usd").lower()

# django-axes: 5 failed logins for one username from one address lock that pair out for an hour
# (HTTP 429); a correct password during the lockout is refused too. Locking by the pair keeps an
# attacker from locking every admin out by username alone.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=1.0)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The admin's login form posts the email as `username`; axes would otherwise look for `email`,
# read nothing, and the right password (a different username) would get through a lockout.
AXES_USERNAME_FORM_FIELD = "username"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="WARNING")},
}
