"""Other databases on this server: scratch copies and restore targets beside this one.

They are looked for, made and dropped through the server's maintenance database (``postgres``).
"""

from __future__ import annotations

from typing import Any

import psycopg2
from psycopg2 import sql as pgsql

from migrations_ops.engines.postgresql.sessions import Connections
from migrations_ops.errors import BadInput, first_line


class Databases(Connections):
    """Whether this database exists, and creating or dropping it; the settings of one beside it."""

    def scratch_settings(self, label: str) -> dict[str, Any]:
        settings = {**self.settings_dict, "OPTIONS": dict(self.settings_dict.get("OPTIONS") or {})}
        suffix = f"_{label}"
        settings["NAME"] = self._dbname()[: 63 - len(suffix)] + suffix
        return settings

    def database_exists(self) -> bool:
        with self.maintenance_connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self._dbname()])
            return cur.fetchone() is not None

    def create_database(self) -> None:
        with self.maintenance_connection() as conn:
            try:
                with conn.cursor() as cur:
                    cur.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(self._dbname())))
            except psycopg2.Error as exc:
                raise BadInput(f"cannot create database {self._dbname()}: {first_line(exc)}") from None

    def drop_database(self) -> None:
        self.connection.close()
        with self.maintenance_connection() as conn, conn.cursor() as cur:
            cur.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(self._dbname())))
