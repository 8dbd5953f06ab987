"""What the application feels during the upgrade: online vs one transaction vs plain migrate.

    python bench/bench_online.py --rows 1000000 [--rounds 1] [--standby-port 5433]

Builds a PostgreSQL database at the baseline with N users and N subscriptions (seed_demo_data),
then upgrades identical copies (CREATE DATABASE ... TEMPLATE) three ways while the application
runs: the stand-in of tests/workload.py (reads, single-row updates and inserts that name the
baseline columns only, every 50 ms, no lock timeout) and pgbench with a custom read/update/insert
script at a fixed rate. For each way it prints the longest wait of any application statement,
the application's errors, whether every application write is present afterwards, the longest
ACCESS EXCLUSIVE hold the run reports, and the total time.

With --standby-port, the script starts a streaming standby of the server on that port
(pg_basebackup, run as the postgres user; replication from 127.0.0.1 is allowed in pg_hba.conf)
that replays WAL --standby-delay late; the online run then reports how long it paused for replay
lag above --max-replica-lag (MIGRATION_ONLINE_MAX_REPLICA_LAG).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import BASE_URL, ROOT, admin, manage, manage_argv, migrate_to_baseline, run_measured
from bench_backup import pg_dump_plain

sys.path.insert(0, str(ROOT))
from tests.workload import AppWorkload  # noqa: E402

PGBENCH_SCRIPT = """\\set id random(1, {max_id})
SELECT status, price FROM subscriptions WHERE id = :id;
UPDATE subscriptions SET updated_at = now() WHERE id = :id;
INSERT INTO subscriptions (plan, status, price, currency, billing_interval, started_at, created_at, updated_at, user_id)
  VALUES ('basic', 'active', 9.99, 'usd', 'month', now(), now(), now(), '{user_id}');
"""


def psql_scalar(url: str, sql: str) -> str:
    done = subprocess.run(["psql", "-X", "-At", "-d", url, "-c", sql], capture_output=True, text=True, check=True)
    return done.stdout.strip()


class PgBench(threading.Thread):
    """pgbench in 5-second runs until stopped (each run ends cleanly, so every latency is logged)."""

    def __init__(self, url: str, rate: int, workdir: Path) -> None:
        super().__init__(daemon=True)
        self.url, self.rate, self.workdir = url, rate, workdir
        self.halt = threading.Event()
        self.outputs: list[str] = []
        max_id = psql_scalar(url, "SELECT max(id) FROM subscriptions")
        user_id = psql_scalar(url, "SELECT id FROM users ORDER BY id LIMIT 1")
        self.script = workdir / "app.sql"
        self.script.write_text(PGBENCH_SCRIPT.format(max_id=max_id, user_id=user_id))

    def run(self) -> None:
        chunk = 0
        while not self.halt.is_set():
            argv = ["pgbench", "-n", "-f", str(self.script), "-c", "4", "-j", "2", "-R", str(self.rate), "-T", "5"]
            argv += ["-l", "--log-prefix", str(self.workdir / f"pgbench{chunk}"), self.url]
            done = subprocess.run(argv, capture_output=True, text=True, cwd=self.workdir)
            self.outputs.append(done.stdout + done.stderr)
            chunk += 1

    def figures(self) -> dict:
        self.halt.set()
        self.join(timeout=60)
        latencies = []
        for log in self.workdir.glob("pgbench*.*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]) / 1e6)
        output = "\n".join(self.outputs)
        failed = sum(int(n) for n in re.findall(r"number of failed transactions: (\d+)", output))
        return {
            "transactions": len(latencies),
            "longest_s": round(max(latencies), 3) if latencies else None,
            "p99_s": round(statistics.quantiles(latencies, n=100)[98], 4) if len(latencies) > 100 else None,
            "failed": failed,
            "client_errors": len(re.findall(r"error|aborted", output, re.I)),
        }


SLOT = "bench_online_standby"
PG_BIN = Path("/usr/lib/postgresql") / sorted(os.listdir("/usr/lib/postgresql"))[-1] / "bin"


def start_standby(port: int, apply_delay: str) -> Path:
    """A streaming standby of the local server on ``port`` (pg_basebackup), replaying WAL only
    ``apply_delay`` after it arrives, so the backfill has a lagging replica to wait for.
    Allows replication connections from 127.0.0.1 in pg_hba.conf (trust, as the server's others)."""
    hba = psql_scalar(f"{BASE_URL}/postgres", "SHOW hba_file")
    text = Path(hba).read_text()
    if "host replication all 127.0.0.1/32" not in text:
        Path(hba).write_text(text + "\nhost replication all 127.0.0.1/32 trust\n")
        psql_scalar(f"{BASE_URL}/postgres", "SELECT pg_reload_conf()")
    data = Path(tempfile.mkdtemp(prefix="bench-standby-"))
    os.chown(data, *_postgres_ids())
    as_postgres = ["runuser", "-u", "postgres", "--"]
    # A replication slot keeps the WAL the standby has not received (a busy server recycles it fast).
    psql_scalar(
        f"{BASE_URL}/postgres",
        f"SELECT pg_drop_replication_slot('{SLOT}') FROM pg_replication_slots WHERE slot_name = '{SLOT}'",
    )
    subprocess.run(
        [*as_postgres, str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-U", "postgres", "-D", str(data), "-R"]
        + ["-C", "-S", SLOT],
        check=True,
    )
    main_conf = Path(hba).parent
    (data / "postgresql.conf").write_text(
        f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '/tmp'\nhot_standby = on\n"
        f"hba_file = '{hba}'\nident_file = '{main_conf / 'pg_ident.conf'}'\n"
        f"recovery_min_apply_delay = '{apply_delay}'\n"
    )
    os.chown(data / "postgresql.conf", *_postgres_ids())
    subprocess.run(
        [
            *as_postgres,
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(data / "log"),
            "-w",
            "start",
            "-o",
            f"-p {port}",
        ],
        check=True,
    )
    return data


def _postgres_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


def stop_standby(data: Path) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"])
    psql_scalar(f"{BASE_URL}/postgres", f"SELECT pg_drop_replication_slot('{SLOT}')")


class LockWaitSampler(threading.Thread):
    """Every 20 ms, the application sessions the server shows waiting on a lock, and for how long:
    tells a lock wait (the migration's doing) from a slow statement on a busy machine."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.halt = threading.Event()
        self.longest_s = 0.0
        self.longest_query = ""

    def run(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.url.replace("postgres://", "postgresql://"))
        conn.autocommit = True
        with conn.cursor() as cursor:
            while not self.halt.is_set():
                cursor.execute(
                    "SELECT EXTRACT(EPOCH FROM clock_timestamp() - query_start), left(query, 60) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock' "
                    "AND application_name IN ('pgbench', 'app-stand-in') ORDER BY 1 DESC LIMIT 1"
                )
                row = cursor.fetchone()
                if row and row[0] > self.longest_s:
                    self.longest_s, self.longest_query = float(row[0]), row[1]
                self.halt.wait(0.02)
        conn.close()

    def figures(self) -> dict:
        self.halt.set()
        self.join(timeout=10)
        return {"longest_lock_wait_s": round(self.longest_s, 3), "query": self.longest_query}


def upgrade(kind: str, url: str, env: dict, seconds_budget: int, rate: int, dump: str = "custom") -> dict:
    """Run one upgrade with the application stand-in (and pgbench at `rate` transactions per second,
    none when 0) running; return the figures. kind: online, transaction (safe_migrate's one
    transaction) or migrate (a raw dump, then plain `migrate`; dump "custom" is `pg_dump -Fc -Z1`,
    "plain" the runbook's plain SQL file). "client" is the upgrade's processes' wall time, CPU and
    peak memory (run_measured)."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bench = PgBench(url, rate, workdir) if rate else None
        if bench:
            bench.start()
        sampler = LockWaitSampler(url)
        sampler.start()
        time.sleep(1.0)
        with AppWorkload(url, interval=0.05, max_seconds=seconds_budget) as app:
            time.sleep(1.0)
            started = time.monotonic()
            if kind == "migrate":
                path = workdir / ("plain.sql" if dump == "plain" else "plain.dump")
                argv = (
                    pg_dump_plain(url, path)
                    if dump == "plain"
                    else ["pg_dump", "-Fc", "-Z1", "-f", str(path), "-d", url]
                )
                steps = [run_measured(argv), run_measured(manage_argv(url, "migrate", "--noinput", "-v0"), env=env)]
                summary = {}
            else:
                args = ["safe_migrate", "--noinput", "--json", *(["--online"] if kind == "online" else [])]
                steps = [run_measured(manage_argv(url, *args), env=env, check=False)]
                out = steps[0]["stdout"]
                summary = json.loads(out) if out.strip() else {"error": steps[0]["stderr"][-500:]}
            elapsed = time.monotonic() - started
            time.sleep(1.0)
        figures = bench.figures() if bench else None
        lock_waits = sampler.figures()
    report = app.report
    updated = report.updated
    kept_updates = 0
    if updated:
        ids = ",".join(str(i) for i in updated)
        rows = psql_scalar(url, f"SELECT string_agg(id || ':' || status, ',') FROM subscriptions WHERE id IN ({ids})")
        now = dict(item.split(":") for item in rows.split(",")) if rows else {}
        kept_updates = sum(1 for i, status in updated.items() if now.get(str(i)) == status)
    inserted = len(report.inserted)
    present = (
        int(psql_scalar(url, f"SELECT count(*) FROM subscriptions WHERE id IN ({','.join(map(str, report.inserted))})"))
        if inserted
        else 0
    )
    online = summary.get("online") or {}
    return {
        "kind": kind,
        "status": summary.get("status", "applied" if kind == "migrate" else None),
        "error": summary.get("error"),
        "stderr_tail": ""
        if summary.get("status") in (None, "applied", "online_applied")
        else steps[-1]["stderr"][-1500:],
        "total_s": round(elapsed, 2),
        "client": {key: round(sum(step[key] for step in steps), 3) for key in ("wall_s", "cpu_user_s", "cpu_sys_s")}
        | {"maxrss_mb": max(step["maxrss_mb"] for step in steps)},
        "durations": summary.get("durations"),
        "app_longest_wait_s": round(report.longest_wait_s, 3),
        "app_errors": len(report.errors),
        "app_error_examples": report.errors[:3],
        "app_writes_kept": f"{kept_updates}/{len(updated)} updates, {present}/{inserted} inserts",
        "pgbench": figures,
        "app_lock_waits_seen_by_server": lock_waits,
        "longest_lock_s": online.get("longest_lock_s"),
        "longest_lock": (online.get("longest_lock") or {}).get("statement", "")[:80],
        "batches": online.get("batches"),
        "retries": online.get("retries"),
        "replica_pauses_s": online.get("replica_pauses_s"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rate", type=int, default=300, help="pgbench transactions per second")
    parser.add_argument("--kinds", default="online,transaction,migrate")
    parser.add_argument("--max-replica-lag", default="10s")
    parser.add_argument("--standby-port", type=int, help="start a lagging streaming standby on this port")
    parser.add_argument("--standby-delay", default="3s", help="the standby's recovery_min_apply_delay")
    args = parser.parse_args()

    template = f"bench_online_{args.rows}"
    template_url = f"{BASE_URL}/{template}"
    exists = psql_scalar(f"{BASE_URL}/postgres", f"SELECT count(*) FROM pg_database WHERE datname = '{template}'")
    if exists == "0":
        admin(f"CREATE DATABASE {template}")
        migrate_to_baseline(template_url)
        seconds = manage(template_url, "seed_demo_data", "--users", str(args.rows), "--subscriptions", str(args.rows))
        print(f"seeded {args.rows} users + {args.rows} subscriptions in {seconds:.1f}s", flush=True)
    budget = max(120, args.rows // 5000)
    env = {
        "BACKUP_DIR": tempfile.mkdtemp(prefix="bench-online-"),
        "MIGRATION_LOG": os.path.join(tempfile.mkdtemp(), "migration.log"),
        "MIGRATION_ONLINE_MAX_REPLICA_LAG": args.max_replica_lag,
    }
    standby = start_standby(args.standby_port, args.standby_delay) if args.standby_port else None
    results = []
    try:
        run_rounds(args, template, env, budget, results)
    finally:
        if standby:
            stop_standby(standby)


def run_rounds(args, template: str, env: dict, budget: int, results: list) -> None:
    for round_no in range(args.rounds):
        for kind in args.kinds.split(","):
            name = f"bench_online_copy_{kind}"
            admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin(f"CREATE DATABASE {name} TEMPLATE {template}")
            result = upgrade(kind, f"{BASE_URL}/{name}", env, budget, args.rate)
            result["round"] = round_no
            results.append(result)
            print(json.dumps(result), flush=True)
            admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
