"""SQLite errors classed by SQLite's own error code (busy, locked, interrupted), never by words in the
message: a table whose name contains 'locked' or 'interrupted' is no lock timeout and no cancel."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing

import pytest
from django.db.utils import OperationalError

from migrations_ops.engines import get_engine
from tests import dbs

# Runs for minutes unless interrupted (the test interrupts it at once).
LONG_QUERY = (
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10000000000) SELECT count(*) FROM n"
)


@pytest.fixture
def sqlite_db(tmp_path, django_db_blocker):
    """A fresh, empty SQLite file registered as a Django alias."""
    with django_db_blocker.unblock():
        db = dbs.new_database("sqlite", tmp_path)
        yield db
        db.connection.close()
        dbs.dispose(db)


def failure(db, sql: str) -> OperationalError:
    """The error Django raises for ``sql`` (a django.db.utils error raised from sqlite3's own)."""
    with pytest.raises(OperationalError) as raised:
        with db.connection.cursor() as cursor:
            cursor.execute(sql)
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    return raised.value


def test_lock_timeout_is_sqlites_busy_code_not_the_word_locked(sqlite_db):
    engine = get_engine(sqlite_db.alias)
    create = "CREATE TABLE django_celery_beat_clockedschedule (id integer)"
    with sqlite_db.connection.cursor() as cursor:
        cursor.execute(create)
    exists = failure(sqlite_db, create)
    assert "clockedschedule already exists" in str(exists)
    assert not engine.is_lock_timeout(exists)
    assert not engine.is_transient(exists)  # not retried as a conflict
    assert not engine.cannot_continue(exists)

    # Another connection holds the write lock: writing here with no busy wait fails with SQLITE_BUSY.
    with closing(sqlite3.connect(sqlite_db.name, timeout=0, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        engine.set_lock_timeout(0)
        busy = failure(sqlite_db, "INSERT INTO django_celery_beat_clockedschedule VALUES (1)")
        other.execute("ROLLBACK")
    assert busy.__cause__.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
    assert engine.is_lock_timeout(busy) and engine.is_transient(busy)
    assert not engine.is_cancelled(busy)


def test_cancel_is_sqlites_interrupt_code_not_the_word_interrupted(sqlite_db):
    engine = get_engine(sqlite_db.alias)
    create = "CREATE TABLE interrupted_x (id integer)"
    with sqlite_db.connection.cursor() as cursor:
        cursor.execute(create)
    exists = failure(sqlite_db, create)
    assert "interrupted_x already exists" in str(exists)
    assert not engine.is_cancelled(exists)
    assert not engine.cannot_continue(exists)

    # A statement interrupted from another thread (as the interrupt watcher does), until it ends.
    done = threading.Event()

    def interrupt_until_done() -> None:
        while not done.wait(0.05):
            engine.cancel_running_statement()

    watcher = threading.Thread(target=interrupt_until_done)
    watcher.start()
    try:
        interrupted = failure(sqlite_db, LONG_QUERY)
    finally:
        done.set()
        watcher.join()
    assert interrupted.__cause__.sqlite_errorcode & 0xFF == sqlite3.SQLITE_INTERRUPT
    assert engine.is_cancelled(interrupted) and engine.cannot_continue(interrupted)
    assert not engine.is_lock_timeout(interrupted)
