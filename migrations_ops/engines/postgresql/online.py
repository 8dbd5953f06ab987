"""The online primitives (safe_migrate --online) and what tells a backfill to back off.

The server's readiness, planning joins for small batches, the state of a concurrent index build,
how far the standbys' replay lags, sessions waiting on locks, the oldest transaction holding back
vacuum, the WAL position (its rate), and how much WAL the server's checkpoints are sized for.
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

    def commit_without_flush(self) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")

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

    def lock_waiters(self, table: str) -> int:
        with self.connection.cursor() as cursor:
            # Queued on the table, or on one of its rows: the first session waiting for a row holds the
            # row's tuple lock and waits on the holder's transaction id, the next ones wait on the tuple.
            cursor.execute(
                "SELECT count(DISTINCT w.pid) FROM pg_locks w WHERE NOT w.granted AND w.pid <> pg_backend_pid() "
                "AND (w.relation = to_regclass(%s) OR (w.locktype = 'transactionid' AND EXISTS ("
                "SELECT 1 FROM pg_locks t WHERE t.pid = w.pid AND t.locktype = 'tuple' "
                "AND t.relation = to_regclass(%s))))",
                [self.connection.ops.quote_name(table)] * 2,
            )
            return int(cursor.fetchone()[0])

    def oldest_transaction_s(self) -> float:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT COALESCE(EXTRACT(EPOCH FROM max(clock_timestamp() - xact_start)), 0) FROM pg_stat_activity "
                "WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            return float(cursor.fetchone()[0])

    def active_sessions(self) -> int | None:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND state = 'active' "
                "AND pid <> pg_backend_pid()"
            )
            return int(cursor.fetchone()[0])

    def wal_position(self) -> int | None:
        with self.connection.cursor() as cursor:
            # Where WAL is inserted, not yet written: a batch committed without a flush counts at once.
            cursor.execute("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")
            return int(cursor.fetchone()[0])

    def next_transaction_id(self) -> int | None:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
            return int(cursor.fetchone()[0])

    def checkpoint_spacing(self) -> tuple[int, float] | None:
        # The server starts a checkpoint when this much WAL was written since the last one began
        # (XLogCheckpointNeeded: max_wal_size / (1 + checkpoint_completion_target)), else after
        # checkpoint_timeout.
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_size_bytes(current_setting('max_wal_size')) "
                "/ (1 + current_setting('checkpoint_completion_target')::float8), "
                "EXTRACT(EPOCH FROM current_setting('checkpoint_timeout')::interval)"
            )
            distance, timeout = cursor.fetchone()
        return int(distance), float(timeout)
