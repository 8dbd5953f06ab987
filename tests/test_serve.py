"""Static files with DEBUG off (WhiteNoise) and `manage.py serve`: collectstatic, safe_migrate --noinput,
then gunicorn; when safe_migrate fails no server ever listens and the exit code is safe_migrate's.

The servers are real: `manage.py serve` in a subprocess on a fresh SQLite file, gunicorn on a free port,
requests over HTTP.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.test import Client

from tests.dbs import run_manage, start_manage
from tests.helpers import free_port, listening, serving_env, wait_until_listening

CSS_LINK = re.compile(r'href="(/static/admin/css/base[^"]*\.css)"')


def fetch(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode(errors="replace")


def tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        return sorted(name for (name,) in rows)


@pytest.fixture
def serve_env(tmp_path):
    return lambda *args, **variables: serving_env(tmp_path, *args, **variables)


PRODUCTION = {
    "SECRET_KEY": secrets.token_urlsafe(64),
    "ALLOWED_HOSTS": "127.0.0.1",
    "SECURE_SSL_REDIRECT": "false",  # plain HTTP on the loopback, as behind a TLS-terminating proxy
    "DEBUG": "false",
}


def test_static_files_are_served_with_debug_off(settings):
    """The tester's unstyled admin: with DEBUG off, nothing served /static/ before WhiteNoise."""
    assert settings.DEBUG is False
    response = Client().get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert b"--body-bg" in b"".join(response.streaming_content)


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["development", "production"])
def test_serve_migrates_a_fresh_database_then_serves_the_styled_admin(tmp_path, serve_env, profile):
    db = tmp_path / "fresh.sqlite3"
    port = free_port()
    env = serve_env("config.settings_production", **PRODUCTION) if profile == "production" else serve_env()
    server = start_manage(f"sqlite:///{db}", "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1", env=env)
    try:
        wait_until_listening(server, port)
        base = f"http://127.0.0.1:{port}"
        status, _, login = fetch(f"{base}/admin/login/")
        assert status == 200 and 'name="username"' in login
        (css_url,) = set(CSS_LINK.findall(login))
        status, headers, css = fetch(base + css_url)
        assert status == 200
        assert headers["Content-Type"].startswith("text/css")
        assert "--body-bg" in css  # admin/css/base.css itself
        if profile == "production":
            # collectstatic ran: hashed names from the manifest, cached for good; compressed copies made.
            assert re.fullmatch(r"/static/admin/css/base\.[0-9a-f]{12}\.css", css_url), css_url
            assert "immutable" in headers["Cache-Control"]
            assert (tmp_path / "static" / "staticfiles.json").exists()
            assert list((tmp_path / "static" / "admin" / "css").glob("base.*.css.gz"))
        else:
            assert css_url == "/static/admin/css/base.css"
        assert {"pricing_configs", "subscriptions", "users"} <= set(tables(db))
    finally:
        server.terminate()
        out, err = server.communicate(timeout=60)
    assert "Status: applied" in out, out + err
    assert f"Starting gunicorn on 127.0.0.1:{port}" in out
    assert "GET /admin/login/" in out  # gunicorn's access log
    assert not listening(port)


@pytest.mark.slow
def test_serve_refuses_to_start_when_safe_migrate_fails(tmp_path, serve_env):
    db = tmp_path / "fresh.sqlite3"
    port = free_port()
    result = run_manage(
        f"sqlite:///{db}", "serve", "--bind", f"127.0.0.1:{port}", env=serve_env(TEST_MIGRATION_APPS="ma_raises")
    )
    assert result.returncode == 1, result.stdout + result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1
    assert errors[0].startswith("error: not starting the server: ma_raises.0003_fails failed")
    assert "Status: rolled_back" in result.stdout
    assert "gunicorn" not in result.stdout + result.stderr
    assert not listening(port)
    assert tables(db) == []  # rolled back: nothing of the plan is left, not even django_migrations


def test_serve_refuses_bad_input_before_touching_anything(tmp_path, serve_env):
    db = tmp_path / "fresh.sqlite3"
    result = run_manage(f"sqlite:///{db}", "serve", "--workers", "0", env=serve_env())
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --workers must be at least 1 (got 0)"
    assert not db.exists()
    assert not (tmp_path / "static").exists()
