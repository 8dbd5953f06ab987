"""Side connections (the one way to open them), hardened sessions, lock timeouts, the migration lock.

:class:`Connections` is what every part of the PostgreSQL engine builds on: the database's name, the
libpq parameters (shared by psycopg2 and the client tools' environment) and :meth:`side_connection`,
the one way to open a dedicated connection beside Django's. :class:`Sessions` holds the session
methods of the interface: hardened sessions, lock timeouts, cancelling, which errors mean what, the
other sessions on the database, and the advisory migration lock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import psycopg2

from migrations_ops.engines.base import DatabaseEngine, LockOwner, causes
from migrations_ops.engines.postgresql import tools
from migrations_ops.errors import BadInput, LockHeld, first_line

# One advisory lock key for "a schema-changing operation runs on this database" ("mops" in ASCII).
LOCK_KEY = 0x6D6F7073
LOCK_APP_PREFIX = "mops-lock"

# A dead server or network is noticed within about 25 s instead of a TCP timeout of minutes.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30000,
    "connect_timeout": 10,
}
# The server's maintenance database: where a connection goes to create, drop or look for this one.
MAINTENANCE_DB = "postgres"


def lock_timeout_ms(seconds: float) -> int:
    """A lock timeout in the milliseconds PostgreSQL counts in (never 0: 0 means no timeout)."""
    return max(1, int(seconds * 1000))


class Connections(DatabaseEngine):
    """The database's name, its libpq parameters, and side connections to it."""

    # The migration lock's session (migration_lock): never "another session" to list or end.
    _lock_backend_pid: int | None = None

    def _dbname(self) -> str:
        return str(self.settings_dict.get("NAME") or "")

    def connect_params(self, dbname: str | None = None) -> dict[str, Any]:
        """psycopg2/libpq keyword arguments for a dedicated connection (not Django's)."""
        cfg = self.settings_dict
        params: dict[str, Any] = {"dbname": dbname or self._dbname()}
        for key, setting in (("user", "USER"), ("password", "PASSWORD"), ("host", "HOST"), ("port", "PORT")):
            if cfg.get(setting):
                params[key] = cfg[setting]
        for key in tools.OPTION_ENV:
            if key in (cfg.get("OPTIONS") or {}):
                params[key] = cfg["OPTIONS"][key]
        return params

    def tool_env(self, dbname: str | None = None) -> dict[str, str]:
        """Environment for pg_dump/pg_restore/psql: inherited PG* variables removed, ours set."""
        return tools.tool_env(self.connect_params(dbname))

    @contextmanager
    def side_connection(self, dbname: str | None = None, **extra) -> Iterator[psycopg2.extensions.connection]:
        """A dedicated psycopg2 connection (not Django's) in autocommit, closed when the block ends: the
        one way the engine opens a connection of its own. BadInput when the server cannot be reached."""
        try:
            conn = psycopg2.connect(**self.connect_params(dbname), **extra)
        except psycopg2.OperationalError as exc:
            raise BadInput(f"database unreachable: {first_line(exc, 'connection failed')}") from None
        conn.autocommit = True
        try:
            yield conn
        finally:
            conn.close()

    def maintenance_connection(self) -> AbstractContextManager[psycopg2.extensions.connection]:
        """A side connection to the server's maintenance database (this one may not exist)."""
        return self.side_connection(dbname=MAINTENANCE_DB)

    def other_sessions(self) -> list[str]:
        """The other client sessions on this database, one line each (the migration lock's excluded)."""
        with self.side_connection() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT pid, usename, application_name, client_addr, state FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s "
                "AND backend_type = 'client backend' ORDER BY pid",
                [self._lock_backend_pid or 0],
            )
            return [
                f"pid {pid} user {user} app {app or '-'} from {addr or 'local'} ({state})"
                for pid, user, app, addr, state in cur.fetchall()
            ]


class Sessions(Connections):
    """Lock timeouts, cancelling, error kinds, other sessions and the migration lock."""

    def terminate_other_sessions(self) -> list[str]:
        self.connection.close()
        ended = self.other_sessions()
        with self.side_connection() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND pid <> %s AND backend_type = 'client backend'",
                [self._lock_backend_pid or 0],
            )
        return ended

    # --- applying migrations ---
    def set_lock_timeout(self, seconds: float) -> None:
        """lock_timeout for every statement of the current transaction (RunPython/RunSQL too)."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{lock_timeout_ms(seconds)}ms"])

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return any(getattr(e, "pgcode", None) == "55P03" for e in causes(exc))

    def is_connection_lost(self, exc: BaseException) -> bool:
        for cause in causes(exc):
            code = getattr(cause, "pgcode", None) or ""
            if code.startswith("57P0") or code.startswith("08") or isinstance(cause, psycopg2.InterfaceError):
                return True
            if isinstance(cause, psycopg2.OperationalError) and not code:
                return True  # libpq's own errors carry no SQLSTATE: the server or the network is gone
        raw = self.connection.connection
        return raw is not None and bool(raw.closed)

    def is_cancelled(self, exc: BaseException) -> bool:
        return any(getattr(e, "pgcode", None) == "57014" for e in causes(exc))

    def is_integrity_error(self, exc: BaseException) -> bool:
        # SQLSTATE class 23: integrity constraint violation (not null, foreign key, check, unique)
        return any(str(getattr(e, "pgcode", "") or "").startswith("23") for e in causes(exc))

    def is_transient(self, exc: BaseException) -> bool:
        # 55P03 lock_not_available, 40P01 deadlock_detected, 40001 serialization_failure
        return any(getattr(e, "pgcode", None) in ("55P03", "40P01", "40001") for e in causes(exc))

    def cancel_running_statement(self) -> None:
        raw = self.connection.connection
        if raw is not None and not raw.closed:
            raw.cancel()

    @contextmanager
    def hardened_session(self, lock_timeout: float) -> Iterator[None]:
        options = self.settings_dict.setdefault("OPTIONS", {})
        saved = dict(options)
        bound = f"-c lock_timeout={lock_timeout_ms(lock_timeout)}"
        options.update(KEEPALIVES)
        options["options"] = f"{options.get('options', '')} {bound}".strip()
        self.connection.close()  # reconnect with the options above
        try:
            yield
        finally:
            options.clear()
            options.update(saved)
            with suppress(Exception):  # a dead connection has nothing left to close
                self.connection.close()

    def lock_tables(self, tables: list[str]) -> None:
        existing = sorted(set(tables) & set(self.table_names()))
        if existing:
            names = ", ".join(self.connection.ops.quote_name(name) for name in existing)
            with self.connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")

    # --- the migration lock ---
    @contextmanager
    def migration_lock(self, owner: LockOwner) -> Iterator[LockOwner]:
        since = datetime.fromisoformat(owner.since).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        app = f"{LOCK_APP_PREFIX} pid={owner.pid} since={since} host={owner.host}"[:63]
        with self.side_connection(application_name=app) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_lock(%s), pg_backend_pid()", [LOCK_KEY])
                acquired, backend_pid = cur.fetchone()
                if not acquired:
                    holder = self._lock_holder(cur)
                    raise LockHeld(
                        f"another safe_migrate/restore_db holds the migration lock on {self._dbname()}: "
                        f"{holder}; nothing was changed"
                    )
            self._lock_backend_pid = backend_pid
            try:
                yield owner
            finally:
                self._lock_backend_pid = None
                with suppress(psycopg2.Error), conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])

    @staticmethod
    def _lock_holder(cur) -> str:
        cur.execute(
            "SELECT a.application_name, a.pid, a.backend_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = %s AND l.objid = %s AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF],
        )
        row = cur.fetchone()
        if not row:
            return "a session that has just released it (retry)"
        app, backend_pid, started = row
        fields = dict(re.findall(r"(pid|since|host)=(\S+)", app or ""))
        if fields.get("pid"):
            return f"pid {fields['pid']} on {fields.get('host', '?')} since {fields.get('since', '?')}"
        return f"server backend {backend_pid} ({app or 'unknown application'}) since {started.isoformat()}"
