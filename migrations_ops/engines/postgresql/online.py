"""The online primitives (safe_migrate --online) and replica lag.

The server's readiness, planning joins for small batches, the state of a concurrent index build,
and how far the standbys' replay lags.
"""

from __future__ import annotations

from migrations_ops.engines.postgresql import tools
from migrations_ops.engines.postgresql.sessions import Connections
from migrations_ops.errors import BadInput


class Online(Connections):
    """What migrations_ops/online asks of PostgreSQL beside the migration itself."""

    def check_online_ready(self) -> None:
        """Online steps rely on catalog-only ADD COLUMN with a default (11+) and TID range scans (14+)."""
        if tools.major(self.server_version()) < 14:
            raise BadInput("safe_migrate --online needs PostgreSQL 14 or newer")

    def plan_for_small_batches(self) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")

    def replica_lag_seconds(self) -> float:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT COALESCE(MAX(EXTRACT(EPOCH FROM GREATEST(replay_lag, write_lag, flush_lag))), 0) "
                "FROM pg_stat_replication"
            )
            return float(cursor.fetchone()[0])

    def index_state(self, name: str) -> str | None:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT i.indisvalid AND i.indisready FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = %s AND pg_table_is_visible(c.oid)",
                [name],
            )
            row = cursor.fetchone()
        return None if row is None else ("valid" if row[0] else "invalid")
