"""One expand/contract release at scale, with both releases' code running through it.

    .venv/bin/python bench/bench_expand_contract.py            # 1M members + 1M subscriptions
    .venv/bin/python bench/bench_expand_contract.py --quick    # 100k + 100k (a smoke run, a few minutes)
    .venv/bin/python bench/bench_expand_contract.py --rows 4000000 --output bench/results-expand-contract-4m
    .venv/bin/python bench/bench_expand_contract.py --render   # rewrite the .md from the .json only

The release is the bench-only app bench/expand_release (settings: bench/expand_settings.py, which
adds it to the project's settings): 0001 is the old release (ec_members, ec_subscriptions with a
foreign key to it, plan_name, an integer seats, a nullable currency, legacy_code), 0002 the new one
in one migration: plan_name renamed to plan, seats widened to bigint, currency made NOT NULL,
legacy_code removed, status added NOT NULL with a Python default. models.py is the new release.

A template database is built once (the project migrated to its head, expand_release at 0001, N
members and N subscriptions inserted with generate_series, every fourth currency NULL); each way
below runs on its own copy (CREATE DATABASE ... TEMPLATE), and the copies are dropped at the end
(the template too, unless --keep).

Two application stand-ins (threads, each its own autocommit psycopg2 connection, no lock timeout)
write as each release's Django code would: every ~20 ms an INSERT naming all of its release's
columns, a single-row UPDATE of the name and seats (the old release in the first half of the seeded
ids, the new release in the second half, so the last value of every row is known) and a read of the
row; each statement's wall time is recorded (the longest is "the wait"), so are errors and every
id and value written.

1. online: the old release starts; `safe_migrate --online expand_release` (the expand: status
   "expanded"); the new release starts; validate_db during the window, and both releases' writes
   read through the other release's columns; the old release stops (the deploy);
   `safe_migrate --online --complete` (status "completed"); the new release stops; validate_db;
   the schema, leftovers and every write checked.
2. one transaction: plain `safe_migrate expand_release` on a fresh copy while the old release runs
   (it waits for the whole transaction, then fails: its column is gone, which is why the window
   exists; its errors after the commit are counted apart).
3. SIGKILL: the expand killed during its backfill, then `--online --resume` (and --complete); the
   expand killed the same way, then `--online --abort`; --complete killed while it waits for a lock
   (a session holds ACCESS SHARE, as tests/test_online_window.py does), then --complete again.
   Each ends at the old or the new schema (compared with the template's and the one-transaction
   path's), with every write of both releases and every seeded row present.

Results: bench/results-expand-contract.json (one entry per --rows, replaced on a rerun; an entry's
"notes" are written by hand after a run and kept by --render) and bench/results-expand-contract.md
rendered from it. bench/trace_backfill_batches.py shows every backfill batch of the expand (pages,
seconds). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from _common import ROOT, admin, connect, copy_database, drop_database, manage_argv, run_measured, url_of
from run import cpu_times, machine, other_sessions, steal_pct

SETTINGS = "bench.expand_settings"
APP = "expand_release"
TABLE = "ec_subscriptions"
PREFIX = "bench_ec_"
TARGET_WAIT_S = 0.2
BASELINE_FACTOR = 1.5  # see wait_met
OLD_INSERT = (
    f"INSERT INTO {TABLE} (member_id, plan_name, seats, currency, legacy_code, started_at) "
    "VALUES (%s, %s, %s, %s, 'old', now()) RETURNING id"
)
NEW_INSERT = (
    f"INSERT INTO {TABLE} (member_id, plan, seats, currency, status, started_at) "
    "VALUES (%s, %s, %s, %s, 'trial', now()) RETURNING id"
)


# --- the application stand-ins ------------------------------------------------------------------
@dataclass
class Release:
    """One release's code on ec_subscriptions: insert, single-row update, read, every `interval` s."""

    url: str
    new: bool
    rows: int  # seeded rows: the old release updates ids 1..rows/2, the new one rows/2+1..rows
    interval: float = 0.02
    inserted: dict[int, tuple[str, int, str | None]] = field(default_factory=dict)  # id -> name, seats, currency
    updated: dict[int, tuple[str, int]] = field(default_factory=dict)  # id -> last name, seats written
    errors: list[tuple[float, str]] = field(default_factory=list)  # (time.monotonic(), first line)
    statements: int = 0
    longest_wait_s: float = 0.0
    longest_statement: str = ""
    longest_at: float = 0.0

    def __post_init__(self) -> None:
        self.label = "new" if self.new else "old"
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"release-{self.label}")

    def start(self) -> Release:
        self._began = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(timeout=600)
        self.ran_s = time.monotonic() - self._began

    def _timed(self, cursor, sql: str, params: list) -> bool:
        started = time.monotonic()
        try:
            cursor.execute(sql, params)
            return True
        except psycopg2.Error as exc:
            self.errors.append((time.monotonic(), str(exc).strip().splitlines()[0]))
            return False
        finally:
            took = time.monotonic() - started
            self.statements += 1
            if took > self.longest_wait_s:
                self.longest_wait_s, self.longest_statement, self.longest_at = took, sql.split(" (")[0][:60], started

    def _run(self) -> None:
        connection = psycopg2.connect(
            self.url.replace("postgres://", "postgresql://", 1), application_name="ec-release"
        )
        connection.autocommit = True
        name_column = "plan" if self.new else "plan_name"
        half = self.rows // 2
        count = 0
        with connection.cursor() as cursor:
            while not self._halt.is_set():
                count += 1
                name = f"{self.label}-{count}"
                seats = 100_000 + count  # fits the integer column: both releases write through the window
                currency = "gbp" if self.new else (None if count % 2 else "eur")  # the old release writes NULLs
                member = (count * 104_729) % self.rows + 1
                if self._timed(cursor, NEW_INSERT if self.new else OLD_INSERT, [member, name, seats, currency]):
                    self.inserted[cursor.fetchone()[0]] = (name, seats, currency)
                target = (count * 7_919) % half + 1 + (half if self.new else 0)
                value = f"u-{name}"
                sql = f"UPDATE {TABLE} SET {name_column} = %s, seats = %s WHERE id = %s"
                if self._timed(cursor, sql, [value, seats + 1, target]):
                    self.updated[target] = (value, seats + 1)
                if self._timed(cursor, f"SELECT {name_column}, seats, currency FROM {TABLE} WHERE id = %s", [target]):
                    cursor.fetchone()
                self._halt.wait(self.interval)
        connection.close()

    def figures(self, since: float | None = None) -> dict:
        """The wait, the errors and the writes; given `since` (a time.monotonic()), when the first error came
        and when the longest wait began, in seconds after it."""
        errors = [message for _, message in self.errors]
        result = {
            "statements": self.statements,
            "longest_wait_s": round(self.longest_wait_s, 3),
            "longest_statement": self.longest_statement,
            "errors": len(errors),
            "error_examples": sorted(set(errors))[:3],
            "inserted": len(self.inserted),
            "updated_rows": len(self.updated),
            "ran_s": round(getattr(self, "ran_s", 0.0), 1),
        }
        if since is not None:
            result["first_error_after_s"] = round(self.errors[0][0] - since, 2) if self.errors else None
            result["longest_wait_began_after_s"] = round(self.longest_at - since, 2)
        return result


class LockWaits(threading.Thread):
    """Every 10 ms, the stand-ins' sessions the server shows waiting on a lock, how long, and the
    statement of the session they wait for (pg_blocking_pids): tells a lock wait from a slow machine."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.halt = threading.Event()
        self.longest_s = 0.0
        self.waiter = ""
        self.blocker = ""
        self.longest_update_s = 0.0
        self.longest_update = ""
        self.updates: dict[tuple, float] = {}  # (pid, xact_start) -> the longest age seen: one batch each
        # A stand-in's statement running over 50 ms: what the server says it waits on, sample by sample
        # (a wait that is not a lock: CPU, WAL flush, buffer I/O...), in all and per statement.
        self.slow_waits: dict[str, int] = {}
        self.slow_statements: dict[tuple, dict] = {}  # (pid, query_start) -> age, events, query

    def run(self) -> None:
        conn = connect(self.url)
        with conn.cursor() as cursor:
            while not self.halt.is_set():
                cursor.execute(
                    "SELECT EXTRACT(EPOCH FROM clock_timestamp() - a.query_start), left(a.query, 60), "
                    "(SELECT left(b.query, 100) FROM pg_stat_activity b WHERE b.pid = (pg_blocking_pids(a.pid))[1]) "
                    "FROM pg_stat_activity a WHERE a.datname = current_database() AND a.wait_event_type = 'Lock' "
                    "AND a.application_name = 'ec-release' ORDER BY 1 DESC LIMIT 1"
                )
                row = cursor.fetchone()
                if row and row[0] > self.longest_s:
                    self.longest_s, self.waiter, self.blocker = float(row[0]), row[1], row[2] or ""
                cursor.execute(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), pid, query_start, "
                    "EXTRACT(EPOCH FROM clock_timestamp() - query_start), left(query, 60) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = 'ec-release' AND state = 'active' "
                    "AND clock_timestamp() - query_start > interval '50 milliseconds'"
                )
                for event, pid, started, age, text in cursor.fetchall():
                    self.slow_waits[event] = self.slow_waits.get(event, 0) + 1
                    seen = self.slow_statements.setdefault((pid, started), {"age_s": 0.0, "events": [], "query": text})
                    seen["age_s"] = max(seen["age_s"], float(age))
                    if event not in seen["events"]:
                        seen["events"].append(event)
                # The migration's data changes: how long one holds its row locks (its transaction's age).
                cursor.execute(
                    "SELECT EXTRACT(EPOCH FROM clock_timestamp() - xact_start), left(query, 100), pid, xact_start "
                    "FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND application_name <> 'ec-release' "
                    "AND query ILIKE 'UPDATE%' AND xact_start IS NOT NULL ORDER BY 1 DESC LIMIT 1"
                )
                row = cursor.fetchone()
                if row:
                    key = (row[2], row[3])
                    self.updates[key] = max(self.updates.get(key, 0.0), float(row[0]))
                if row and row[0] > self.longest_update_s:
                    self.longest_update_s, self.longest_update = float(row[0]), row[1]
                self.halt.wait(0.01)
        conn.close()

    def figures(self) -> dict:
        self.halt.set()
        self.join(timeout=10)
        return {
            "longest_lock_wait_s": round(self.longest_s, 3),
            "waiter": self.waiter,
            "blocked_by": self.blocker,
            "longest_migration_update_s": round(self.longest_update_s, 3),
            "longest_migration_update": self.longest_update,
            # Sampled every 10 ms: transactions shorter than that are mostly missed; the long ones are not.
            "migration_update_transactions_seen": len(self.updates),
            "over_0_1_s": sum(1 for age in self.updates.values() if age > 0.1),
            "over_0_2_s": sum(1 for age in self.updates.values() if age > 0.2),
            "over_1_s": sum(1 for age in self.updates.values() if age > 1.0),
            "longest_five_s": sorted((round(age, 3) for age in self.updates.values()), reverse=True)[:5],
            "slow_statement_waits": dict(sorted(self.slow_waits.items(), key=lambda item: -item[1])),
            # Statements the server saw run longer than the target, each with what it waited on.
            "over_target": sorted(
                (
                    {**seen, "age_s": round(seen["age_s"], 3), "waited_on": wait_kind(seen["events"])}
                    for seen in self.slow_statements.values()
                    if seen["age_s"] > TARGET_WAIT_S
                ),
                key=lambda seen: -seen["age_s"],
            ),
        }


def wait_kind(events: list[str]) -> str:
    """'lock' when a sample saw the statement wait on a lock; 'wal flush' when every wait seen was the WAL's
    (writing or syncing it: the machine's disk, which a stand-in waits on with no migration too); else
    'other' (CPU, buffer I/O...)."""
    if any(event.startswith("Lock:") for event in events):
        return "lock"
    if events and all(event.startswith(("IO:WAL", "LWLock:WAL")) for event in events):
        return "wal flush"
    return "other"


# --- the database -------------------------------------------------------------------------------
def query(url: str, sql: str, params: list | None = None) -> list[tuple]:
    conn = connect(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        conn.close()


def env_for(work: Path, **extra: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "BACKUP_DIR": str(work / "backups"),
        "MIGRATION_LOG": str(work / "migration.log"),
        "BACKUP_KEEP": "1000",
        **extra,
    }


def build_template(name: str, rows: int, work: Path) -> dict:
    """The project at its head, expand_release at 0001, `rows` members and subscriptions (SQL, fast)."""
    drop_database(name)
    admin(f'CREATE DATABASE "{name}"')
    url = url_of(name)
    started = time.monotonic()
    run_measured(manage_argv(url, "migrate", "--noinput", "-v0"), env=env_for(work))
    run_measured(manage_argv(url, "migrate", APP, "0001_initial", "--noinput", "-v0"), env=env_for(work))
    migrated = time.monotonic() - started
    started = time.monotonic()
    conn = connect(url)
    with conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ec_members (email, joined_at) SELECT 'member' || i || '@example.com', "
            "timestamptz '2026-01-01' + i * interval '1 second' FROM generate_series(1, %s) i",
            [rows],
        )
        cursor.execute(
            f"INSERT INTO {TABLE} (member_id, plan_name, seats, currency, legacy_code, started_at) "
            "SELECT i, 'p' || i, 1 + i %% 50, CASE WHEN i %% 4 = 0 THEN NULL ELSE 'eur' END, 'x', "
            "timestamptz '2026-01-01' + i * interval '1 second' FROM generate_series(1, %s) i",
            [rows],
        )
        cursor.execute("VACUUM ANALYZE ec_members")
        cursor.execute(f"VACUUM ANALYZE {TABLE}")
        cursor.execute(f"SELECT pg_total_relation_size('{TABLE}') + pg_total_relation_size('ec_members')")
        size = cursor.fetchone()[0]
    conn.close()
    return {"migrate_s": round(migrated, 1), "seed_s": round(time.monotonic() - started, 1), "bytes": size}


def schema(url: str) -> dict:
    """ec_subscriptions as a comparable document: columns, indexes and constraints without their names,
    the triggers and the objects of ours (mo_...) left anywhere."""
    columns = query(
        url,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid) "
        "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        f"WHERE a.attrelid = '{TABLE}'::regclass AND a.attnum > 0 AND NOT a.attisdropped",
    )
    indexes = query(
        url,
        "SELECT regexp_replace(pg_get_indexdef(indexrelid), 'INDEX \\S+ ON', 'INDEX ON'), indisvalid "
        f"FROM pg_index WHERE indrelid = '{TABLE}'::regclass",
    )
    constraints = query(
        url,
        "SELECT contype, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
        f"WHERE conrelid = '{TABLE}'::regclass",
    )
    triggers = query(url, f"SELECT tgname FROM pg_trigger WHERE tgrelid = '{TABLE}'::regclass AND NOT tgisinternal")
    leftovers = query(
        url,
        "SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgname LIKE 'mo\\_%' UNION ALL "
        "SELECT 'function ' || proname FROM pg_proc WHERE proname LIKE 'mo\\_%' UNION ALL "
        "SELECT 'constraint ' || conname FROM pg_constraint WHERE conname LIKE 'mo\\_%' UNION ALL "
        f"SELECT 'column ' || attname FROM pg_attribute WHERE attrelid = '{TABLE}'::regclass "
        "AND attname LIKE 'mo\\_%' AND NOT attisdropped",
    )
    return {
        "columns": sorted([list(row) for row in columns]),
        "indexes": sorted([list(row) for row in indexes]),
        "constraints": sorted([list(row) for row in constraints]),
        "triggers": sorted(row[0] for row in triggers),
        "leftovers": sorted(row[0] for row in leftovers),
    }


def which_schema(url: str, old: dict, new: dict) -> str:
    now = schema(url)
    if now == old:
        return "old"
    if now == new:
        return "new"
    differs = {key: now[key] for key in now if now[key] != new[key] and now[key] != old[key]}
    return f"neither: {json.dumps(differs)[:600]}"


def applied_release(url: str) -> bool:
    return bool(query(url, "SELECT 1 FROM django_migrations WHERE app = %s AND name = '0002_release'", [APP]))


def kept(url: str, rows: int, releases: list[Release], column: str) -> dict:
    """Every write of `releases` and every seeded row, read through `column` (plan or plan_name)."""
    present = dict(
        (row_id, (name, seats, currency))
        for row_id, name, seats, currency in query(url, f"SELECT id, {column}, seats, currency FROM {TABLE}")
    )
    result: dict = {"rows": len(present)}
    for release in releases:
        inserts_ok = 0
        for row_id, (name, seats, currency) in release.inserted.items():
            row = present.get(row_id)
            # The NOT NULL currency: NULLs the old release wrote are 'usd' once the column is NOT NULL
            # (or still NULL at the old schema).
            if row and row[0] == name and row[1] == seats and row[2] in (currency, "usd" if currency is None else ""):
                inserts_ok += 1
        updates_ok = sum(
            1
            for row_id, (name, seats) in release.updated.items()
            if present.get(row_id, (None, None))[:2] == (name, seats)
        )
        result[release.label] = {
            "inserts_kept": inserts_ok,
            "inserts": len(release.inserted),
            "updates_kept": updates_ok,
            "updated_rows": len(release.updated),
            "all_kept": inserts_ok == len(release.inserted) and updates_ok == len(release.updated),
        }
    touched = {row_id for release in releases for row_id in release.updated}
    seeded_wrong = 0
    for row_id in range(1, rows + 1):
        row = present.get(row_id)
        if row is None or row_id not in touched and (row[0] != f"p{row_id}" or row[1] != 1 + row_id % 50):
            seeded_wrong += 1
    result["seeded_rows_missing_or_changed"] = seeded_wrong
    result["null_currency"] = sum(1 for row in present.values() if row[2] is None)
    result["all_kept"] = seeded_wrong == 0 and all(result[release.label]["all_kept"] for release in releases)
    return result


def cross_read(url: str, old: Release, new: Release) -> dict:
    """In the window: the old release's inserts read through plan, the new release's through plan_name."""
    old_ids, new_ids = list(old.inserted), list(new.inserted)
    through_new = dict(query(url, f"SELECT id, plan FROM {TABLE} WHERE id = ANY(%s)", [old_ids]))
    through_old = dict(query(url, f"SELECT id, plan_name FROM {TABLE} WHERE id = ANY(%s)", [new_ids]))
    old_seen = sum(1 for i in old_ids if through_new.get(i) == old.inserted[i][0])
    new_seen = sum(1 for i in new_ids if through_old.get(i) == new.inserted[i][0])
    return {
        "old_inserts_seen_in_plan": f"{old_seen}/{len(old_ids)}",
        "new_inserts_seen_in_plan_name": f"{new_seen}/{len(new_ids)}",
    }


# --- the commands -------------------------------------------------------------------------------
def safe_migrate(url: str, work: Path, *args: str, **extra: str) -> dict:
    step = run_measured(
        manage_argv(url, "safe_migrate", "--noinput", "--json", *args), env=env_for(work, **extra), check=False
    )
    try:
        summary = json.loads(step["stdout"])
    except json.JSONDecodeError:
        summary = {"status": None, "error": (step["stderr"] or step["stdout"])[-800:]}
    online = summary.get("online") or {}
    return {
        "args": " ".join(args),
        "exit": step["returncode"],
        "status": summary.get("status"),
        "error": summary.get("error"),
        "wall_s": step["wall_s"],
        "cpu_s": round(step["cpu_user_s"] + step["cpu_sys_s"], 2),
        "durations": summary.get("durations"),
        "backup": bool(summary.get("backup")),
        "statements": online.get("statements"),
        "batches": online.get("batches"),
        "retries": online.get("retries"),
        "longest_lock_s": online.get("longest_lock_s"),
        "longest_lock": ((online.get("longest_lock") or {}).get("statement") or "")[:100],
        "stderr_tail": "" if step["returncode"] == 0 else step["stderr"][-800:],
    }


def validate(url: str, work: Path) -> dict:
    step = run_measured(manage_argv(url, "validate_db", "--json"), env=env_for(work), check=False)
    try:
        document = json.loads(step["stdout"])
    except json.JSONDecodeError:
        return {"ok": False, "exit": step["returncode"], "error": step["stderr"][-500:], "wall_s": step["wall_s"]}
    failed = [check["name"] for check in document.get("checks", []) if not check.get("ok")]
    return {
        "ok": bool(document.get("ok")) and not failed,
        "exit": step["returncode"],
        "failed": failed,
        "wall_s": step["wall_s"],
    }


def start_safe_migrate(url: str, work: Path, *args: str, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        manage_argv(url, "safe_migrate", "--noinput", "--json", *args),
        cwd=ROOT,
        env={**os.environ, **env_for(work, **extra)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def checkpoint(url: str) -> dict:
    rows = query(url, "SELECT id, status, state FROM migrations_ops_online_run ORDER BY id DESC LIMIT 1")
    if not rows:
        return {}
    run_id, status, state = rows[0]
    current = {key: value for key, value in (state.get("current") or {}).items() if key != "statements"}
    return {"run_id": run_id, "status": status, "current": current, "contracted": state.get("contracted")}


def kill_when(url: str, process: subprocess.Popen, condition: str, delay: float, timeout: float = 900) -> dict:
    """SIGKILL `process` `delay` seconds after the newest online run's row first meets `condition`."""
    watcher = connect(url)
    deadline = time.monotonic() + timeout
    try:
        with watcher.cursor() as cursor:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the run ended (exit {process.returncode}) before: {condition}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not reached in {timeout}s: {condition}")
                cursor.execute("SELECT to_regclass('migrations_ops_online_run') IS NOT NULL")
                if cursor.fetchone()[0]:
                    cursor.execute(f"SELECT {condition} FROM migrations_ops_online_run ORDER BY id DESC LIMIT 1")
                    row = cursor.fetchone()
                    if row and row[0]:
                        break
                time.sleep(0.01)
    finally:
        watcher.close()
    time.sleep(delay)
    at = checkpoint(url)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return {"killed_after_s": delay, "checkpoint_at_kill": at, "checkpoint_after_kill": checkpoint(url)}


# --- the ways -----------------------------------------------------------------------------------
def way_online(url: str, rows: int, work: Path, old_schema: dict) -> tuple[dict, dict]:
    sampler = LockWaits(url)
    sampler.start()
    old = Release(url, new=False, rows=rows).start()
    time.sleep(1.0)
    expand = safe_migrate(url, work, "--online", APP)
    new = Release(url, new=True, rows=rows).start()
    time.sleep(1.0)
    window_schema = schema(url)
    during = validate(url, work)
    time.sleep(1.0)
    seen = cross_read(url, old, new)
    old.stop()  # the deploy: the old release is gone
    complete = safe_migrate(url, work, "--online", "--complete")
    time.sleep(1.0)
    new.stop()
    lock_waits = sampler.figures()
    after = validate(url, work)
    new_schema = schema(url)
    result = {
        "lock_waits_seen_by_server": lock_waits,
        "expand": expand,
        "complete": complete,
        "total_s": round(expand["wall_s"] + complete["wall_s"], 2),
        "old_release": old.figures(),
        "new_release": new.figures(),
        "longest_wait_s": round(max(old.longest_wait_s, new.longest_wait_s), 3),
        "validate_db_during_window": during,
        "validate_db_after": after,
        "window": seen | {"leftover_objects_during_window": window_schema["leftovers"]},
        "kept_after_complete": kept(url, rows, [old, new], "plan"),
        "schema_after": None,  # main compares it with the one-transaction path's
        "leftovers_after": new_schema["leftovers"],
    }
    return result, new_schema


def way_baseline(url: str, rows: int, seconds: float) -> dict:
    """The old release alone for `seconds`, no migration: what its statements wait on this machine anyway."""
    sampler = LockWaits(url)
    sampler.start()
    old = Release(url, new=False, rows=rows).start()
    time.sleep(seconds)
    old.stop()
    return {"old_release": old.figures(), "seen_by_server": sampler.figures()}


def way_transaction(url: str, rows: int, work: Path) -> tuple[dict, dict]:
    sampler = LockWaits(url)
    sampler.start()
    old = Release(url, new=False, rows=rows).start()
    time.sleep(1.0)
    began = time.monotonic()
    migrated = safe_migrate(url, work, APP)
    time.sleep(1.0)
    old.stop()
    lock_waits = sampler.figures()
    after = validate(url, work)
    new_schema = schema(url)
    keep = kept(url, rows, [old], "plan")
    return {
        "lock_waits_seen_by_server": lock_waits,
        "safe_migrate": migrated,
        "total_s": migrated["wall_s"],
        "old_release": old.figures(since=began),
        "validate_db_after": after,
        "kept": keep,
    }, new_schema


def way_killed(url: str, rows: int, work: Path, how: str, old_schema: dict, new_schema: dict) -> dict:
    """how: expand-resume, expand-abort or complete."""
    old = Release(url, new=False, rows=rows).start()
    new: Release | None = None
    time.sleep(1.0)
    result: dict = {"case": how}
    steps = []
    if how.startswith("expand"):
        process = start_safe_migrate(url, work, "--online", APP)
        # In the backfill (the checkpoint names a block), a moment into it (small tables finish fast).
        result["kill"] = kill_when(url, process, "state->'current' ? 'block'", 1.0 if rows >= 500_000 else 0.1)
        result["kill"]["in_backfill_at_kill"] = "block" in (result["kill"]["checkpoint_at_kill"].get("current") or {})
        if how == "expand-resume":
            steps.append(safe_migrate(url, work, "--online", "--resume"))
            new = Release(url, new=True, rows=rows).start()
            time.sleep(1.0)
            old.stop()
            steps.append(safe_migrate(url, work, "--online", "--complete"))
        else:
            steps.append(safe_migrate(url, work, "--online", "--abort"))
            time.sleep(1.0)
            old.stop()
    else:
        result["before_kill"] = safe_migrate(url, work, "--online", APP)
        new = Release(url, new=True, rows=rows).start()
        time.sleep(1.0)
        old.stop()
        # A contract step that waits on a session's lock: killed while it waits (after the backup).
        blocker = connect(url)
        blocker.autocommit = False
        with blocker.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS SHARE MODE")
        process = start_safe_migrate(url, work, "--online", "--complete")
        try:
            result["kill"] = kill_when(url, process, "status = 'completing'", 0.3)
        finally:
            blocker.rollback()
            blocker.close()
        steps.append(safe_migrate(url, work, "--online", "--complete"))
    time.sleep(1.0)
    if new:
        new.stop()
    releases = [old] + ([new] if new else [])
    ended = which_schema(url, old_schema, new_schema)
    column = "plan" if ended == "new" else "plan_name"
    result.update(
        {
            "steps": steps,
            "schema_at_end": ended,
            "release_0002_recorded": applied_release(url),
            "kept": kept(url, rows, releases, column),
            "old_release": old.figures(),
            "new_release": new.figures() if new else None,
            "validate_db_after": validate(url, work),
        }
    )
    result["ok"] = (
        result["kill"]["checkpoint_at_kill"].get("status") in ("running", "completing")  # killed mid-way
        and ended in ("old", "new")
        and result["kept"]["all_kept"]
        and all(step["exit"] == 0 for step in steps + ([result["before_kill"]] if "before_kill" in result else []))
        and (ended == "new") == result["release_0002_recorded"]
    )
    return result


# --- the document -------------------------------------------------------------------------------
def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return done.stdout.strip() + (" (working tree with uncommitted changes)" if dirty else "")


def server_version() -> str:
    return query(url_of("postgres"), "SHOW server_version")[0][0]


def judge(entry: dict) -> dict:
    online = entry["online"]
    tx = entry.get("transaction") or {}
    kills = entry.get("sigkill") or []
    waits = {"old": online["old_release"]["longest_wait_s"], "new": online["new_release"]["longest_wait_s"]}
    return {
        "no_errors": online["old_release"]["errors"] == 0 and online["new_release"]["errors"] == 0,
        "longest_wait_within_target": wait_met(entry, max(waits.values())),
        "every_write_kept": online["kept_after_complete"]["all_kept"],
        "validate_db_clean_during_and_after": online["validate_db_during_window"]["ok"]
        and online["validate_db_after"]["ok"],
        "same_schema_as_one_transaction": online.get("schema_after") == "new",
        "ratio_to_one_transaction": round(online["total_s"] / tx["total_s"], 2) if tx.get("total_s") else None,
        "sigkill_cases_ok": all(case.get("ok") for case in kills) if kills else None,
    }


def wait_met(entry: dict, longest: float) -> bool:
    """The target is what the migration makes the application wait. Met when the longest wait is within
    TARGET_WAIT_S; or when every statement the server saw run past it waited on the WAL's flush only (no
    lock, no CPU), and the longest is within BASELINE_FACTOR of the same release's longest with no migration
    on the same machine for as long (the disk's own fsync tail, which no migration can take away)."""
    if longest <= TARGET_WAIT_S:
        return True
    baseline = (entry.get("baseline") or {}).get("old_release")
    seen = entry["online"]["lock_waits_seen_by_server"]
    if not baseline or "over_target" not in seen:
        return False
    caused = [statement for statement in seen["over_target"] if statement["waited_on"] != "wal flush"]
    return (
        not caused
        and seen["longest_lock_wait_s"] <= TARGET_WAIT_S
        and longest <= BASELINE_FACTOR * max(baseline["longest_wait_s"], TARGET_WAIT_S)
    )


def fmt(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:.3f} {unit}" if value < 1 else f"{value:.1f} {unit}"


def yes(flag: bool | None) -> str:
    return "-" if flag is None else "yes" if flag else "**no**"


def verdict_of(check: dict) -> str:
    """validate_db's outcome: clean, or the checks that failed; and its time."""
    outcome = "clean" if check["ok"] else f"failed {check.get('failed') or check.get('error')}"
    return f"{outcome} ({fmt(check['wall_s'])})"


def over_target_line(entry: dict) -> str:
    """The statements the server saw run past the target, by what they waited on, and the baseline's wait."""
    seen = entry["online"]["lock_waits_seen_by_server"]
    if "over_target" not in seen:
        return "what they waited on was not recorded"
    kinds: dict[str, int] = {}
    for statement in seen["over_target"]:
        kinds[statement["waited_on"]] = kinds.get(statement["waited_on"], 0) + 1
    waited = ", ".join(f"{count} on {kind}" for kind, count in sorted(kinds.items())) or "none"
    line = f"statements the server saw past {TARGET_WAIT_S} s: {waited}"
    line += f"; longest lock wait {fmt(seen['longest_lock_wait_s'])}"
    baseline = (entry.get("baseline") or {}).get("old_release")
    if baseline:
        base_seen = entry["baseline"]["seen_by_server"]
        line += (
            f"; the old release alone, no migration, {baseline['ran_s']} s on the same machine: longest wait "
            f"{fmt(baseline['longest_wait_s'])}, samples of statements past 50 ms {base_seen['slow_statement_waits']}"
        )
    return line


def release_line(name: str, figures: dict | None) -> str:
    if not figures:
        return f"| {name} | - | - | - | - |"
    errors = str(figures["errors"])
    if figures.get("first_error_after_s") is not None:
        errors += f" (the first {figures['first_error_after_s']} s after safe_migrate started)"
    if figures["error_examples"]:
        errors += ": " + "; ".join(e.replace("|", "/")[:90] for e in figures["error_examples"][:2])
    return (
        f"| {name} | {fmt(figures['longest_wait_s'])} ({figures['longest_statement']}) | {errors} | "
        f"{figures['statements']} | {figures['inserted']} inserts, {figures['updated_rows']} rows updated |"
    )


def kept_line(keep: dict, label: str) -> str:
    part = keep.get(label)
    if not part:
        return "-"
    return f"{part['inserts_kept']}/{part['inserts']} inserts, {part['updates_kept']}/{part['updated_rows']} updates"


def step_line(step: dict) -> str:
    extra = f", {step['batches']} batches" if step.get("batches") else ""
    extra += f", longest lock {fmt(step['longest_lock_s'])}" if step.get("longest_lock_s") is not None else ""
    error = f", error: {step['error'][:160]}" if step.get("error") else ""
    head = f"`safe_migrate --json {step['args']}` exit {step['exit']}, {step['status']}"
    return f"{head}, {fmt(step['wall_s'])}{extra}{error}"


def render_entry(entry: dict) -> list[str]:
    online, tx, verdict = entry["online"], entry.get("transaction"), entry["verdict"]
    load = entry["load"]
    lines = [
        f"## {entry['rows']:,} members + {entry['rows']:,} subscriptions",
        "",
        f"Date {entry['date']}, commit {entry['commit']}, {entry['duration_s'] / 60:.1f} min in all. "
        f"Machine: {entry['machine']['cpu']}, {entry['machine']['cores']} cores, {entry['machine']['memory_gb']} GB; "
        f"PostgreSQL {entry['server_version']}.",
        f"Load: 1-minute load average {load['start'][0]} at the start, {load['end'][0]} at the end "
        f"(5-minute {load['end'][1]}); other sessions active on the server: "
        f"{load['other_sessions_start']} at the start, "
        f"{load['other_sessions_end']} at the end; CPU stolen by the hypervisor: {load['cpu_steal_pct']}%.",
        f"Template: migrate {entry['template']['migrate_s']} s, "
        f"seed (generate_series) {entry['template']['seed_s']} s, "
        f"{entry['template']['bytes'] / 1e6:.0f} MB.",
        "",
        "| target (the issue) | measured | met |",
        "|---|---|---|",
        f"| no error in either release | old {online['old_release']['errors']}, "
        f"new {online['new_release']['errors']} | "
        f"{yes(verdict['no_errors'])} |",
        f"| longest wait of either <= {TARGET_WAIT_S} s (see below: what a wait past it waited on) | "
        f"old {fmt(online['old_release']['longest_wait_s'])}, "
        f"new {fmt(online['new_release']['longest_wait_s'])}; {over_target_line(entry)} | "
        f"{yes(verdict['longest_wait_within_target'])} |",
        "| every write of both releases present after --complete | "
        f"old {kept_line(online['kept_after_complete'], 'old')}; "
        f"new {kept_line(online['kept_after_complete'], 'new')}; seeded rows missing or changed: "
        f"{online['kept_after_complete']['seeded_rows_missing_or_changed']} | {yes(verdict['every_write_kept'])} |",
        f"| old-release writes into plan_name visible in plan | in the window: "
        f"{online['window']['old_inserts_seen_in_plan']} (new release's in plan_name: "
        f"{online['window']['new_inserts_seen_in_plan_name']}); after --complete see the row above | "
        f"{yes(verdict['every_write_kept'])} |",
        f"| validate_db clean during the window and after | during: {verdict_of(online['validate_db_during_window'])}; "
        f"after: {verdict_of(online['validate_db_after'])} | {yes(verdict['validate_db_clean_during_and_after'])} |",
        f"| expand + complete against the one-transaction path | {fmt(online['expand']['wall_s'])} + "
        f"{fmt(online['complete']['wall_s'])} = {fmt(online['total_s'])} against {fmt(tx['total_s'] if tx else None)}: "
        f"{verdict['ratio_to_one_transaction']}x | (shown) |",
        "| SIGKILL during expand and complete ends at one of the two schemas, nothing lost | "
        + "; ".join(
            f"{case['case']}: {case['schema_at_end']} schema, all kept {case['kept']['all_kept']}"
            for case in entry.get("sigkill", [])
        )
        + f" | {yes(verdict['sigkill_cases_ok'])} |",
        "",
        f"Final schema of ec_subscriptions after --complete is the one-transaction path's: "
        f"{yes(verdict['same_schema_as_one_transaction'])}; "
        f"objects of ours left: {online['leftovers_after'] or 'none'}.",
        "",
        "### The application stand-ins (longest statement wall time, errors, statements)",
        "",
        "| way / release | longest wait (statement) | errors | statements | writes |",
        "|---|---|---|---|---|",
        release_line("online: old release (before expand until before --complete)", online["old_release"]),
        release_line("online: new release (after expand until after --complete)", online["new_release"]),
    ]
    if tx:
        lines.append(release_line("one transaction: old release", tx["old_release"]))
    for case in entry.get("sigkill", []):
        lines.append(release_line(f"SIGKILL {case['case']}: old release", case["old_release"]))
        if case.get("new_release"):
            lines.append(release_line(f"SIGKILL {case['case']}: new release", case["new_release"]))
    for label, way in (("online", online), ("one transaction", tx)):
        waits = (way or {}).get("lock_waits_seen_by_server")
        if waits:
            lines.append(
                f"\nLongest lock wait of a stand-in seen by the server ({label}, pg_stat_activity every 10 ms): "
                f"{fmt(waits['longest_lock_wait_s'])}, `{waits['waiter']}` waiting for `{waits['blocked_by']}`. "
                f"Longest backfill batch transaction seen (the migration's session with an UPDATE as its statement: "
                f"the batch's, then the checkpoint's): {fmt(waits.get('longest_migration_update_s'))} "
                f"(`{waits.get('longest_migration_update', '')}`)"
                + (
                    f"; of {waits['migration_update_transactions_seen']} such transactions seen, "
                    f"{waits['over_0_1_s']} lasted over 0.1 s, {waits['over_0_2_s']} over 0.2 s, {waits['over_1_s']} "
                    f"over 1 s (longest: {waits['longest_five_s']})."
                    if "over_0_2_s" in waits
                    else "."
                )
            )
    lines += ["", "### The runs", ""]
    for label, step in (("expand", online["expand"]), ("complete", online["complete"])):
        lines.append(f"- online {label}: {step_line(step)}; phases {step.get('durations')}")
    if tx:
        lines.append(
            f"- one transaction: {step_line(tx['safe_migrate'])}; phases {tx['safe_migrate'].get('durations')}"
        )
        lines.append(
            f"  - the old release's writes kept: {kept_line(tx['kept'], 'old')}; validate_db after: "
            f"{verdict_of(tx['validate_db_after'])}"
        )
    lines += ["", "### SIGKILL cases", ""]
    for case in entry.get("sigkill", []):
        kill = case["kill"]
        at = kill["checkpoint_at_kill"]
        before = f"after {step_line(case['before_kill'])}, " if case.get("before_kill") else ""
        lines.append(
            f"- **{case['case']}**: {before}killed {kill['killed_after_s']} s after the condition, "
            "checkpoint at the kill: "
            f"status {at.get('status')}, position {json.dumps(at.get('current'))}, "
            f"contracted {at.get('contracted')}; then "
            + "; ".join(step_line(step) for step in case["steps"])
            + f". Ends at the **{case['schema_at_end']}** schema (0002 recorded: {case['release_0002_recorded']}); "
            f"rows {case['kept']['rows']:,}, old release {kept_line(case['kept'], 'old')}, new release "
            f"{kept_line(case['kept'], 'new')}, seeded rows missing or changed "
            f"{case['kept']['seeded_rows_missing_or_changed']}; validate_db after: "
            f"{verdict_of(case['validate_db_after'])}; ok: {yes(case['ok'])}"
        )
    if entry.get("notes"):
        lines += ["", "### Notes", "", *[f"- {note}" for note in entry["notes"]]]
    return lines


def render(document: dict) -> str:
    lines = [
        "# Expand/contract at scale (bench/bench_expand_contract.py)",
        "",
        "Rendered from results-expand-contract.json. One release (bench/expand_release 0002: a rename, int -> "
        "bigint, NULL -> NOT NULL, a removed field, a NOT NULL field with a Python default) with the old and the "
        "new release's code writing throughout; see the script's docstring for what each way does.",
        "",
    ]
    for rows in sorted(document, key=int):
        lines += render_entry(document[rows]) + [""]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100k members + 100k subscriptions")
    parser.add_argument("--ways", default="online,baseline,transaction,expand-resume,expand-abort,complete")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results-expand-contract"))
    parser.add_argument("--keep", action="store_true", help="keep the template database")
    parser.add_argument("--render", action="store_true", help="only render the .md from the .json")
    args = parser.parse_args()
    if args.quick:
        args.rows = 100_000
    out_json, out_md = Path(args.output + ".json"), Path(args.output + ".md")
    document = json.loads(out_json.read_text()) if out_json.exists() else {}
    if args.render:
        out_md.write_text(render(document))
        return
    ways = args.ways.split(",")
    started = time.monotonic()
    load_start = [round(value, 2) for value in os.getloadavg()]
    sessions_start = other_sessions()
    cpu_start = cpu_times()
    work = Path(tempfile.mkdtemp(prefix="bench-ec-"))
    template = f"{PREFIX}template_{args.rows}"
    databases = [template]
    entry: dict = {
        "rows": args.rows,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "machine": machine(),
        "server_version": server_version(),
        "python": sys.version.split()[0],
        "notes": [],
    }
    print(f"bench_expand_contract: {args.rows:,} rows, ways {ways}, load {load_start}", flush=True)
    try:
        entry["template"] = build_template(template, args.rows, work)
        print(f"template: {entry['template']}", flush=True)
        old_schema = schema(url_of(template))
        reference: dict | None = None
        if "transaction" in ways:
            name = f"{PREFIX}transaction"
            databases.append(name)
            copy_database(name, template)
            entry["transaction"], reference = way_transaction(url_of(name), args.rows, work)
            print(json.dumps({"transaction": entry["transaction"]}, default=str), flush=True)
            drop_database(name)
        name = f"{PREFIX}online"
        databases.append(name)
        copy_database(name, template)
        entry["online"], online_schema = way_online(url_of(name), args.rows, work, old_schema)
        if reference is None:
            reference = online_schema
        entry["online"]["schema_after"] = (
            "new" if online_schema == reference else which_schema(url_of(name), old_schema, reference)
        )
        print(json.dumps({"online": entry["online"]}, default=str), flush=True)
        drop_database(name)
        if "baseline" in ways:  # as long as the old release ran in the online way, with no migration
            name = f"{PREFIX}baseline"
            databases.append(name)
            copy_database(name, template)
            entry["baseline"] = way_baseline(url_of(name), args.rows, entry["online"]["old_release"]["ran_s"])
            print(json.dumps({"baseline": entry["baseline"]}, default=str), flush=True)
            drop_database(name)
        entry["sigkill"] = []
        for how in ("expand-resume", "expand-abort", "complete"):
            if how not in ways:
                continue
            name = f"{PREFIX}kill_{how.replace('-', '_')}"
            databases.append(name)
            copy_database(name, template)
            try:
                case = way_killed(url_of(name), args.rows, work, how, old_schema, reference)
            except Exception as exc:  # recorded, not fatal: the other cases still run
                case = {"case": how, "ok": False, "error": repr(exc)[:800], "kill": {"checkpoint_at_kill": {}}}
            entry["sigkill"].append(case)
            print(json.dumps({"sigkill": case}, default=str), flush=True)
            drop_database(name)
        entry["reference_schemas"] = {"old": old_schema, "new": reference}
    finally:
        for name in databases:
            if name != template or not args.keep:
                drop_database(name)
        shutil.rmtree(work, ignore_errors=True)
    entry["duration_s"] = round(time.monotonic() - started, 1)
    entry["load"] = {
        "start": load_start,
        "end": [round(value, 2) for value in os.getloadavg()],
        "other_sessions_start": sessions_start,
        "other_sessions_end": other_sessions(),
        "cpu_steal_pct": steal_pct(cpu_start, cpu_times()),
    }
    entry["verdict"] = judge(entry)
    document[str(args.rows)] = entry
    out_json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    out_md.write_text(render(document))
    print(json.dumps(entry["verdict"]), flush=True)
    print(f"wrote {out_json} and {out_md}", flush=True)


if __name__ == "__main__":
    main()
