"""Operating a long online run: pause, a rate limit, and back-off under a burst of application load.

    .venv/bin/python bench/bench_online_control.py                       # 1M users + 1M subscriptions
    .venv/bin/python bench/bench_online_control.py --rows 100000 --output /tmp/smoke   # a smoke run
    .venv/bin/python bench/bench_online_control.py --render              # rewrite the .md from the .json

A baseline database (accounts 0001 + billing 0001, ``seed_demo_data`` N users + N subscriptions) is
built once as a template; every case runs on a fresh copy (CREATE DATABASE ... TEMPLATE ... STRATEGY
FILE_COPY, then CHECKPOINT: no checkpoint pending when a case starts), dropped afterwards. Each
migration is ``manage.py safe_migrate --online --noinput --json`` in a subprocess
(the project's own upgrade: users are walked by accounts 0003 and loyalty 0003, subscriptions by
billing 0003). This process plays the operator (``manage.py online_control``, as a shell would run
it) and watches the run's row in ``migrations_ops_online_run`` every 20 ms (the ``progress`` and
``control`` that ``migration_status --json`` shows as ``"online_run"``, read directly: a
``migration_status`` process takes longer than 20 ms to start), with the server's WAL position.

The application is pgbench at a fixed rate (-R) with bench_online.py's read/update/insert script on
``subscriptions``; latencies are pgbench's per-transaction log (-l), measured from each transaction's
scheduled start, so a transaction delayed behind a slow one counts its wait.

Cases (the issue's words in quotes):

1. pause, "takes effect within one batch (under a second) and costs the application nothing while
   paused": once the subscriptions walk is under way, ``online_control pause``; the time from the
   control being written to ``progress.phase == 'paused'`` and to the last change of pages_done;
   the sessions idle in transaction and the locks on the walked tables held by the run while
   paused; pgbench (normal rate, --pause-seconds) during the pause against the same pgbench with
   no migration; then ``online_control continue``: the run must finish with exit 0.
2. rate limit, "holds within 10% over a minute": ``online_control limit --rows-per-second R`` at
   the start of the subscriptions walk, rows_changed from progress over 60 s, then ``--clear``.
3. burst, "the run backs off and the application's p99 latency during the burst stays within 1.5x
   of the same burst with no migration running": pgbench at --normal-rate throughout and
   --burst-factor times that for 20 s from shortly after the subscriptions walk starts; p99 of the
   transactions completing during the burst (b) with the run's defaults, first, (a) with no migration
   (twice: after (b) and after the others), the burst as long after the copy's checkpoint as in (b),
   (c) with the back-off tuned: MIGRATION_ONLINE_MAX_LOCK_WAITERS=1,
   MIGRATION_ONLINE_MAX_WAL_RATE at half the WAL rate measured during (b)'s walk before its burst,
   and MIGRATION_ONLINE_MAX_WAL_RATE between the application's own WAL rate at the normal rate and
   at the burst (measured in (a)); and (d) with the load signal off (the defaults before it).

Results: --output .json and .md (default bench/results-online-control), each target measured,
against its goal, met or not, beside the run's defaults. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg2
from _common import (
    BASE_URL,
    ROOT,
    admin,
    connect,
    copy_database,
    drop_database,
    manage,
    manage_argv,
    migrate_to_baseline,
    scratch_env,
    url_of,
)
from bench_online import PGBENCH_SCRIPT, psql_scalar
from run import machine, other_sessions, versions

TEMPLATE = "bench_onctl_template_{rows}"
COPY = "bench_onctl_{case}"
POLL_S = 0.02
DEFAULTS = {  # the run's defaults (config/settings.py), shown beside every figure
    "MIGRATION_ONLINE_BATCH_TARGET": "100ms",
    "MIGRATION_ONLINE_BATCH_PAUSE": "0s",
    "MIGRATION_ONLINE_MAX_LOCK_WAITERS": 5,
    "MIGRATION_ONLINE_MAX_TRANSACTION_AGE": "10min",
    "MIGRATION_ONLINE_MAX_WAL_RATE": "0 (not watched)",
    "MIGRATION_ONLINE_MAX_LOAD_RISE": "3 (x the application's statements at once, or its writing transactions/s)",
    "MIGRATION_ONLINE_CHECKPOINT_PACING": "False",
    "MIGRATION_ONLINE_MAX_REPLICA_LAG": "10s (no standby here)",
    "MIGRATION_ONLINE_BACKOFF_WAIT": "10min",
    "governor poll while paused/backing off": "0.2 s",
}
MB = 1024 * 1024


# ------------------------------------------------------------------ the application: pgbench
def pgbench_script(url: str, workdir: Path) -> Path:
    script = workdir / "app.sql"
    if not script.exists():
        max_id = psql_scalar(url, "SELECT max(id) FROM subscriptions")
        user_id = psql_scalar(url, "SELECT id FROM users ORDER BY id LIMIT 1")
        script.write_text(PGBENCH_SCRIPT.format(max_id=max_id, user_id=user_id))
    return script


def pgbench_argv(url: str, script: Path, prefix: Path, rate: int, seconds: float, clients: int) -> list[str]:
    return [
        "pgbench", "-n", "-f", str(script), "-c", str(clients), "-j", "2", "-R", str(rate),
        "-T", str(max(1, round(seconds))), "-l", "--log-prefix", str(prefix), url,
    ]  # fmt: skip


class Background(threading.Thread):
    """pgbench at a fixed rate in 5-second runs until stopped (each run ends cleanly: every latency is logged)."""

    def __init__(self, url: str, workdir: Path, rate: int, clients: int = 4, tag: str = "normal") -> None:
        super().__init__(daemon=True)
        self.url, self.workdir, self.rate, self.clients, self.tag = url, workdir, rate, clients, tag
        self.script = pgbench_script(url, workdir)
        self.halt = threading.Event()
        self.outputs: list[str] = []

    def run(self) -> None:
        chunk = 0
        while not self.halt.is_set():
            argv = pgbench_argv(self.url, self.script, self.workdir / f"{self.tag}{chunk}", self.rate, 5, self.clients)
            done = subprocess.run(argv, capture_output=True, text=True, cwd=self.workdir)
            self.outputs.append(done.stdout + done.stderr)
            chunk += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=60)


def run_pgbench(url: str, workdir: Path, tag: str, rate: int, seconds: float, clients: int) -> str:
    """One pgbench run (blocking); its output."""
    argv = pgbench_argv(url, pgbench_script(url, workdir), workdir / tag, rate, seconds, clients)
    done = subprocess.run(argv, capture_output=True, text=True, cwd=workdir)
    return done.stdout + done.stderr


def transactions(workdir: Path, tags: tuple[str, ...]) -> list[tuple[float, float]]:
    """(completed at, latency s) of every transaction logged by pgbench runs whose prefix starts with a tag.
    A log line: client transaction latency_us script epoch_s epoch_us [schedule_lag_us]."""
    found = []
    for log in workdir.iterdir():
        if not log.name.startswith(tags) or log.suffix == ".sql":
            continue
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 6 and fields[2].isdigit():
                found.append((int(fields[4]) + int(fields[5]) / 1e6, int(fields[2]) / 1e6))
    return found


def latency_figures(found: list[tuple[float, float]], start: float = 0.0, end: float = float("inf")) -> dict:
    """p50, p99, max of the transactions completed in [start, end)."""
    latencies = sorted(latency for at, latency in found if start <= at < end)
    if not latencies:
        return {"transactions": 0}
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "transactions": len(latencies),
        "p50_ms": round(quantiles[49] * 1000, 2),
        "p99_ms": round(quantiles[98] * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 1),
    }


def failures(outputs: list[str]) -> int:
    text = "\n".join(outputs)
    return sum(int(n) for n in re.findall(r"number of failed transactions: (\d+)", text)) + len(
        re.findall(r"\babort|error:", text, re.I)
    )


# ------------------------------------------------------------------ the run and its watcher
class Watcher(threading.Thread):
    """Every 20 ms: the running run's progress and control (what migration_status --json shows as
    "online_run") and the server's WAL position, with the wall-clock time of the reading."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.halt = threading.Event()
        self.samples: list[dict] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        conn = connect(self.url)
        with conn.cursor() as cursor:
            while not self.halt.is_set():
                sample = {"t": time.time()}
                try:
                    cursor.execute(
                        "SELECT r.progress, r.control, (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint "
                        "FROM migrations_ops_online_run r WHERE r.status = 'running' ORDER BY r.id DESC LIMIT 1"
                    )
                    row = cursor.fetchone()
                except (psycopg2.errors.UndefinedTable, psycopg2.errors.UndefinedColumn):
                    row = None  # the run has not created its table (or its progress column) yet
                if row is None:
                    cursor.execute("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
                    sample["wal"] = int(cursor.fetchone()[0])
                else:
                    sample.update(progress=row[0] or {}, control=row[1] or {}, wal=int(row[2]))
                with self.lock:
                    self.samples.append(sample)
                self.halt.wait(POLL_S)
        conn.close()

    def latest(self) -> dict:
        with self.lock:
            return self.samples[-1] if self.samples else {"t": time.time()}

    def progress(self) -> dict:
        return self.latest().get("progress") or {}

    def wait(self, predicate, timeout: float, run: Run | None = None, since: float | None = None) -> dict:
        """The first sample taken at or after ``since`` (default: now) whose (progress, control) satisfies
        predicate; raises after timeout."""
        since = time.time() if since is None else since
        deadline = time.time() + timeout
        seen = 0
        while time.time() < deadline:
            with self.lock:
                fresh = self.samples[seen:]
                seen = len(self.samples)
            for sample in fresh:
                if sample["t"] >= since and predicate(sample.get("progress") or {}, sample.get("control") or {}):
                    return sample
            if run is not None and run.proc.poll() is not None:
                raise RuntimeError(f"the run ended before the expected state: {run.finish()}")
            time.sleep(POLL_S / 2)
        raise TimeoutError(f"no such progress within {timeout}s; last {self.latest()}")

    def stop(self) -> list[dict]:
        self.halt.set()
        self.join(timeout=10)
        return self.samples


def wal_rate_mb_s(samples: list[dict], start: float, end: float) -> float | None:
    inside = [s for s in samples if start <= s["t"] <= end and "wal" in s]
    if len(inside) < 2 or inside[-1]["t"] - inside[0]["t"] < 0.5:
        return None
    return round((inside[-1]["wal"] - inside[0]["wal"]) / MB / (inside[-1]["t"] - inside[0]["t"]), 2)


class Run:
    """``safe_migrate --online --noinput --json`` in a subprocess."""

    def __init__(self, url: str, work: Path, env: dict | None = None) -> None:
        self.url = url
        self.out = tempfile.TemporaryFile("w+")  # noqa: SIM115 (open for the run's life)
        self.err = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.env = {**os.environ, **scratch_env(work), **(env or {})}
        self.started = time.time()
        argv = manage_argv(url, "safe_migrate", "--online", "--noinput", "--json")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=self.out, stderr=self.err, text=True)
        self.log = Path(self.env["MIGRATION_LOG"])
        self.result: dict | None = None

    def events(self, *names: str) -> list[tuple[float, dict]]:
        """(time, event) of the audit log's events with these names (ms precision), oldest first."""
        found = []
        for line in self.log.read_text().splitlines() if self.log.exists() else []:
            event = json.loads(line)
            if event.get("event", "").split(".")[-1] in names:
                found.append((datetime.datetime.fromisoformat(event["ts"]).timestamp(), event))
        return found

    def finish(self, timeout: float = 1800) -> dict:
        if self.result is not None:
            return self.result
        self.proc.wait(timeout=timeout)
        self.out.seek(0)
        self.err.seek(0)
        stdout, stderr = self.out.read(), self.err.read()
        try:
            summary = json.loads(stdout) if stdout.strip() else {}
        except json.JSONDecodeError:
            summary = {}
        online = summary.get("online") or {}
        self.result = {
            "exit": self.proc.returncode,
            "status": summary.get("status"),
            "total_s": round(time.time() - self.started, 1),
            "durations": summary.get("durations"),
            "batches": online.get("batches"),
            "retries": online.get("retries"),
            "pauses_s": online.get("pauses_s"),
            "longest_lock_s": online.get("longest_lock_s"),
            "stderr_tail": "" if self.proc.returncode == 0 else stderr[-1500:],
        }
        return self.result


def control(run: Run, *args: str) -> dict:
    """``manage.py online_control ...`` as an operator runs it (its audit event in the run's log): wall time."""
    started = time.time()
    done = subprocess.run(
        manage_argv(run.url, "online_control", *args), cwd=ROOT, capture_output=True, text=True, env=run.env
    )
    if done.returncode != 0:
        state = run.finish() if run.proc.poll() is not None else "still running"
        raise RuntimeError(
            f"online_control {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}; the run: {state}"
        )
    return {"started": started, "ended": time.time(), "wall_s": round(time.time() - started, 3)}


def walking(table: str = "subscriptions"):
    return lambda progress, _control: progress.get("table") == table and progress.get("pages_done", 0) > 0


def batch_intervals(samples: list[dict], start: float, end: float) -> list[float]:
    """Seconds between successive progress writes of a batch (pages_done changes) in [start, end]."""
    changes, last = [], None
    for sample in samples:
        pages = (sample.get("progress") or {}).get("pages_done")
        if pages is not None and pages != last:
            changes.append(sample["t"])
            last = pages
    changes = [t for t in changes if start <= t <= end]
    return [round(b - a, 3) for a, b in zip(changes, changes[1:], strict=False)]


class WaitSampler(threading.Thread):
    """What the server's active sessions wait on, every 50 ms, server-wide: (backend type, wait) -> samples.
    Says what the application meets while the run is paused (the walk's aftermath: an autovacuum of
    the walked table, a checkpoint, WAL or data-file writes)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.halt, self.counts, self.samples = url, threading.Event(), {}, 0

    def run(self) -> None:
        connection = connect(self.url)
        try:
            with connection.cursor() as cursor:
                while not self.halt.is_set():
                    cursor.execute(
                        "SELECT backend_type, coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM "
                        "pg_stat_activity WHERE (state = 'active' OR backend_type <> 'client backend') "
                        "AND pid <> pg_backend_pid() AND backend_type NOT IN ('walwriter', 'logical replication "
                        "launcher', 'autovacuum launcher', 'background writer', 'checkpointer') "
                        "UNION ALL SELECT backend_type, coalesce(wait_event_type || ':' || wait_event, 'CPU') "
                        "FROM pg_stat_activity WHERE backend_type IN ('checkpointer', 'background writer') "
                        "AND wait_event IS DISTINCT FROM 'CheckpointerMain' AND wait_event IS DISTINCT FROM "
                        "'BgWriterHibernate' AND wait_event IS DISTINCT FROM 'BgWriterMain'"
                    )
                    self.samples += 1
                    for backend, wait in cursor.fetchall():
                        key = f"{backend} {wait}"
                        self.counts[key] = self.counts.get(key, 0) + 1
                    time.sleep(0.05)
        finally:
            connection.close()

    def stop(self) -> dict:
        self.halt.set()
        self.join(timeout=10)
        top = sorted(self.counts.items(), key=lambda item: -item[1])[:12]
        return {"samples": self.samples, "per_sample": {key: round(n / max(self.samples, 1), 3) for key, n in top}}


def checkpoints_requested() -> int:
    """Checkpoints the server started other than by checkpoint_timeout, so far (server-wide)."""
    return int(psql_scalar(url_of("postgres"), "SELECT checkpoints_req FROM pg_stat_bgwriter"))


def run_holdings(url: str) -> dict:
    """What the run's sessions hold right now: open transactions, locks on the walked tables, xmin."""
    conn = connect(url)
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE state LIKE 'idle in transaction%%'), "
            "count(*) FILTER (WHERE backend_xmin IS NOT NULL AND application_name <> 'pgbench'), "
            "count(*) FILTER (WHERE application_name <> 'pgbench') "
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
        idle_in_transaction, with_xmin, run_sessions = cursor.fetchone()
        cursor.execute(
            "SELECT count(*), string_agg(DISTINCT l.mode, ',') FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.relation IN ('subscriptions'::regclass, 'users'::regclass) AND a.application_name <> 'pgbench' "
            "AND l.pid <> pg_backend_pid()"
        )
        locks, modes = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' "
            "AND a.application_name <> 'pgbench' AND l.pid <> pg_backend_pid()"
        )
        advisory = cursor.fetchone()[0]
    conn.close()
    return {
        "idle_in_transaction": idle_in_transaction,
        "run_sessions": run_sessions,
        "run_sessions_with_xmin": with_xmin,
        "run_locks_on_walked_tables": locks,
        "lock_modes": modes,
        "run_advisory_locks": advisory,
    }


# ------------------------------------------------------------------ the cases
def case_pause(args, template: str, scratch: Path) -> dict:
    name = COPY.format(case="pause")
    copy_database(name, template, settled=True)
    url = url_of(name)
    work = Path(tempfile.mkdtemp(dir=scratch, prefix="pause-"))
    try:
        # the same pgbench, no migration at all, on the same fresh copy first (warmed the same way)
        run_pgbench(url, work, "warm", args.normal_rate, 5, 4)
        idle_runs = []
        for tag in ("idleA", "idleB"):  # twice: the spread is the noise of this machine
            out = run_pgbench(url, work, tag, args.normal_rate, args.pause_seconds, 4)
            idle_runs.append(latency_figures(transactions(work, (tag,))) | {"failed": failures([out])})
        idle = latency_figures(transactions(work, ("idleA", "idleB"))) | {"failed": sum(r["failed"] for r in idle_runs)}
        watcher = Watcher(url)
        watcher.start()
        run = Run(url, work)
        watcher.wait(walking(), 900, run)
        time.sleep(1.0)  # well into the walk
        before = watcher.progress()
        command = control(run, "pause", "--reason", "bench: pause")
        seen = watcher.wait(lambda _p, c: c.get("paused") is True, 10, since=command["started"])
        paused = watcher.wait(lambda p, _c: p.get("phase") == "paused", 30, run, since=seen["t"])
        pages_at_pause = paused["progress"]["pages_done"]
        holdings = [run_holdings(url)]
        checkpoints = [checkpoints_requested()]
        # Two windows: what the application meets right after the pause (the walk's writes still being
        # flushed: a checkpoint the walk forced, full-page images after it) and once that has passed.
        windows = []
        waits = []
        for tag in ("paused_first", "paused_later"):  # transactions() matches by prefix
            window_start = time.time()
            sampler = WaitSampler(url)
            sampler.start()
            out = run_pgbench(url, work, tag, args.normal_rate, args.pause_seconds, 4)
            waits.append(sampler.stop())
            windows.append((tag, window_start, time.time(), out))
            holdings.append(run_holdings(url))
            checkpoints.append(checkpoints_requested())
        during = latency_figures(transactions(work, ("paused_first",))) | {"failed": failures([windows[0][3]])}
        later = latency_figures(transactions(work, ("paused_later",))) | {"failed": failures([windows[1][3]])}
        after_pause = watcher.progress()
        resume = control(run, "continue")
        resumed = watcher.wait(lambda _p, c: c.get("paused") is False, 10, since=resume["started"])
        moved = watcher.wait(lambda p, _c: p.get("pages_done", 0) > pages_at_pause, 60, run, since=resume["started"])
        result = run.finish()
        samples = watcher.stop()
        last_change = next(  # the progress write of the last batch before the pause
            (s["t"] for s in samples if (s.get("progress") or {}).get("pages_done") == pages_at_pause), None
        )
        batches = batch_intervals(samples, seen["t"] - 10, seen["t"])
        near = [s["t"] for s in samples if command["started"] - 1 <= s["t"] <= paused["t"] + 0.5]
        gaps = [b - a for a, b in zip(near, near[1:], strict=False)]
        logged: dict[str, float] = {}
        for at, event in run.events("online_control", "online_paused"):  # the first of each: the pause
            logged.setdefault(event["event"].split(".")[-1], at)
        logged_effect = (
            round(logged["online_paused"] - logged["online_control"], 3)
            if {"online_paused", "online_control"} <= logged.keys()
            else None
        )
        return {
            "rows": args.rows,
            "pause_command_wall_s": command["wall_s"],
            "control_written_to_seen_s": round(seen["t"] - command["ended"], 3),
            "pause_effective_s": round(paused["t"] - seen["t"], 3),
            "pause_effective_audit_log_s": logged_effect,
            "watcher_gap_max_s": round(max(gaps), 3) if gaps else None,
            "pause_effective_from_command_end_s": round(paused["t"] - command["ended"], 3),
            "last_batch_after_control_s": round(last_change - seen["t"], 3) if last_change else None,
            "batch_interval_before_pause_s": {
                "median": round(statistics.median(batches), 3) if batches else None,
                "max": max(batches) if batches else None,
                "count": len(batches),
            },
            "pages_done_at_pause": pages_at_pause,
            "pages_total": before.get("pages_total"),
            "pages_done_after_pgbench": after_pause.get("pages_done"),
            "held_while_paused": holdings,
            "pgbench_no_migration": idle,
            "pgbench_no_migration_runs": idle_runs,
            "pgbench_while_paused": during,
            "pgbench_while_paused_later": later,
            "wal_mb_s_while_paused": [wal_rate_mb_s(samples, start, end) for _tag, start, end, _out in windows],
            "checkpoints_requested_server_wide_at_pause_and_after_each_window": checkpoints,
            "server_waits_while_paused": waits,
            "continue_command_wall_s": resume["wall_s"],
            "continue_effective_s": round(moved["t"] - resumed["t"], 3),
            "run": result,
        }
    finally:
        drop_database(name)


def case_rate_limit(args, template: str, scratch: Path) -> dict:
    name = COPY.format(case="rate")
    copy_database(name, template, settled=True)
    url = url_of(name)
    work = Path(tempfile.mkdtemp(dir=scratch, prefix="rate-"))
    limit = args.rows_per_second
    try:
        watcher = Watcher(url)
        watcher.start()
        run = Run(url, work)
        start_walk = watcher.wait(walking(), 900, run)
        unthrottled = start_walk["progress"]
        time.sleep(1.0)
        free = watcher.progress()
        free_rate = (free["rows_changed"] - unthrottled["rows_changed"]) / max(time.time() - start_walk["t"], 1e-3)
        command = control(run, "limit", "--rows-per-second", f"{limit:g}", "--reason", "bench: rate limit")
        written = watcher.wait(lambda _p, c: c.get("rows_per_second") == limit, 10, since=command["started"])
        in_force = watcher.wait(
            lambda p, _c: (p.get("control") or {}).get("rows_per_second") == limit, 30, run, since=command["started"]
        )
        # from the first progress write after the one that reported the limit: each batch from then on sleeps
        first = watcher.wait(
            lambda p, _c: p.get("rows_changed", 0) > in_force["progress"]["rows_changed"], 60, run, since=in_force["t"]
        )
        eta_at_start = first["progress"].get("eta_s")
        time.sleep(args.limit_seconds)
        at_minute = watcher.latest()
        # a pause under the limit: the batch's rate-limit sleep comes before the next read of the control
        # three times, at random moments of the batch cycle
        under_limit = []
        for _ in range(3):
            time.sleep(random.uniform(0, 1.5))
            pause = control(run, "pause", "--reason", "bench: pause under a rate limit")
            pause_seen = watcher.wait(lambda _p, c: c.get("paused") is True, 10, since=pause["started"])
            paused = watcher.wait(lambda p, _c: p.get("phase") == "paused", 600, run, since=pause_seen["t"])
            under_limit.append(round(paused["t"] - pause_seen["t"], 3))
            resume = control(run, "continue")
            watcher.wait(lambda p, _c: p.get("phase") == "backfill", 60, run, since=resume["started"])
        pause = control(run, "pause", "--reason", "bench: clear the limit")
        watcher.wait(lambda p, _c: p.get("phase") == "paused", 600, run, since=pause["started"])
        clear = control(run, "limit", "--clear")
        cleared_seen = watcher.wait(lambda _p, c: not c.get("rows_per_second"), 10, since=clear["started"])
        control(run, "continue")
        cleared = watcher.wait(
            lambda p, _c: not (p.get("control") or {}).get("rows_per_second"), 120, run, since=cleared_seen["t"]
        )
        result = run.finish()
        samples = watcher.stop()
        # rows changed between the first write in force and the last write within the minute (batch-exact)
        writes = [
            s
            for s in samples
            if first["t"] <= s["t"] <= at_minute["t"]
            and s.get("progress", {}).get("table") == first["progress"]["table"]
        ]
        changes, last_rows = [], None
        for sample in writes:
            rows = sample["progress"]["rows_changed"]
            if rows != last_rows:
                changes.append(sample)
                last_rows = rows
        end = changes[-1]
        exact = (end["progress"]["rows_changed"] - first["progress"]["rows_changed"]) / (end["t"] - first["t"])
        naive = (at_minute["progress"]["rows_changed"] - first["progress"]["rows_changed"]) / (
            at_minute["t"] - first["t"]
        )
        pages_left = first["progress"]["pages_total"] - first["progress"]["pages_done"]
        rows_per_page = first["progress"]["rows_changed"] / max(first["progress"]["pages_done"], 1)
        return {
            "rows": args.rows,
            "limit_rows_per_s": limit,
            "unthrottled_rows_per_s_before": round(free_rate),
            "limit_command_wall_s": command["wall_s"],
            "limit_in_force_after_written_s": round(in_force["t"] - written["t"], 3),
            "window_s": round(at_minute["t"] - first["t"], 1),
            "batches_in_window": len(changes) - 1,
            "achieved_rows_per_s": round(exact, 1),
            "achieved_rows_per_s_whole_window": round(naive, 1),
            "deviation_pct": round(100 * (exact - limit) / limit, 2),
            "deviation_pct_whole_window": round(100 * (naive - limit) / limit, 2),
            "same_walk_throughout": end["progress"]["table"] == at_minute["progress"].get("table"),
            "eta_s_reported_at_start": eta_at_start,
            "eta_s_at_the_limit": round(pages_left * rows_per_page / limit, 1),
            "pages_per_s_reported_in_window": at_minute["progress"].get("pages_per_s"),
            "pause_under_limit_effective_s": max(under_limit),
            "pause_under_limit_each_s": under_limit,
            "interval_between_batches_under_limit_s": round(
                statistics.median(batch_intervals(samples, first["t"], at_minute["t"]) or [0]), 3
            ),
            "clear_command_wall_s": clear["wall_s"],
            "clear_seen_by_run_s": round(cleared["t"] - cleared_seen["t"], 3),
            "run": result,
        }
    finally:
        drop_database(name)


def case_burst(args, template: str, scratch: Path, label: str, env: dict | None, burst_at: float | None = None) -> dict:
    """pgbench at the normal rate, a burst of burst_factor x for burst_seconds; the run (env) or none.
    With no run, the burst comes ``burst_at`` seconds after the application started (as late as it came
    in the run with the defaults: the same time since the copy's checkpoint), else after --idle-warmup."""
    name = COPY.format(case=f"burst_{label}")
    copy_database(name, template, settled=True)
    url = url_of(name)
    work = Path(tempfile.mkdtemp(dir=scratch, prefix=f"burst-{label}-"))
    extra_rate = args.normal_rate * (args.burst_factor - 1)
    try:
        watcher = Watcher(url)
        watcher.start()
        normal = Background(url, work, args.normal_rate)
        normal.start()
        app_start = time.time()
        run = None
        if env is None:
            time.sleep(burst_at if burst_at is not None else args.idle_warmup)
        else:
            run = Run(url, work, env)
            walk = watcher.wait(walking(), 900, run)
            time.sleep(max(0.0, walk["t"] + args.burst_after - time.time()))
        pre_start = max(time.time() - 5, watcher.samples[0]["t"])
        burst_start = time.time()
        burst_out = run_pgbench(url, work, "burst", extra_rate, args.burst_seconds, 8)
        burst_end = time.time()
        at_end = watcher.progress()
        time.sleep(5)
        result = run.finish() if run else None  # the application keeps its normal rate until the run ends
        normal.stop()
        normal_at = time.time()
        samples = watcher.stop()
        found = transactions(work, ("normal", "burst"))
        in_burst = [s for s in samples if burst_start <= s["t"] <= burst_end and s.get("progress")]
        phases = {}
        for sample in in_burst:
            phase = sample["progress"].get("phase")
            key = (
                f"{phase}: {sample['progress'].get('waiting_for')}" if sample["progress"].get("waiting_for") else phase
            )
            phases[key] = phases.get(key, 0) + 1
        share = {key: round(count / len(in_burst), 3) for key, count in phases.items()} if in_burst else {}
        walk_pages = [
            s["progress"].get("pages_done") for s in in_burst if s["progress"].get("table") == "subscriptions"
        ]
        pre = [s for s in samples if pre_start <= s["t"] <= burst_start and s.get("progress")]
        pre_pages = [s["progress"]["pages_done"] for s in pre if s["progress"].get("table") == "subscriptions"]
        walk_end = next(
            (
                s["t"]
                for s in samples
                if s["t"] > burst_start
                and (s.get("progress") or {}).get("table") != "subscriptions"
                and s.get("progress") is not None
            ),
            None,
        )
        return {
            "label": label,
            "env": env,
            "normal_rate": args.normal_rate,
            "burst_rate": args.normal_rate * args.burst_factor,
            "burst_s": round(burst_end - burst_start, 1),
            "burst_after_app_start_s": round(burst_start - app_start, 1),
            "pgbench_in_burst": latency_figures(found, burst_start, burst_end),
            # where in the burst the slow transactions are: its first second (the run still walking
            # until the back-off) or all through it (what the walk left behind: checkpoints, dirty pages)
            "pgbench_burst_first_1s": latency_figures(found, burst_start, burst_start + 1),
            "pgbench_burst_after_1s": latency_figures(found, burst_start + 1, burst_end),
            "pgbench_burst_after_5s": latency_figures(found, burst_start + 5, burst_end),
            "pgbench_before_burst_5s": latency_figures(found, pre_start, burst_start),
            "pgbench_after_burst_5s": latency_figures(found, burst_end, burst_end + 5),
            "pgbench_failed": failures([burst_out, *normal.outputs]),
            "wal_mb_s_before_burst": wal_rate_mb_s(samples, pre_start, burst_start),
            "wal_mb_s_in_burst": wal_rate_mb_s(samples, burst_start, burst_end),
            "run_phase_share_in_burst": share,
            "walk_pages_per_s_before_burst": round((pre_pages[-1] - pre_pages[0]) / (pre[-1]["t"] - pre[0]["t"]), 1)
            if len(pre_pages) > 1
            else None,
            "walk_pages_per_s_in_burst": round((walk_pages[-1] - walk_pages[0]) / (burst_end - burst_start), 1)
            if len(walk_pages) > 1
            else None,
            "walk_still_running_at_burst_end": at_end.get("table") == "subscriptions",
            "walk_ended_s_after_burst_start": round(walk_end - burst_start, 1) if walk_end else None,
            "normal_stopped_s_after_burst_end": round(normal_at - burst_end, 1),
            "run": result,
        }
    finally:
        drop_database(name)


# ------------------------------------------------------------------ the whole
def build_template(rows: int) -> tuple[str, float | None]:
    template = TEMPLATE.format(rows=rows)
    exists = psql_scalar(url_of("postgres"), f"SELECT count(*) FROM pg_database WHERE datname = '{template}'")
    if exists != "0":
        return template, None
    admin(f'CREATE DATABASE "{template}"')
    migrate_to_baseline(url_of(template))
    seconds = manage(url_of(template), "seed_demo_data", "--users", str(rows), "--subscriptions", str(rows))
    return template, round(seconds, 1)


def judge(results: dict, args) -> list[dict]:
    """Each target of the issue: measured, goal, met."""
    targets = []
    pause = results.get("pause")
    if pause:
        held = pause["held_while_paused"]
        nothing_held = all(h["idle_in_transaction"] == 0 and h["run_locks_on_walked_tables"] == 0 for h in held)
        idle, during = pause["pgbench_no_migration"], pause["pgbench_while_paused"]
        later = pause.get("pgbench_while_paused_later")
        effect = max(pause["pause_effective_s"], pause.get("pause_effective_audit_log_s") or 0.0)
        targets.append(
            {
                "target": "pause takes effect within one batch (under a second)",
                "measured": f"{pause['pause_effective_s']:.3f} s from the control written to phase 'paused' "
                f"(audit log: {pause.get('pause_effective_audit_log_s')} s; batches before it: median "
                f"{pause['batch_interval_before_pause_s']['median']} s, "
                f"max {pause['batch_interval_before_pause_s']['max']} s)",
                "goal": "< 1 s and <= one batch",
                "met": effect < 1.0 and effect <= (pause["batch_interval_before_pause_s"]["max"] or 1.0) + 0.05,
            }
        )
        ratio = during["p99_ms"] / idle["p99_ms"] if idle.get("p99_ms") else None
        targets.append(
            {
                "target": "costs the application nothing while paused",
                "measured": f"no transaction, no lock on the walked tables: {nothing_held}; pgbench p50/p99/max "
                f"{during['p50_ms']}/{during['p99_ms']}/{during['max_ms']} ms paused vs "
                f"{idle['p50_ms']}/{idle['p99_ms']}/{idle['max_ms']} ms without a migration "
                f"(p99 {ratio:.2f}x); pages_done unchanged: "
                f"{pause['pages_done_at_pause'] == pause['pages_done_after_pgbench']}",
                "goal": "nothing held; p99 within noise (<= 1.2x) of no migration",
                "met": nothing_held
                and ratio is not None
                and ratio <= 1.2
                and pause["pages_done_at_pause"] == pause["pages_done_after_pgbench"],
            }
        )
        if later:
            later_ratio = later["p99_ms"] / idle["p99_ms"] if idle.get("p99_ms") else None
            targets.append(
                {
                    "target": f"costs the application nothing while paused, {args.pause_seconds:g}-"
                    f"{2 * args.pause_seconds:g} s after the pause",
                    "measured": f"pgbench p50/p99/max {later['p50_ms']}/{later['p99_ms']}/{later['max_ms']} ms vs "
                    f"{idle['p50_ms']}/{idle['p99_ms']}/{idle['max_ms']} ms without a migration (p99 "
                    f"{later_ratio:.2f}x); WAL MB/s in the two windows {pause.get('wal_mb_s_while_paused')}; "
                    f"requested checkpoints (server-wide) at the pause and after each window "
                    f"{pause.get('checkpoints_requested_server_wide_at_pause_and_after_each_window')}",
                    "goal": "p99 within noise (<= 1.2x) of no migration",
                    "met": later_ratio is not None and later_ratio <= 1.2,
                }
            )
        targets.append(
            {
                "target": "continue: the run finishes, exit 0",
                "measured": f"exit {pause['run']['exit']}, {pause['run']['status']}, "
                f"pauses_s {pause['run']['pauses_s']}",
                "goal": "exit 0, online_applied",
                "met": pause["run"]["exit"] == 0 and pause["run"]["status"] == "online_applied",
            }
        )
    rate = results.get("rate_limit")
    if rate:
        targets.append(
            {
                "target": "pause under a rate limit takes effect within one batch (under a second)",
                "measured": f"longest of three {rate['pause_under_limit_effective_s']} s (batches "
                f"{rate['interval_between_batches_under_limit_s']} s apart under the limit)",
                "goal": "< 1 s",
                "met": rate["pause_under_limit_effective_s"] < 1.0,
            }
        )
        targets.append(
            {
                "target": "a rate limit holds within 10% over a minute",
                "measured": f"{rate['achieved_rows_per_s']:g} rows/s over {rate['window_s']} s at a limit of "
                f"{rate['limit_rows_per_s']:g} ({rate['deviation_pct']:+.2f}%; whole window "
                f"{rate['deviation_pct_whole_window']:+.2f}%); unthrottled "
                f"{rate['unthrottled_rows_per_s_before']} rows/s",
                "goal": "within 10% over >= 60 s",
                "met": abs(rate["deviation_pct"]) <= 10
                and abs(rate["deviation_pct_whole_window"]) <= 10
                and rate["window_s"] >= 59.5
                and rate["run"]["exit"] == 0,
            }
        )
    bursts = results.get("burst") or {}
    idle = [bursts[k]["pgbench_in_burst"]["p99_ms"] for k in bursts if k.startswith("no_migration")]
    if idle:
        reference = statistics.mean(idle)
        for label, entry in bursts.items():
            if label.startswith("no_migration"):
                continue
            p99 = entry["pgbench_in_burst"]["p99_ms"]
            backed = {k: v for k, v in (entry["run"]["pauses_s"] or {}).items() if k != "operator"}
            share = sum(v for k, v in entry["run_phase_share_in_burst"].items() if k.startswith("backing off"))
            entry["p99_ratio"] = round(p99 / reference, 2)
            targets.append(
                {
                    "target": f"burst: the run backs off, app p99 <= 1.5x no migration ({label})",
                    "measured": f"p99 {p99} ms vs {reference:.2f} ms ({entry['p99_ratio']}x); backing off "
                    f"{100 * share:.0f}% of the burst; pauses_s {backed or '{}'}; exit {entry['run']['exit']}",
                    "goal": "backed off and <= 1.5x",
                    "met": bool(backed) and share > 0 and entry["p99_ratio"] <= 1.5 and entry["run"]["exit"] == 0,
                }
            )
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cases", default="pause,rate_limit,burst")
    parser.add_argument("--normal-rate", type=int, default=200, help="pgbench transactions per second")
    parser.add_argument("--burst-factor", type=int, default=5)
    parser.add_argument("--burst-seconds", type=float, default=20)
    parser.add_argument("--burst-after", type=float, default=3, help="seconds into the subscriptions walk")
    parser.add_argument("--idle-warmup", type=float, default=20, help="pgbench before the burst, no migration")
    parser.add_argument("--pause-seconds", type=float, default=10)
    parser.add_argument("--rows-per-second", type=float, default=5000)
    parser.add_argument("--limit-seconds", type=float, default=60)
    parser.add_argument(
        "--tuned",
        default="load_off,lock_waiters_1,wal_half_backfill,wal_between_app",
        help="burst variants with the back-off tuned",
    )
    parser.add_argument("--output", default=str(ROOT / "bench" / "results-online-control"))
    parser.add_argument("--keep-template", action="store_true")
    parser.add_argument("--render", action="store_true", help="rewrite the .md from the .json only")
    parser.add_argument("--caveat", action="append", default=[])
    args = parser.parse_args()
    output = Path(args.output)
    if args.render:
        results = json.loads(output.with_suffix(".json").read_text())
        output.with_suffix(".md").write_text(render(results))
        return

    started = time.time()
    load_before = os.getloadavg()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    results: dict = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit.stdout.strip(),
        "machine": machine(),
        "versions": versions(BASE_URL),
        "load_before": [round(x, 2) for x in load_before],
        "other_active_sessions_before": other_sessions(),
        "safety_point_bench_running_at_start": bool(
            subprocess.run(["pgrep", "-f", "bench_safety_point.py"], capture_output=True).stdout.strip()
        ),
        "caveats": args.caveat,
        "defaults": DEFAULTS,
        "parameters": {k: v for k, v in vars(args).items() if k not in ("render", "output", "caveat")},
    }
    template, seeded = build_template(args.rows)
    results["seed_s"] = seeded
    scratch = Path(tempfile.mkdtemp(prefix="bench-online-control-"))
    cases = args.cases.split(",")
    try:
        for case, function in (("pause", case_pause), ("rate_limit", case_rate_limit), ("burst", run_bursts)):
            if case not in cases:
                continue
            try:
                results[case] = function(args, template, scratch)
            except Exception as exc:  # one case failing must not lose the others' figures
                results.setdefault("errors", {})[case] = f"{type(exc).__name__}: {exc}"[:2000]
            print(json.dumps({case: results.get(case), "error": results.get("errors", {}).get(case)}), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # the runs' backups and logs, pgbench's logs
        if not args.keep_template:
            drop_database(template)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["other_active_sessions_after"] = other_sessions()
    results["total_s"] = round(time.time() - started, 1)
    results["targets"] = judge(results, args)
    output.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    output.with_suffix(".md").write_text(render(results))
    print(render(results))


def run_bursts(args, template: str, scratch: Path) -> dict:
    bursts: dict = {}

    def one(label: str, env: dict | None, burst_at: float | None = None) -> dict:
        try:
            bursts[label] = case_burst(args, template, scratch, label, env, burst_at)
        except Exception as exc:  # keep the other variants
            print(json.dumps({"burst": label, "error": f"{type(exc).__name__}: {exc}"[:2000]}), flush=True)
            return {}
        print(json.dumps({"burst": bursts[label]}), flush=True)
        return bursts[label]

    # The run with the defaults first: the bursts with no migration come as long after the copy's
    # checkpoint as its burst did.
    default = one("defaults", {})
    burst_at = default.get("burst_after_app_start_s")
    idle = one("no_migration", None, burst_at)
    app_normal = idle.get("wal_mb_s_before_burst") or 0.0
    app_burst = idle.get("wal_mb_s_in_burst") or 0.0
    backfill = default.get("wal_mb_s_before_burst") or 0.0
    tuned = {
        "load_off": {"MIGRATION_ONLINE_MAX_LOAD_RISE": "0"},  # the defaults before the load signal
        "checkpoint_pacing": {"MIGRATION_ONLINE_CHECKPOINT_PACING": "true"},
        "lock_waiters_1": {"MIGRATION_ONLINE_MAX_LOCK_WAITERS": "1"},
        "wal_half_backfill": {"MIGRATION_ONLINE_MAX_WAL_RATE": f"{max(backfill / 2, 0.01):.2f}"},
        "wal_between_app": {"MIGRATION_ONLINE_MAX_WAL_RATE": f"{max((app_normal + app_burst) / 2, 0.01):.2f}"},
    }
    for label in [x for x in args.tuned.split(",") if x]:
        one(label, tuned[label])
    one("no_migration_again", None, burst_at)
    return bursts


# ------------------------------------------------------------------ rendering
def yes(flag: bool) -> str:
    return "**yes**" if flag else "**no**"


def render(results: dict) -> str:
    lines = [
        "# Operating a long online run (bench_online_control.py)",
        "",
        f"Date {results['date']}, commit `{results['commit']}`, {results['machine']['cpu']} "
        f"({results['machine']['cores']} cores, {results['machine']['memory_gb']} GB), "
        f"PostgreSQL {results['versions'].get('postgresql_server')}, {results['versions'].get('server_settings')}.",
        f"Load average before {results['load_before']}, after {results.get('load_after')}; other active "
        f"sessions on the server before/after: {results['other_active_sessions_before']}/"
        f"{results.get('other_active_sessions_after')}; bench_safety_point.py running at the start: "
        f"{results['safety_point_bench_running_at_start']}. {results['parameters']['rows']:,} users + "
        f"{results['parameters']['rows']:,} subscriptions (seeded in {results.get('seed_s')} s; None: the "
        f"template existed); total {results.get('total_s')} s.",
        "",
    ]
    for caveat in results.get("caveats") or []:
        lines.append(f"**Caveat:** {caveat}")
        lines.append("")
    for case, error in (results.get("errors") or {}).items():
        lines += [f"**Case {case} failed:** {error}", ""]
    lines += ["## Targets", "", "| target | measured | goal | met |", "|---|---|---|---|"]
    for target in results.get("targets", []):
        lines.append(f"| {target['target']} | {target['measured']} | {target['goal']} | {yes(target['met'])} |")
    if results.get("findings"):
        lines += ["", "## Findings", ""]
        lines += [f"{number}. {finding}" for number, finding in enumerate(results["findings"], 1)]
    lines += ["", "## The run's defaults (beside every figure)", "", "| setting | default |", "|---|---|"]
    lines += [f"| `{key}` | {value} |" for key, value in results["defaults"].items()]
    pause = results.get("pause")
    if pause:
        idle, during = pause["pgbench_no_migration"], pause["pgbench_while_paused"]
        held = pause["held_while_paused"]
        lines += [
            "",
            "## 1. Pause",
            "",
            "| figure | value |",
            "|---|---|",
            f"| `online_control pause` wall time (a Django process) | {pause['pause_command_wall_s']} s |",
            f"| control written -> phase `paused` (watcher, 20 ms polls; longest gap between polls "
            f"{pause.get('watcher_gap_max_s')} s) | **{pause['pause_effective_s']} s** |",
            f"| audit log: `online_control` event -> run's `online_paused` event | "
            f"{pause.get('pause_effective_audit_log_s')} s |",
            f"| command exit -> phase `paused` | {pause['pause_effective_from_command_end_s']} s |",
            f"| last batch's progress after the control was written | {pause['last_batch_after_control_s']} s |",
            f"| batches just before (interval between progress writes) | median "
            f"{pause['batch_interval_before_pause_s']['median']} s, max {pause['batch_interval_before_pause_s']['max']}"
            f" s ({pause['batch_interval_before_pause_s']['count']}) |",
            f"| pages done at the pause / after {results['parameters']['pause_seconds']:g} s of pgbench / total | "
            f"{pause['pages_done_at_pause']:,} / {pause['pages_done_after_pgbench']:,} / {pause['pages_total']:,} |",
            f"| sessions idle in transaction while paused (two readings) | "
            f"{', '.join(str(h['idle_in_transaction']) for h in held)} |",
            f"| run's locks on users/subscriptions while paused | "
            f"{', '.join(str(h['run_locks_on_walked_tables']) for h in held)} |",
            f"| run's sessions holding an xmin while paused | "
            f"{', '.join(str(h['run_sessions_with_xmin']) for h in held)} |",
            f"| run's advisory locks while paused (the migration lock) | "
            f"{', '.join(str(h['run_advisory_locks']) for h in held)} |",
            f"| pgbench {results['parameters']['normal_rate']} tps, no migration (two runs together): p50 / p99 / "
            f"max | {idle['p50_ms']} / {idle['p99_ms']} / {idle['max_ms']} ms ({idle['transactions']} tx, "
            f"{idle['failed']} failed); the two runs' p99: "
            f"{' / '.join(str(r.get('p99_ms')) for r in pause.get('pgbench_no_migration_runs', []))} ms |",
            f"| pgbench {results['parameters']['normal_rate']} tps, run paused: p50 / p99 / max | "
            f"{during['p50_ms']} / {during['p99_ms']} / {during['max_ms']} ms ({during['transactions']} tx, "
            f"{during['failed']} failed) |",
            *(
                [
                    f"| the same, the next {results['parameters']['pause_seconds']:g} s | "
                    f"{later['p50_ms']} / {later['p99_ms']} / {later['max_ms']} ms ({later['transactions']} tx, "
                    f"{later['failed']} failed) |",
                    f"| WAL MB/s in the two windows; requested checkpoints (server-wide) at the pause, after each | "
                    f"{pause.get('wal_mb_s_while_paused')}; "
                    f"{pause.get('checkpoints_requested_server_wide_at_pause_and_after_each_window')} |",
                ]
                if (later := pause.get("pgbench_while_paused_later"))
                else []
            ),
            f"| `online_control continue`: control written -> next batch's progress | "
            f"{pause['continue_effective_s']} s |",
            f"| the run | exit {pause['run']['exit']}, {pause['run']['status']}, {pause['run']['total_s']} s, "
            f"pauses_s {pause['run']['pauses_s']} |",
        ]
    rate = results.get("rate_limit")
    if rate:
        lines += [
            "",
            "## 2. Rate limit",
            "",
            "| figure | value |",
            "|---|---|",
            f"| limit | {rate['limit_rows_per_s']:g} rows/s (unthrottled just before: "
            f"{rate['unthrottled_rows_per_s_before']} rows/s; default: no limit) |",
            f"| limit written -> in the run's progress | {rate['limit_in_force_after_written_s']} s |",
            f"| achieved, first to last progress write in the window ({rate['batches_in_window']} batches) | "
            f"**{rate['achieved_rows_per_s']:g} rows/s ({rate['deviation_pct']:+.2f}%)** |",
            f"| achieved over the whole {rate['window_s']} s window | {rate['achieved_rows_per_s_whole_window']:g} "
            f"rows/s ({rate['deviation_pct_whole_window']:+.2f}%) |",
            f"| ETA reported when the limit took hold / ETA at the limit | {rate['eta_s_reported_at_start']} s / "
            f"{rate['eta_s_at_the_limit']} s |",
            f"| pages_per_s reported under the limit (time in batches only) | "
            f"{rate['pages_per_s_reported_in_window']} |",
            f"| interval between batches under the limit (median) | "
            f"{rate['interval_between_batches_under_limit_s']} s |",
            f"| `pause` under the limit: control written -> phase `paused` | "
            f"**{' / '.join(str(x) for x in rate['pause_under_limit_each_s'])} s** (three pauses) |",
            f"| `limit --clear` written (while paused) -> the run's progress shows it | "
            f"{rate['clear_seen_by_run_s']} s |",
            f"| the run | exit {rate['run']['exit']}, {rate['run']['status']}, {rate['run']['total_s']} s |",
        ]
    bursts = results.get("burst")
    if bursts:
        labels = list(bursts)
        lines += ["", "## 3. Burst back-off", "", "| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]

        def row(name: str, value) -> None:
            lines.append(f"| {name} | " + " | ".join(str(value(bursts[label])) for label in labels) + " |")

        def fig(key: str, what: str):
            return lambda entry: entry[key].get(what, "")

        row(
            "settings",
            lambda e: (
                "no migration"
                if e["run"] is None
                else (
                    ", ".join(f"{k.replace('MIGRATION_ONLINE_', '')}={v}" for k, v in (e["env"] or {}).items())
                    or "defaults"
                )
            ),
        )
        row("rate normal -> burst (tps)", lambda e: f"{e['normal_rate']} -> {e['burst_rate']} for {e['burst_s']} s")
        row("**p99 in the burst (ms)**", fig("pgbench_in_burst", "p99_ms"))
        row("p99 ratio to no migration", lambda e: e.get("p99_ratio", "-"))
        row("p50 in the burst (ms)", fig("pgbench_in_burst", "p50_ms"))
        row("max in the burst (ms)", fig("pgbench_in_burst", "max_ms"))
        row(
            "p99 in its first second / after it / after 5 s (ms)",
            lambda e: " / ".join(
                str((e.get(key) or {}).get("p99_ms"))
                for key in ("pgbench_burst_first_1s", "pgbench_burst_after_1s", "pgbench_burst_after_5s")
            ),
        )
        row("transactions in the burst", fig("pgbench_in_burst", "transactions"))
        row(
            "p99 5 s before / after (ms)",
            lambda e: f"{e['pgbench_before_burst_5s'].get('p99_ms')} / {e['pgbench_after_burst_5s'].get('p99_ms')}",
        )
        row("pgbench failures", lambda e: e["pgbench_failed"])
        row("WAL MB/s before / in the burst", lambda e: f"{e['wal_mb_s_before_burst']} / {e['wal_mb_s_in_burst']}")
        row(
            "run's phase in the burst (share of samples)",
            lambda e: "; ".join(f"{k} {v:.0%}" for k, v in e["run_phase_share_in_burst"].items()) or "-",
        )
        row(
            "walk pages/s before / in the burst",
            lambda e: f"{e['walk_pages_per_s_before_burst']} / {e['walk_pages_per_s_in_burst']}",
        )
        row(
            "walk still running at the burst's end", lambda e: e["walk_still_running_at_burst_end"] if e["run"] else "-"
        )
        row("run's pauses_s (--json)", lambda e: e["run"]["pauses_s"] if e["run"] else "-")
        row(
            "run exit, status, total",
            lambda e: f"{e['run']['exit']}, {e['run']['status']}, {e['run']['total_s']} s" if e["run"] else "-",
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
