"""An application stand-in: what the code of the previous release does while a migration runs.

Every ``interval`` seconds it reads a subscription, updates one (its status), and every fifth
round inserts one naming the baseline columns only (old code does not know the new ones), on an
autocommit connection with no lock timeout, like a plain web request. It records the longest
wait of any statement, every error, and every write, so a test or benchmark can check that the
application was never blocked for long, never failed, and lost nothing.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import psycopg2


@dataclass
class WorkloadReport:
    rounds: int = 0
    longest_wait_s: float = 0.0
    longest_statement: str = ""
    errors: list[str] = field(default_factory=list)
    inserted: list[int] = field(default_factory=list)  # subscription ids
    updated: dict[int, str] = field(default_factory=dict)  # id -> the status written last


class AppWorkload(threading.Thread):
    """Runs until stopped (or ``max_seconds``); use as a context manager around the migration."""

    def __init__(self, url: str, interval: float = 0.05, seed: int = 1, max_seconds: float = 600) -> None:
        super().__init__(daemon=True)
        self.url = url.replace("postgres://", "postgresql://", 1)
        self.interval = interval
        self.random = random.Random(seed)
        self.max_seconds = max_seconds
        self.report = WorkloadReport()
        self._halt = threading.Event()

    def __enter__(self) -> AppWorkload:
        self.conn = psycopg2.connect(self.url, application_name="app-stand-in")
        self.conn.autocommit = True
        with self.conn.cursor() as cursor:
            cursor.execute("SELECT min(id), max(id), (SELECT id FROM users ORDER BY id LIMIT 1) FROM subscriptions")
            self.low, self.high, self.user_id = cursor.fetchone()
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._halt.set()
        self.join(timeout=30)
        self.conn.close()

    def _timed(self, cursor, sql: str, params: list) -> bool:
        started = time.monotonic()
        try:
            cursor.execute(sql, params)
            return True
        except psycopg2.Error as exc:
            self.report.errors.append(f"{sql.split()[0]}: {str(exc).strip().splitlines()[0]}")
            return False
        finally:
            waited = time.monotonic() - started
            if waited > self.report.longest_wait_s:
                self.report.longest_wait_s, self.report.longest_statement = waited, sql.split()[0]

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with self.conn.cursor() as cursor:
            while not self._halt.is_set() and time.monotonic() < deadline:
                row = self.random.randint(self.low, self.high)
                self._timed(cursor, "SELECT id, status, price FROM subscriptions WHERE id = %s", [row])
                status = self.random.choice(["active", "paused"])
                update = "UPDATE subscriptions SET status = %s, updated_at = now() WHERE id = %s"
                if self._timed(cursor, update, [status, row]):
                    self.report.updated[row] = status
                if self.report.rounds % 5 == 0 and self._timed(
                        cursor,
                        "INSERT INTO subscriptions (plan, status, price, currency, billing_interval, started_at, "
                        "created_at, updated_at, user_id) VALUES ('basic', 'active', 9.99, 'usd', 'month', now(), "
                        "now(), now(), %s) RETURNING id",
                        [self.user_id],
                    ):
                        self.report.inserted.append(cursor.fetchone()[0])
                self.report.rounds += 1
                self._halt.wait(self.interval)
