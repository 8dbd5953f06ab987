"""No password is ever echoed: URLs as operators mistype them, and what the driver says about them.

Passwords are generated (hypothesis) from characters that appear nowhere else in a URL or a
message (Greek capitals) mixed with the characters that break naive masking (':', '/', '@', '%',
'?', '#', spaces, quotes); a password begins and ends with a distinctive character, so any part
of it that leaks, at either end or in the middle, shows up as a Greek capital in the output.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, OperationalError, connections
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from migrations_ops.aliases import temporary_alias
from migrations_ops.database_url import parse_database_url, redact_url
from migrations_ops.errors import scrub
from tests.dbs import manage_env, run_manage

DISTINCT = "ΞΨΩΣΔ"
TRICKY = ":/@%?#' \"=!$&*+,;~"
passwords = st.builds(
    lambda first, middle, last: first + middle + last,
    st.sampled_from(DISTINCT),
    st.text(alphabet=DISTINCT + TRICKY + "ab09", max_size=12),
    st.sampled_from(DISTINCT),
)
users = st.sampled_from(["postgres", "app", "u_1"])
hosts = st.sampled_from(["127.0.0.1", "db.internal", "127.0.0.1:5432", "[::1]:5432"])
# The well-formed URL and the typos operators make: a lost '//' or ':', a third '/', no user.
SHAPES = [
    "{scheme}://{user}:{pw}@{host}/billing",
    "{scheme}//{user}:{pw}@{host}/billing",
    "{scheme}:/{user}:{pw}@{host}/billing",
    "{scheme}:///{user}:{pw}@{host}/billing",
    "{scheme}:{pw}@{host}/billing",
    "{scheme}://{user}:{pw}@{host}/billing?sslmode=require",
]
schemes = st.sampled_from(["postgres", "postgresql", "pgsql", "sqlite", "mysql", "Postgres"])


def leaked(text: str) -> str:
    return "".join(c for c in text if c in DISTINCT)


@given(shape=st.sampled_from(SHAPES), scheme=schemes, user=users, pw=passwords, host=hosts)
@hsettings(max_examples=400, deadline=None)
def test_a_url_is_never_echoed_with_its_password(shape, scheme, user, pw, host):
    url = shape.format(scheme=scheme, user=user, pw=pw, host=host)
    assert not leaked(redact_url(url)), redact_url(url)
    if not any(c.isspace() for c in pw):  # in free text a space ends a URL: configured ones are known secrets
        assert not leaked(scrub(f"could not use {url} (see {url!r})"))
    try:
        parse_database_url(url)
    except ImproperlyConfigured as exc:
        assert not leaked(str(exc)), str(exc)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgres://app:pw@db:5432/billing", "postgres://app:***@db:5432/billing"),
        ("postgres://app@db:5432/billing", "postgres://app@db:5432/billing"),
        ("postgres://u:s3c/r@t@h/db", "postgres://u:***@h/db"),
        ("postgres:s3cret@host/db", "postgres:***@host/db"),
        ("postgres://u:s3cret/db", "postgres://u:***/db"),  # a forgotten '@'
        ("postgres://[::1]:5432/db", "postgres://[::1]:5432/db"),
        ("sqlite:////var/lib/app/db.sqlite3", "sqlite:////var/lib/app/db.sqlite3"),
    ],
)
def test_what_stays_readable(url, shown):
    assert redact_url(url) == shown


@pytest.mark.postgres_only
@given(pw=passwords, user=users)
# Found by hypothesis: a '"' in the password split libpq's quoted piece, and 'Δ' was left outside it.
@example(pw='Ξ?"Δ=Ξ', user="postgres")
@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_drivers_messages_are_masked_too(django_db_blocker, pw, user):
    """``postgres:///u:pw@host/db`` parses, with the password inside the database NAME: the server's
    "database ... does not exist" quotes it back. Real connections to the real server."""
    if settings.POSTGRES_UNAVAILABLE:
        pytest.skip(settings.POSTGRES_UNAVAILABLE)
    url = f"postgres:///{user}:{pw}@127.0.0.1/billing"
    try:
        config = parse_database_url(url)
    except ImproperlyConfigured as exc:
        assert not leaked(str(exc))
        return
    config.update(HOST="127.0.0.1", USER="postgres")
    with django_db_blocker.unblock(), temporary_alias(config) as alias:
        # '?' or '#' in the password start a query or fragment: libpq then refuses the options instead.
        with pytest.raises(DatabaseError) as failure:
            connections[alias].ensure_connection()
        said = str(failure.value)
        if isinstance(failure.value, OperationalError) and "does not exist" in said:
            assert leaked(said), "the server should quote the name back (else this proves nothing)"
        assert not leaked(scrub(said)), scrub(said)


@pytest.mark.parametrize(
    "url",
    [
        "postgres//postgres:s3cret@127.0.0.1/db",
        "postgresql//postgres:s3cret@127.0.0.1/db",
        "postgres:/postgres:s3cret@127.0.0.1/db",
        "postgres:s3cret@host/db",
        "postgres:///postgres:s3cret@127.0.0.1/db",
    ],
)
def test_the_reported_urls_through_the_command(url):
    done = run_manage(url, "validate_db", env=manage_env("config.settings"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "s3cret" not in done.stdout + done.stderr
