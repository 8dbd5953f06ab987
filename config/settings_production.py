"""Production profile: `DJANGO_SETTINGS_MODULE=config.settings_production`.

The base settings plus what `manage.py check --deploy` asks for (HTTPS only, HSTS, secure cookies,
trusted origins), static files from `collectstatic` only (compressed, hashed names), a SECRET_KEY
that must come from the environment, and Stripe in live mode unless STRIPE_LIVEMODE says otherwise.
tests/test_stripe_server.py (test_production_profile_passes_check_deploy_without_warnings) runs `check --deploy`
with it.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from config.settings import *  # noqa: F403
from config.settings import ALLOWED_HOSTS, env

# The dev default in config.settings is public: refuse to start rather than sign sessions with it.
SECRET_KEY = env.str("SECRET_KEY", default="")
if len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("SECRET_KEY must be set (50+ random characters) in production")
DEBUG = False

# Behind a TLS-terminating proxy, set SECURE_PROXY_SSL_HEADER_ENABLED=1 so Django trusts its
# X-Forwarded-Proto (only when the proxy always sets it: otherwise clients could spoof it).
if env.bool("SECURE_PROXY_SSL_HEADER_ENABLED", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
# The admin's forms post from these origins only; default: https:// + each allowed host.
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS", default=[f"https://{host.lstrip('.')}" for host in ALLOWED_HOSTS if host != "*"]
)

# Static files: only what `collectstatic` gathered into STATIC_ROOT (`manage.py serve` runs it before
# gunicorn starts), gzip-compressed, under content-hashed names that WhiteNoise lets clients cache for a year.
WHITENOISE_USE_FINDERS = False
WHITENOISE_AUTOREFRESH = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# A production server applies live payments only; a test-mode event is refused (and recorded).
STRIPE_LIVEMODE = env.bool("STRIPE_LIVEMODE", default=True)
