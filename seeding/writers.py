"""Bulk writers of batches of rows (tuples of str, or the writer's ``null`` for NULL): COPY on
PostgreSQL, ``executemany`` on SQLite, picked by :func:`migrations_ops.dialect.for_vendor`."""

from __future__ import annotations

import io
import queue
import sys
import threading
from collections.abc import Iterable, Sequence

from migrations_ops.dialect import for_vendor
from seeding.bulk import ConstraintsAside


class Writer:
    """Bulk-inserts batches of rows into one table."""

    null: str | None = None

    def __init__(self, connection) -> None:
        self.connection = connection
        self.qn = connection.ops.quote_name

    def write(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        raise NotImplementedError

    def lock(self, tables: Iterable[str]) -> None:
        """Keep concurrent writers out of `tables` until commit (the keys we assign must stay free)."""

    def begin_bulk(self, planned: dict[str, int]) -> list[str]:
        """Before the first write: make loading `planned` rows per table cheap (inside the transaction);
        return the tables it prepared."""
        return []

    def table_done(self, table: str) -> None:
        """Every row of `table` has been written."""

    def end_bulk(self) -> None:
        """After the last write: undo :meth:`begin_bulk` exactly (raises if the data breaks a constraint)."""

    def sync(self) -> None:
        """Wait until every write submitted so far has reached the database."""

    def close(self) -> None:
        """Release what the writer holds (always called, before the transaction ends)."""


class PostgresCopyWriter(Writer):
    """COPY in text format, sent by a background thread so the server ingests one batch while
    Python generates the next (two cores busy instead of one, taking turns). For a bulk load the
    tables' constraints and indexes are set aside (:class:`ConstraintsAside`) and re-created, in the
    same transaction, as soon as each table is complete."""

    null = "\\N"
    QUEUE_BATCHES = 8

    def __init__(self, connection) -> None:
        super().__init__(connection)
        self._aside = ConstraintsAside(connection, self._submit)
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._abort = False

    # -- the background thread: statements and COPYs, strictly in submission order -----------------

    def _submit(self, sql: str, payload: str | None = None) -> None:
        self._raise_error()
        if self._thread is None:
            self._queue = queue.Queue(maxsize=self.QUEUE_BATCHES)
            self._thread = threading.Thread(target=self._work, name="seed-copy", daemon=True)
            self._thread.start()
        self._queue.put((sql, payload))

    def _work(self) -> None:
        raw = self.connection.connection  # the DB-API connection: Django's wrapper is per thread
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None and not self._abort:
                    sql, payload = item
                    with raw.cursor() as cursor:
                        if payload is None:
                            cursor.execute(sql)
                        else:
                            cursor.copy_expert(sql, io.StringIO(payload), size=1 << 20)
            except BaseException as exc:  # re-raised in the seeding thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._abort = True
            with self.connection.wrap_database_errors:  # psycopg2's error as Django's
                raise error

    def sync(self) -> None:
        """Wait until everything submitted has run; raise its error, if any."""
        if self._queue is not None:
            self._queue.join()
        self._raise_error()

    def close(self) -> None:
        """Stop the thread (skipping what is still queued when seeding failed) before the
        transaction ends: nothing may run on the connection behind a rollback."""
        if self._thread is None:
            return
        if self._error is not None or sys.exc_info()[0] is not None:
            self._abort = True
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    # -- the writer API ----------------------------------------------------------------------------

    def write(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        if not rows:
            return
        payload = "\n".join(["\t".join(row) for row in rows]) + "\n"
        self._submit(f"COPY {self.qn(table)} ({', '.join(self.qn(c) for c in columns)}) FROM STDIN", payload)

    def lock(self, tables: Iterable[str]) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {', '.join(self.qn(t) for t in tables)} IN SHARE ROW EXCLUSIVE MODE")

    def begin_bulk(self, planned: dict[str, int]) -> list[str]:
        return self._aside.begin(planned)

    def table_done(self, table: str) -> None:
        self._aside.table_done(table)

    def end_bulk(self) -> None:
        self._aside.end(self.sync)


class SQLiteWriter(Writer):
    null = None

    def write(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        if not rows:
            return
        placeholders = ", ".join(["%s"] * len(columns))
        sql = f"INSERT INTO {self.qn(table)} ({', '.join(self.qn(c) for c in columns)}) VALUES ({placeholders})"
        with self.connection.cursor() as cursor:
            cursor.executemany(sql, rows)


WRITERS: dict[str, type[Writer]] = {"postgresql": PostgresCopyWriter, "sqlite": SQLiteWriter}


def writer_for(connection) -> Writer:
    return for_vendor(WRITERS, connection, feature="seed_demo_data")(connection)
