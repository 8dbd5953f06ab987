"""Issue 14, points 7 and 8: the real server on SQLite under concurrent deliveries, admin lockout,
and the production settings profile under `check --deploy`."""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.test import Client

from accounts.models import User
from billing.models import PaymentIntent, StripeEvent, Subscription
from loyalty.models import LoyaltyAccount
from migrations_ops.validation import run_validation
from tests import stripe_fixtures as sf
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent


def _deliver(base: str, payload: dict) -> tuple[int, str, str | None]:
    raw = sf.body(payload)
    request = urllib.request.Request(
        base + sf.URL,
        data=raw,
        method="POST",
        headers={"Content-Type": "application/json", "Stripe-Signature": sf.sign(raw)},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(), response.headers.get("Retry-After")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()[:300], exc.headers.get("Retry-After")


@pytest.fixture
def sqlite_server(migrated_db):
    """`manage.py runserver` (threaded, like the tester's) on the scratch SQLite file."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_subprocess",
        "DATABASE_URL": migrated_db.url,
        "STRIPE_WEBHOOK_SECRET": sf.SECRET,
        "STRIPE_LIVEMODE": "false",
        "SQLITE_TIMEOUT": "2",
    }
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stderr.close()


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_concurrent_deliveries_on_sqlite_all_apply_and_a_locked_database_is_503(migrated_db, sqlite_server):
    using = migrated_db.alias
    user = User.objects.db_manager(using).create_user(email="concurrent@example.com")
    sub = Subscription.objects.using(using).create(user=user, plan="basic", price="9.99")
    meta = {"subscription_id": str(sub.pk)}
    now = int(time.time())
    payloads = []
    for _ in range(5):  # ten deliveries at once: five new intents, each created + succeeded
        pi = sf.new_id("pi")
        payloads.append(sf.event("payment_intent.created", sf.intent(id=pi, amount=1000, metadata=meta), now))
        succeeded = sf.intent("succeeded", id=pi, amount=1000, metadata=meta)
        payloads.append(sf.event("payment_intent.succeeded", succeeded, now + 1))
    start = threading.Barrier(len(payloads))

    def deliver(payload):
        start.wait()
        return _deliver(sqlite_server, payload)

    with ThreadPoolExecutor(len(payloads)) as pool:
        results = list(pool.map(deliver, payloads))
    assert [status for status, _, _ in results] == [200] * 10, results
    connections_alias_close(using)
    assert StripeEvent.objects.using(using).count() == 10
    assert set(PaymentIntent.objects.using(using).values_list("status", flat=True)) == {"succeeded"}
    assert LoyaltyAccount.objects.using(using).get(user=user).points_balance == 5 * 10  # basic: 1 per dollar
    assert run_validation(using=using).ok

    # Someone holds the write lock longer than SQLITE_TIMEOUT: 503 with Retry-After, nothing written.
    holder = sqlite3.connect(migrated_db.name, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        late = sf.event("payment_intent.created", sf.intent(id=sf.new_id("pi"), metadata=meta))
        status, text, retry_after = _deliver(sqlite_server, late)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (status, retry_after) == (503, "5"), text
    assert not StripeEvent.objects.using(using).filter(event_id=late["id"]).exists()
    assert _deliver(sqlite_server, late)[0] == 200  # Stripe's retry succeeds


def connections_alias_close(alias: str) -> None:
    """Drop the test's own connection so it reads what the server committed."""
    from django.db import connections

    connections[alias].close()


@pytest.mark.django_db
def test_admin_login_locks_out_after_repeated_failures():
    User.objects.create_superuser(email="admin@example.com", password="correct horse battery")
    ok = Client().post("/admin/login/", {"username": "admin@example.com", "password": "correct horse battery"})
    assert ok.status_code == 302  # the right password works before any failure

    attacker = Client()
    statuses = [
        attacker.post("/admin/login/", {"username": "admin@example.com", "password": f"guess{n}"}).status_code
        for n in range(20)
    ]
    assert statuses[:4] == [200] * 4  # the form again, with its error
    assert set(statuses[5:]) == {429}  # locked out from the fifth failure on
    right = attacker.post("/admin/login/", {"username": "admin@example.com", "password": "correct horse battery"})
    assert right.status_code == 429
    assert "_auth_user_id" not in attacker.session
    assert attacker.get("/admin/").status_code == 302  # still sent to the login page


def _check_deploy(**env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "DATABASE_URL")}
    full_env.update(DJANGO_SETTINGS_MODULE="config.settings_production", **env)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_profile_passes_check_deploy_without_warnings():
    result = _check_deploy(SECRET_KEY=secrets.token_urlsafe(64), ALLOWED_HOSTS="billing.example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    # the base settings are what the tester saw: the same check warns there
    base = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert base.returncode != 0 and "security.W004" in base.stderr + base.stdout


def test_production_profile_refuses_to_start_without_a_secret_key():
    result = _check_deploy(ALLOWED_HOSTS="billing.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
