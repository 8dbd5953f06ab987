"""Connecting to the test PostgreSQL server by URL: shared by tests/settings.py (is it reachable?)
and tests/dbs.py (create and drop scratch databases). Imports no Django settings, so the settings
module can use it."""

from __future__ import annotations

import psycopg2

from migrations_ops.database_url import parse_database_url


def connect(url: str, **options):
    """A psycopg2 connection to the database of `url`; `options` go to psycopg2 (e.g. connect_timeout)."""
    cfg = parse_database_url(url)
    return psycopg2.connect(
        dbname=cfg["NAME"],
        user=cfg.get("USER") or None,
        password=cfg.get("PASSWORD") or None,
        host=cfg.get("HOST") or None,
        port=cfg.get("PORT") or None,
        **options,
    )
