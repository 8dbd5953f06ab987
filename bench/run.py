"""One benchmark command for every operation, side by side with the raw tools, on identical data.

    .venv/bin/python bench/run.py --scale 1m          # bench/results.md and bench/results.json
    .venv/bin/python bench/run.py --scale 4m          # added to the same files, with the 1m -> 4m scaling
    .venv/bin/python bench/run.py --quick             # 100k smoke run: bench/results-quick.md/.json

Not a test. Against the PostgreSQL server of --server (default: the server of BENCH_ADMIN_URL,
postgres://postgres@127.0.0.1:5432), with pg_dump, pg_restore, psql, createdb and zstd on PATH:

1. seed: `seed_demo_data --users N --subscriptions N --seed 1` into fresh databases at the baseline
   (accounts 0001 + billing 0001) and at the head, --seed-rounds times each, alternating; the first
   of each is kept as the template every other database is copied from (CREATE DATABASE ... TEMPLATE).
2. backup (on a copy of the head database): `backup_db` / plain `pg_dump` / `pg_dump -Fc` /
   `pg_dump -Fc -Z0 | zstd -1` (the raw pipeline backup_db runs).
3. restore into a new database: `restore_db --target-database-url` / `verify_backup --restore-test` /
   `createdb` + `pg_restore --single-transaction` (of the `pg_dump -Fc` file).
4. in-place restore over a fresh copy: `restore_db` (safety backup, restore, validation) /
   `pg_restore --clean --if-exists --single-transaction`.
5. validate: `validate_db` (the command) / validate_db in a Python process set up once
   (bench_validate.ValidationWorker) / the same SQL statements through `psql`.
6. upgrade (each on a fresh copy of the baseline): `safe_migrate` (one transaction) /
   `safe_migrate --online` / plain `pg_dump > file` + plain `migrate`, each with the application
   stand-in (tests/workload.py: read, single-row update and insert on subscriptions every 50 ms) and
   the pg_stat_activity lock-wait sampler of bench_online.upgrade running.

Every group runs --rounds rounds (default 3); within a round each side runs once, and the order
rotates by one every round, so each side runs first, second and last equally often and load drift
falls on all sides alike. Preparation (dropping or copying databases, removing files) is outside
the timings. Per run: wall time (time.monotonic), and the CPU time and peak memory of the process
and its children (os.wait4's resource usage, what /usr/bin/time reports); server-side CPU is not
included. The 1-minute load average is recorded with every run.

Results: <output>.json keeps one entry per scale (a new run replaces the entry of its scale) and
<output>.md is rendered from all of them: operation, ours, raw tool, ratio (of medians; the
per-round range beside it), target, met; the measurements with median, min-max and spread; the
upgrades with the application's longest wait and errors; seeding rows per second; and, for two
scales, every ratio at both and the growth of every time across the two runs (shown, not judged:
two runs are two machines as far as speed goes; bench/growth.py measures growth in one run).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import _common
import bench_backup
import bench_online
import bench_seed
import bench_validate
from _common import ROOT, admin, copy_database, drop_database, manage_argv, run_measured, url_of

PREFIX = "benchrun_"
SCALES = {"k": 1_000, "m": 1_000_000}

# labels (one per measured side)
BACKUP_DB, PG_DUMP, PG_DUMP_FC, PG_DUMP_ZSTD = (
    "backup_db",
    "pg_dump (plain)",
    "pg_dump -Fc",
    "pg_dump -Fc -Z0 | zstd -1",
)
RESTORE_TARGET, VERIFY_TEST = "restore_db --target-database-url", "verify_backup --restore-test"
PG_RESTORE = "createdb + pg_restore --single-transaction"
RESTORE_IN_PLACE = "restore_db (in place)"
PG_RESTORE_OVER = "pg_restore --clean --if-exists --single-transaction"
VALIDATE, VALIDATE_IN_PROCESS, VALIDATE_PSQL = "validate_db", "validate_db (in-process)", "psql (same SQL)"
SAFE_MIGRATE, ONLINE, DUMP_MIGRATE = "safe_migrate", "safe_migrate --online", "pg_dump (plain) + migrate"
SEED_BASELINE, SEED_HEAD = "seed_demo_data (baseline)", "seed_demo_data (head)"

APPLIED = ("applied", "online_applied")  # what safe_migrate's --json says after a successful upgrade
GROUPS = ("seed", "backup", "restore", "inplace", "validate", "upgrade")


def parse_scale(text: str) -> int:
    match = re.fullmatch(r"(\d+)([kKmM]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of rows, like 100k, 1m or 4m")
    return int(match[1]) * SCALES.get(match[2].lower(), 1)


def scale_name(rows: int) -> str:
    for suffix, unit in (("m", 1_000_000), ("k", 1_000)):
        if rows % unit == 0:
            return f"{rows // unit}{suffix}"
    return str(rows)


class Samples:
    """Every run of every side, with the load average when it ended."""

    def __init__(self) -> None:
        self.runs: dict[str, list[dict]] = {}

    def add(self, label: str, sample: dict, round_no: int) -> dict:
        sample = {key: value for key, value in sample.items() if key not in ("stdout", "stderr")}
        sample["load1"] = round(os.getloadavg()[0], 2)
        sample["round"] = round_no
        self.runs.setdefault(label, []).append(sample)
        extra = f"  {sample['bytes'] / 1e6:8.1f} MB" if "bytes" in sample else ""
        failed = "  FAILED (not in the figures)" if sample.get("failed") else ""
        print(f"    {label:52s} {sample['wall_s']:8.2f} s{extra}  load {sample['load1']}{failed}", flush=True)
        return sample

    def good(self, label: str) -> list[dict]:
        """The runs that did what they should (a failed upgrade's time is not an upgrade's time)."""
        return [run for run in self.runs.get(label, []) if not run.get("failed")]

    def values(self, label: str, key: str = "wall_s") -> list[float]:
        return [run[key] for run in self.good(label) if run.get(key) is not None]

    def by_round(self, label: str, key: str = "wall_s") -> dict[int, float]:
        return {run["round"]: run[key] for run in self.good(label) if run.get(key) is not None}

    def median(self, label: str, key: str = "wall_s") -> float | None:
        values = self.values(label, key)
        return statistics.median(values) if values else None

    def summary(self, label: str) -> dict:
        walls = self.values(label)
        med = statistics.median(walls)
        cpu = [run.get("cpu_user_s", 0) + run.get("cpu_sys_s", 0) for run in self.good(label)]
        out = {
            "runs": len(walls),
            "failed": len(self.runs[label]) - len(walls),
            "median_s": round(med, 3),
            "min_s": round(min(walls), 3),
            "max_s": round(max(walls), 3),
            "spread_pct": round(100 * (max(walls) - min(walls)) / med, 1) if med else 0.0,
            "client_cpu_s": round(statistics.median(cpu), 3),
            "client_maxrss_mb": max(run.get("maxrss_mb", 0) for run in self.runs[label]),
            "load1": [run["load1"] for run in self.runs[label]],
        }
        if self.values(label, "bytes"):
            out["bytes"] = int(statistics.median(self.values(label, "bytes")))
        return out


def alternate(samples: Samples, rounds: int, sides: list[tuple[str, object]], prepare=None) -> None:
    """Each round runs every side once; the order rotates by one each round."""
    for round_no in range(rounds):
        shift = round_no % len(sides)
        for label, measure in sides[shift:] + sides[:shift]:
            if prepare:
                prepare(label, round_no)
            samples.add(label, measure(round_no), round_no)
        print(f"  round {round_no + 1}/{rounds} done", flush=True)


def vacuum_analyze(name: str) -> None:
    run_measured(["psql", "-X", "-q", "-d", url_of(name), "-c", "VACUUM ANALYZE"])


# --- the groups -------------------------------------------------------------------------------
class Harness:
    def __init__(self, args) -> None:
        self.args = args
        self.rows = args.rows
        self.samples = Samples()
        self.work = Path(tempfile.mkdtemp(prefix="bench-run-", dir=args.workdir))
        self.backups = self.work / "backups"
        self.env = _common.scratch_env(self.work)
        self.baseline = f"{PREFIX}baseline"
        self.head = f"{PREFIX}head"
        self.src = f"{PREFIX}src"
        self.custom_dump = self.work / "custom.dump"
        self.notes: list[str] = []
        self.upgrades: dict[str, list[dict]] = {}

    def measure(self, argv, check: bool = True) -> dict:
        return run_measured(argv, env=self.env, check=check)

    def seed(self) -> None:
        options = ["--users", str(self.rows), "--subscriptions", str(self.rows), "--seed", "1"]
        templates = {SEED_BASELINE: self.baseline, SEED_HEAD: self.head}
        states = {SEED_BASELINE: "baseline", SEED_HEAD: "head"}

        def name(label: str, round_no: int) -> str:
            return templates[label] if round_no == 0 else f"{templates[label]}_seed{round_no}"

        def prepare(label: str, round_no: int) -> None:
            drop_database(name(label, round_no))
            admin(f'CREATE DATABASE "{name(label, round_no)}"')
            bench_seed.prepare(url_of(name(label, round_no)), states[label])

        def side(label: str):
            def measure(round_no: int) -> dict:
                result = bench_seed.seed(url_of(name(label, round_no)), options)
                if round_no:
                    drop_database(name(label, round_no))
                return result

            return measure

        alternate(self.samples, self.args.seed_rounds, [(label, side(label)) for label in templates], prepare)
        for template in templates.values():
            vacuum_analyze(template)

    def backup(self) -> None:
        copy_database(self.src, self.head)
        src = url_of(self.src)
        files = {PG_DUMP: self.work / "plain.sql", PG_DUMP_FC: self.custom_dump, PG_DUMP_ZSTD: self.work / "z0.zst"}
        argv = {
            PG_DUMP: lambda: bench_backup.pg_dump_plain(src, files[PG_DUMP]),
            PG_DUMP_FC: lambda: bench_backup.pg_dump_custom(src, files[PG_DUMP_FC]),
            PG_DUMP_ZSTD: lambda: bench_backup.pg_dump_zstd(src, files[PG_DUMP_ZSTD]),
        }

        def ours(round_no: int) -> dict:
            sample = self.measure(bench_backup.backup_db(src, f"bench-{round_no}"))
            sample["bytes"] = bench_backup.manifest_of(self.backups, f"bench-{round_no}")["size_bytes"]
            return sample

        def raw(label: str):
            def measure(_: int) -> dict:
                sample = self.measure(argv[label]())
                return sample | {"bytes": files[label].stat().st_size}

            return measure

        def prepare(label: str, _: int) -> None:
            if label in files:
                files[label].unlink(missing_ok=True)

        sides = [(BACKUP_DB, ours)] + [(label, raw(label)) for label in (PG_DUMP, PG_DUMP_FC, PG_DUMP_ZSTD)]
        alternate(self.samples, self.args.rounds, sides, prepare)
        files[PG_DUMP].unlink(missing_ok=True)
        files[PG_DUMP_ZSTD].unlink(missing_ok=True)

    def restore(self) -> None:
        src = url_of(self.src)
        ours_db, raw_db = f"{PREFIX}restore_ours", f"{PREFIX}restore_raw"
        sides = [
            (RESTORE_TARGET, lambda _: self.measure(bench_backup.restore_db(src, "bench-0", url_of(ours_db)))),
            (VERIFY_TEST, lambda _: self.measure(bench_backup.verify_restore_test(src, "bench-0"))),
            (
                PG_RESTORE,
                lambda _: self.measure(bench_backup.pg_restore_fresh(url_of(raw_db), raw_db, self.custom_dump)),
            ),
        ]

        def prepare(label: str, _: int) -> None:
            drop_database(ours_db)
            drop_database(raw_db)

        alternate(self.samples, self.args.rounds, sides, prepare)
        prepare("", 0)

    def inplace(self) -> None:
        target = f"{PREFIX}inplace"
        sides = [
            (RESTORE_IN_PLACE, lambda _: self.measure(bench_backup.restore_db(url_of(target), "bench-0"))),
            (PG_RESTORE_OVER, lambda _: self.measure(bench_backup.pg_restore_over(url_of(target), self.custom_dump))),
        ]
        alternate(self.samples, self.args.rounds, sides, lambda label, _: copy_database(target, self.head))
        drop_database(target)
        for safety in self.backups.glob("*pre-restore*"):
            safety.unlink()

    def validate(self) -> None:
        src = url_of(self.src)
        worker = bench_validate.ValidationWorker(src, self.env)
        try:
            worker.run()  # warm: the first run of a process pays for imports and the model graph
            script = self.work / "checks.sql"
            statements = worker.capture(script)
            self.notes.append(f"validate: the checks send {statements} statements (replayed by psql as one script)")

            def command(_: int) -> dict:
                sample = self.measure(manage_argv(src, "validate_db", "-v0"), check=False)
                if sample["returncode"] != 0:
                    self.notes.append(f"validate_db exited {sample['returncode']}: {sample['stdout'][-300:]}")
                return sample

            def in_process(_: int) -> dict:
                sample = worker.run()
                if not sample["ok"]:
                    self.notes.append(f"validate_db (in-process) found problems: {sample['failed']}")
                return sample

            sides = [
                (VALIDATE, command),
                (VALIDATE_IN_PROCESS, in_process),
                (VALIDATE_PSQL, lambda _: self.measure(bench_validate.psql_script(src, script))),
            ]
            alternate(self.samples, self.args.rounds, sides)
        finally:
            worker.close()

    def upgrade(self) -> None:
        target = f"{PREFIX}upgrade"
        budget = max(120, self.rows // 5000)
        kinds = {SAFE_MIGRATE: "transaction", ONLINE: "online", DUMP_MIGRATE: "migrate"}

        def side(label: str):
            def measure(round_no: int) -> dict:
                result = bench_online.upgrade(
                    kinds[label], url_of(target), self.env, budget, self.args.pgbench_rate, dump="plain"
                )
                result["round"] = round_no
                self.upgrades.setdefault(label, []).append(result)
                if result["status"] not in APPLIED or result["app_errors"]:
                    self.notes.append(
                        f"{label} round {round_no + 1}: status {result['status']}, {result['app_errors']} application "
                        f"errors {result['app_error_examples']}, error {str(result.get('error'))[:300]}"
                    )
                print(
                    f"      app longest wait {result['app_longest_wait_s']} s, errors {result['app_errors']}, "
                    f"lock waits seen by the server {result['app_lock_waits_seen_by_server']}, "
                    f"writes kept {result['app_writes_kept']}",
                    flush=True,
                )
                return {
                    **result["client"],
                    "wall_s": result["total_s"],
                    "app_longest_wait_s": result["app_longest_wait_s"],
                    "failed": result["status"] not in APPLIED,
                }

            return measure

        alternate(
            self.samples,
            self.args.rounds,
            [(label, side(label)) for label in kinds],
            lambda label, _: copy_database(target, self.baseline),
        )
        drop_database(target)

    def cleanup(self) -> None:
        for name in (self.src, f"{PREFIX}restore_ours", f"{PREFIX}restore_raw", f"{PREFIX}inplace", f"{PREFIX}upgrade"):
            drop_database(name)
        if not self.args.keep:
            drop_database(self.baseline)
            drop_database(self.head)
        shutil.rmtree(self.work, ignore_errors=True)


# --- figures ----------------------------------------------------------------------------------
def comparisons(samples: Samples, upgrades: dict[str, list[dict]]) -> list[dict]:
    rows: list[dict] = []

    def ratio(operation: str, ours: str, raw: list[str], target: float | None, key: str = "wall_s", note: str = ""):
        ours_median = samples.median(ours, key)
        raw_medians = [samples.median(label, key) for label in raw]
        if ours_median is None or None in raw_medians:
            return
        raw_total = sum(raw_medians)
        parts = [samples.by_round(label, key) for label in raw]
        per_round = [
            value / sum(part[round_no] for part in parts)
            for round_no, value in samples.by_round(ours, key).items()
            if all(round_no in part for part in parts)
        ]
        value = ours_median / raw_total
        rows.append(
            {
                "operation": operation,
                "ours": ours,
                "raw": " + ".join(raw),
                "ours_value": ours_median,
                "raw_value": raw_total,
                "unit": "bytes" if key == "bytes" else "s",
                "ratio": round(value, 3),
                "per_round": [round(min(per_round), 3), round(max(per_round), 3)] if per_round else None,
                "target": f"<= {target}x" if target is not None else None,
                "met": None if target is None else value <= target,
                "note": note,
            }
        )

    ratio("backup time", BACKUP_DB, [PG_DUMP], 1.10)
    ratio("backup size", BACKUP_DB, [PG_DUMP], 0.35, key="bytes")
    ratio("backup time vs pg_dump -Fc", BACKUP_DB, [PG_DUMP_FC], None)
    ratio("backup time vs the raw pipeline it runs", BACKUP_DB, [PG_DUMP_ZSTD], None)
    ratio("restore into a new database", RESTORE_TARGET, [PG_RESTORE], 1.25, note="ours validates afterwards")
    ratio("restore test", VERIFY_TEST, [PG_RESTORE], 1.25, note="ours drops the copy and compares row counts")
    ratio(
        "in-place restore vs its parts",
        RESTORE_IN_PLACE,
        [BACKUP_DB, PG_RESTORE_OVER, VALIDATE_IN_PROCESS],
        1.5,
        note="parts measured separately: backup_db, pg_restore over the database, validation in-process "
        "(one Django start-up in the parts, as in restore_db)",
    )
    ratio("in-place restore vs pg_restore --clean alone", RESTORE_IN_PLACE, [PG_RESTORE_OVER], None)
    ratio("validate_db", VALIDATE, [VALIDATE_PSQL], 1.25, note="the command, Django start-up included")
    ratio("validate_db in-process", VALIDATE_IN_PROCESS, [VALIDATE_PSQL], 1.25, note="Django set up once")
    ratio("safe_migrate (one transaction)", SAFE_MIGRATE, [DUMP_MIGRATE], 1.3)
    ratio("safe_migrate --online total", ONLINE, [SAFE_MIGRATE], 1.5)
    for label, target in ((ONLINE, True), (SAFE_MIGRATE, False), (DUMP_MIGRATE, False)):
        runs = upgrades.get(label)
        if not runs:
            continue
        wait = max(run["app_longest_wait_s"] for run in runs)
        errors = sum(run["app_errors"] for run in runs)
        for operation, value, unit, limit in (
            ("application's longest wait", wait, "s", 1.0),
            ("application errors", errors, "", 0),
        ):
            rows.append(
                {
                    "operation": f"{label}: {operation}",
                    "ours": label,
                    "raw": None,
                    "ours_value": value,
                    "raw_value": None,
                    "unit": unit,
                    "ratio": None,
                    "per_round": None,
                    "target": (f"<= {limit} s" if unit else "0") if target else None,
                    "met": (value <= limit) if target else None,
                    "note": "worst of all rounds",
                }
            )
    return rows


def versions(server_url: str) -> dict:
    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            return "missing"
        return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else ""

    import django

    def server_says(query: str) -> str:
        return first_line(["psql", "-X", "-At", "-d", f"{server_url}/postgres", "-c", query])

    server = server_says("SHOW server_version")
    # the settings the upgrades' speed depends on (bench/explain_upgrade.py, migrations_ops/capacity.py)
    settings = server_says(
        "SELECT concat_ws(', ', 'shared_buffers ' || current_setting('shared_buffers'),"
        " 'max_wal_size ' || current_setting('max_wal_size'), 'work_mem ' || current_setting('work_mem'))"
    )
    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = first_line(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    return {
        "postgresql_server": server,
        "server_settings": settings,
        "pg_dump": first_line(["pg_dump", "--version"]),
        "pg_restore": first_line(["pg_restore", "--version"]),
        "psql": first_line(["psql", "--version"]),
        "zstd": first_line(["zstd", "--version"]).strip("* "),
        "python": platform.python_version(),
        "django": django.get_version(),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
    }


def cpu_times() -> list[int]:
    """The machine's CPU time counters (/proc/stat's first line: user nice system idle iowait irq softirq steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    return [int(field) for field in fields]


def steal_pct(before: list[int], after: list[int]) -> float:
    """Share of the CPU time between two readings that the hypervisor gave to other guests (steal)."""
    deltas = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(deltas)
    return round(100 * deltas[7] / total, 1) if total else 0.0


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    memory = re.search(r"MemTotal:\s*(\d+) kB", meminfo)
    return {
        "platform": platform.platform(),
        "cpu": model[1].strip() if model else platform.processor(),
        "cores": os.cpu_count(),
        "memory_gb": round(int(memory[1]) / 2**20, 1) if memory else None,
    }


def other_sessions() -> int:
    """Active sessions of others on the server (other test suites, other benchmarks)."""
    conn = _common.admin_connection()
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
        count = cursor.fetchone()[0]
    conn.close()
    return count


# --- rendering --------------------------------------------------------------------------------
def cell(text: str) -> str:
    """Table cell text: a `|` (even inside backticks) would end the cell."""
    return text.replace("|", "\\|")


def seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f} s"


def amount(value, unit: str) -> str:
    if value is None:
        return ""
    if unit == "bytes":
        return f"{value / 1e6:.1f} MB"
    if unit == "s":
        return f"{value:.2f} s"
    return str(value)


def render_scale(entry: dict) -> list[str]:
    load = entry["load"]
    lines = [
        f"## {entry['scale']}: {entry['rows']:,} users and {entry['rows']:,} subscriptions",
        "",
        f"Date {entry['date']}; {entry['rounds']} rounds per group (seeding {entry['seed_rounds']}), "
        f"order rotated every round; {entry['duration_s'] / 60:.1f} min in all.",
        f"Machine: {entry['machine']['cpu']}, {entry['machine']['cores']} cores, {entry['machine']['memory_gb']} GB, "
        f"{entry['machine']['platform']}.",
        "Versions: " + "; ".join(f"{key} {value}" for key, value in entry["versions"].items()) + ".",
        f"Load: 1-minute load average {load['start'][0]} at the start, {load['end'][0]} at the end, "
        f"{load['min_during']}-{load['max_during']} at the end of the runs; other sessions active on the server: "
        f"{load['other_sessions_start']} at the start, {load['other_sessions_end']} at the end"
        + (f"; CPU stolen by the hypervisor: {load['cpu_steal_pct']}%." if "cpu_steal_pct" in load else "."),
    ]
    if entry.get("caveat"):
        lines += ["", f"**{entry['caveat']}**"]
    lines += [
        "",
        "| operation | ours | raw tool | ratio (per-round range) | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in entry["comparisons"]:
        ours = f"`{row['ours']}` {amount(row['ours_value'], row['unit'])}"
        raw = f"`{row['raw']}` {amount(row['raw_value'], row['unit'])}" if row["raw"] else ""
        spread = f" ({row['per_round'][0]:.2f}-{row['per_round'][1]:.2f})" if row["per_round"] else ""
        ratio = f"{row['ratio']:.2f}x{spread}" if row["ratio"] is not None else ""
        met = {None: "", True: "yes", False: "**no: missed**"}[row["met"]]
        note = f" ({row['note']})" if row["note"] else ""
        cells = [row["operation"] + note, ours, raw, ratio, row["target"] or "", met]
        lines.append("| " + " | ".join(cell(text) for text in cells) + " |")
    lines += misses_explained(entry)
    lines += [
        "",
        "Every measurement (wall time; client CPU = user + system of the process and its children, median; "
        "peak RSS of the client; the server's work is not in them):",
        "",
        "| measurement | runs (failed, left out) | median | min | max | spread | client CPU | peak RSS | size |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, stats in entry["measurements"].items():
        size = f"{stats['bytes'] / 1e6:.1f} MB" if "bytes" in stats else ""
        failed = f" ({stats['failed']})" if stats.get("failed") else ""
        lines.append(
            f"| `{cell(label)}` | {stats['runs']}{failed} | {seconds(stats['median_s'])} | {seconds(stats['min_s'])} | "
            f"{seconds(stats['max_s'])} | {stats['spread_pct']:.0f}% | {seconds(stats['client_cpu_s'])} | "
            f"{stats['client_maxrss_mb']:.0f} MB | {size} |"
        )
    if entry.get("upgrades"):
        lines += [
            "",
            "Upgrades with the application stand-in running (worst of the rounds; lock waits as "
            "pg_stat_activity showed them; writes kept = the application's updates and inserts found afterwards):",
            "",
            "| upgrade | median total | longest app wait | app errors | longest lock wait seen by the server | "
            "writes kept (last round) | longest lock held (online) | its own durations (last round) | failed runs |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for label, runs in entry["upgrades"].items():
            totals = [run["total_s"] for run in runs if run["status"] in APPLIED] or [None]
            failed = ", ".join(
                f"round {run['round'] + 1}: {run['status']}" for run in runs if run["status"] not in APPLIED
            )
            lock = max(run["app_lock_waits_seen_by_server"]["longest_lock_wait_s"] for run in runs)
            held = [run["longest_lock_s"] for run in runs if run.get("longest_lock_s") is not None]
            wait, errors = max(run["app_longest_wait_s"] for run in runs), sum(run["app_errors"] for run in runs)
            lines.append(
                f"| `{label}` | {seconds(statistics.median(totals))} | {seconds(wait)} | {errors} | "
                f"{seconds(lock)} | {runs[-1]['app_writes_kept']} | {seconds(max(held)) if held else ''} | "
                + ", ".join(f"{key[:-2]} {value:.2f} s" for key, value in (runs[-1].get("durations") or {}).items())
                + f" | {failed} |"
            )
    if entry.get("seed"):
        lines += ["", "| seeding | rows written | median | rows per second (median) |", "|---|---|---|---|"]
        for label, runs in entry["seed"].items():
            rate = statistics.median(run["rows_per_s"] for run in runs)
            wall = statistics.median(run["wall_s"] for run in runs)
            lines.append(f"| `{label}` | {runs[0]['rows']:,} | {seconds(wall)} | {rate:,.0f} |")
    if entry.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {note}" for note in entry["notes"]]
    return lines + [""]


def headline(row: dict) -> str:
    """A comparison's figure: its ratio, or its value where it has no raw tool (waits, errors)."""
    return f"{row['ratio']:.2f}x" if row["ratio"] is not None else amount(row["ours_value"], row["unit"])


def misses_explained(entry: dict) -> list[str]:
    """For every missed target, what this run's own measurements say about where the time went.

    Computed from the entry, so a rerun on another machine says what held there: a miss is either
    broken down into the raw tool's share and ours, or said to be unexplained by the run.
    """
    stats, cores = entry["measurements"], entry["machine"]["cores"]

    def median(label: str) -> float | None:
        return (stats.get(label) or {}).get("median_s")

    def cpu(label: str) -> float:
        return stats[label]["client_cpu_s"]

    lines = []
    for row in entry["comparisons"]:
        if row["met"] is not False:
            continue
        why = None
        if row["operation"] == "backup time" and median(PG_DUMP_ZSTD) and median(PG_DUMP):
            pipeline, plain = median(PG_DUMP_ZSTD), median(PG_DUMP)
            ours_share = row["ours_value"] / pipeline
            why = (
                f"`{BACKUP_DB}` is {ours_share:.2f}x the raw pipeline it runs (`{PG_DUMP_ZSTD}`, {pipeline:.2f} s), "
                f"and that pipeline alone is {pipeline / plain:.2f}x plain `pg_dump`: compressing costs "
                f"{cpu(PG_DUMP_ZSTD) - cpu(PG_DUMP):.1f} s more client CPU ({cpu(PG_DUMP_ZSTD):.1f} s against "
                f"{cpu(PG_DUMP):.1f} s) on {cores} cores that the server's COPY backend and `pg_dump` already use. "
            )
            target = float(row["target"].strip("<= x"))
            if pipeline / plain > target:
                why += (
                    "The raw tools alone miss the target on this machine, so no change to backup_db's own "
                    "work can meet it here; the compression is what meets the size target, and a faster zstd "
                    "level trades more size than that target allows (bench/README.md)."
                )
            else:
                why += (
                    f"The raw pipeline alone is within the target here; our own work over it ({ours_share:.2f}x: "
                    "start-up, version checks, snapshot, row counts, hashing, fsync) is what takes the whole past it."
                )
        elif row["operation"] == "restore into a new database" and median(VERIFY_TEST):
            restore_test = median(VERIFY_TEST)
            why = (
                f"the restore test (the same restore through psql with row counts before COMMIT, no "
                f"validation) took {restore_test:.2f} s, {restore_test / row['raw_value']:.2f}x `{PG_RESTORE}`; "
                "the ANALYZE, validation and bookkeeping after it took the other "
                f"{row['ours_value'] - restore_test:.2f} s"
                + (
                    f" (`{VALIDATE_IN_PROCESS}` on this data, every check, {median(VALIDATE_IN_PROCESS):.2f} s)."
                    if median(VALIDATE_IN_PROCESS)
                    else "."
                )
            )
        lines.append(
            f"- **{row['operation']}** ({headline(row)} against {row['target']}): "
            + (why or "this run's measurements do not break it down; see bench/README.md.")
        )
    return ["", "Where a target is missed, from this run's measurements:", "", *lines] if lines else []


def render_scaling(small: dict, big: dict) -> list[str]:
    """Two entries side by side: the growth of every time, and every ratio at both scales.

    Growth is shown, not judged: two runs are two machines as far as speed goes, even when they
    report the same CPU (shared VMs differ by their neighbours and the CPU the hypervisor steals).
    bench/growth.py judges it, with both scales interleaved in one run. The ratios compare: each
    was taken within one run, against the raw tool on the same machine.
    """
    factor = big["rows"] / small["rows"]
    same_cpu = small["machine"]["cpu"] == big["machine"]["cpu"]
    machines = (
        f"both on {small['machine']['cpu']}, as /proc/cpuinfo names it (the same name is not the same speed)"
        if same_cpu
        else f"on {small['machine']['cpu']} and {big['machine']['cpu']}"
    )
    lines = [
        f"## Scaling {small['scale']} -> {big['scale']} (data x{factor:g})",
        "",
        f"The two scales ran {small['date']} and {big['date']}, {machines}. The growth column mixes the "
        "machines' speeds with the data's growth, so it is shown here, not judged: whether time grows no "
        "faster than the data is measured by `bench/growth.py`, both scales interleaved in one run "
        "(bench/growth.md). The ratios below compare: each was taken in one run against the raw tool.",
        "",
        "| measurement | " + small["scale"] + " | " + big["scale"] + " | growth across the two runs |",
        "|---|---|---|---|",
    ]
    for label, stats in big["measurements"].items():
        before = small["measurements"].get(label)
        if not before or not before["median_s"]:
            continue
        growth = stats["median_s"] / before["median_s"]
        lines.append(
            f"| `{cell(label)}` | {seconds(before['median_s'])} | {seconds(stats['median_s'])} | x{growth:.2f} |"
        )
    lines += [
        "",
        "| operation | ratio " + small["scale"] + " | ratio " + big["scale"] + " | target | met at both |",
        "|---|---|---|---|---|",
    ]
    before = {row["operation"]: row for row in small["comparisons"]}
    for row in big["comparisons"]:
        old = before.get(row["operation"])
        if not old or row["target"] is None:
            continue
        met = "yes" if (row["met"] and old["met"]) else "**no: missed**"
        lines.append(f"| {row['operation']} | {headline(old)} | {headline(row)} | {row['target']} | {met} |")
    return lines + [""]


def refigure(entry: dict) -> None:
    """Recompute an entry's measurements and comparisons from its stored samples (--rerender)."""
    samples = Samples()
    samples.runs = entry["samples"]
    for label, runs in entry.get("upgrades", {}).items():
        for index, (sample, run) in enumerate(zip(samples.runs.get(label, []), runs, strict=False)):
            sample.setdefault("round", index)
            sample["failed"] = run["status"] not in APPLIED
    for runs in samples.runs.values():
        for index, sample in enumerate(runs):
            sample.setdefault("round", index)
    entry["measurements"] = {label: samples.summary(label) for label in samples.runs}
    entry["comparisons"] = comparisons(samples, entry.get("upgrades", {}))


def render(document: dict) -> str:
    entries = sorted(document["scales"].values(), key=lambda entry: entry["rows"])
    lines = [
        "# Benchmark results",
        "",
        "Written by `bench/run.py` (see bench/README.md); do not edit by hand. Ratios are of medians, "
        "with the range of the per-round ratios (each round runs every side once, in rotated order).",
        "",
    ]
    for entry in entries:
        lines += render_scale(entry)
    for small, big in zip(entries, entries[1:], strict=False):
        lines += render_scaling(small, big)
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=parse_scale, default=None, help="rows: 100k, 1m, 4m or a number (default 1m)")
    parser.add_argument("--quick", action="store_true", help="a 100k smoke run into <bench>/results-quick.*")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per group (at least 3 for figures to publish)")
    parser.add_argument("--seed-rounds", type=int, default=None, help="seeding rounds (default: --rounds)")
    parser.add_argument("--groups", default=",".join(GROUPS), help=f"a subset of {','.join(GROUPS)} (seed always runs)")
    parser.add_argument("--server", default=_common.BASE_URL, help="PostgreSQL server URL, without a database name")
    parser.add_argument("--output", help="file prefix (default bench/results, or bench/results-quick with --quick)")
    parser.add_argument("--pgbench-rate", type=int, default=0, help="also run pgbench at this rate during upgrades")
    parser.add_argument("--workdir", help="where dumps and backups go (default: the system's temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the seeded baseline and head templates")
    parser.add_argument("--rerender", action="store_true", help="recompute the files from their stored samples only")
    args = parser.parse_args()
    args.rows = args.scale or (100_000 if args.quick else 1_000_000)
    args.seed_rounds = args.seed_rounds or args.rounds
    groups = [group for group in GROUPS if group in args.groups.split(",") or group == "seed"]
    output = Path(args.output or (Path(__file__).parent / ("results-quick" if args.quick else "results")))
    _common.use_server(args.server.rstrip("/"))
    if args.rerender:
        json_path = output.with_suffix(".json")
        document = json.loads(json_path.read_text())
        for entry in document["scales"].values():
            refigure(entry)
        json_path.write_text(json.dumps(document, indent=1, default=str) + "\n")
        output.with_suffix(".md").write_text(render(document))
        print(f"rewrote {output.with_suffix('.md')} and {json_path} from their samples")
        return

    started = datetime.datetime.now(datetime.UTC)
    load_start = [round(value, 2) for value in os.getloadavg()]
    sessions_start = other_sessions()
    cpu_start = cpu_times()
    harness = Harness(args)
    print(f"bench/run.py: {args.rows:,} rows, {args.rounds} rounds, groups {','.join(groups)}, load {load_start}")
    try:
        for group in groups:
            print(f"[{group}]", flush=True)
            getattr(harness, group)()
    finally:
        harness.cleanup()
    finished = datetime.datetime.now(datetime.UTC)
    samples = harness.samples
    loads = [run["load1"] for runs in samples.runs.values() for run in runs]
    entry = {
        "scale": scale_name(args.rows),
        "rows": args.rows,
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round((finished - started).total_seconds(), 1),
        "rounds": args.rounds,
        "seed_rounds": args.seed_rounds,
        "groups": groups,
        "machine": machine(),
        "versions": versions(args.server.rstrip("/")),
        "load": {
            "start": load_start,
            "end": [round(value, 2) for value in os.getloadavg()],
            "min_during": min(loads),
            "max_during": max(loads),
            "other_sessions_start": sessions_start,
            "other_sessions_end": other_sessions(),
            "cpu_steal_pct": steal_pct(cpu_start, cpu_times()),
        },
        "caveat": (
            "Smoke run: taken while other test suites shared the machine (see the load); the figures show that "
            "the harness works, not what the operations cost."
            if args.quick
            else ""
        ),
        "comparisons": comparisons(samples, harness.upgrades),
        "measurements": {label: samples.summary(label) for label in samples.runs},
        "samples": samples.runs,
        "upgrades": harness.upgrades,
        "seed": {label: samples.runs[label] for label in (SEED_BASELINE, SEED_HEAD) if label in samples.runs},
        "notes": harness.notes,
    }
    json_path, md_path = output.with_suffix(".json"), output.with_suffix(".md")
    document = json.loads(json_path.read_text()) if json_path.exists() else {"scales": {}}
    document["scales"][entry["scale"]] = entry
    json_path.write_text(json.dumps(document, indent=1, default=str) + "\n")
    md_path.write_text(render(document))
    print(f"wrote {md_path} and {json_path}")
    print("\n".join(render_scale(entry)))


if __name__ == "__main__":
    sys.exit(main())
