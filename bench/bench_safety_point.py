"""Safety points at scale: a dump against a pgBackRest point, when the untouched data dwarfs the migration.

    .venv/bin/python bench/bench_safety_point.py                   # 1M users + 1M subscriptions, ledger 5M then 15M
    .venv/bin/python bench/bench_safety_point.py --quick           # 100k + 100k, ledger 200k then 1M (a smoke run)
    .venv/bin/python bench/bench_safety_point.py --ledger 5000000,15000000 --output bench/results-safety-point
    .venv/bin/python bench/bench_safety_point.py --render          # rewrite the .md from the .json only

One throw-away PostgreSQL 15 cluster archiving into a real pgBackRest repository
(tests/pgbackrest_cluster.py's ArchivingCluster, under /tmp; stopped and removed at the end). A
database ``app`` at the baseline (accounts 0001 + billing 0001), seeded with ``seed_demo_data --seed
1`` (N users, N subscriptions) and a table no migration touches, ``ledger_archive`` (id primary key,
md5 text, timestamp) from generate_series, grown from the first --ledger size to the next between
scales (the same cluster, the same users and subscriptions: only the untouched data grows).

At each scale, with the archiver caught up and a CHECKPOINT before every timed step (outside the
timings), in this order so that each pgBackRest restore replays about the same WAL from its backup:

1. raw ``pgbackrest backup``: ``--type=full`` at the first scale and after the growth, then
   ``--type=incr`` (little changed: what a recent backup costs); the points below sit on that incr.
2. pgBackRest side: ``backup_db`` with MIGRATION_SAFETY_POINT=pgbackrest (restore point + archive
   wait + continuity check; whether it took a backup is recorded), ``safe_migrate --json`` to the head
   (its phases), a small write after the migration, ``restore_db <its pre-migrate point> --noinput``
   (stop, delta PITR, start, promoted, validation). Then another raw incr, ``safe_migrate --online``,
   a small write, and raw ``pgbackrest restore --delta --type=name --target=<that point>
   --set=<its backup> --target-action=promote`` (server stopped before, started after, until
   pg_is_in_recovery() is false).
3. dump side: plain ``pg_dump -Fc`` of the database, ``backup_db`` with MIGRATION_SAFETY_POINT=dump,
   ``safe_migrate --json``, a small write, ``restore_db <its pre-migrate dump> --noinput`` (logical, in
   place, with its pre-restore safety backup, as an operator runs it); ``safe_migrate --online``, a
   small write, then the raw logical restore of the ``pg_dump -Fc`` file: ``pg_restore --clean
   --if-exists --single-transaction`` (which cannot drop a table the migration made another table's
   foreign key point to: recorded as it fails), and then ``dropdb`` + ``createdb`` + ``pg_restore
   --single-transaction``, the raw restore that does put the database back.

After every restore the content is checked against the baseline taken before the migrations: applied
migrations, the tables of the public schema, the row counts of users, subscriptions and
ledger_archive, the small write gone, the server out of recovery.

Results: bench/results-safety-point.json (one entry per run label, replaced on a rerun) and
bench/results-safety-point.md rendered from it, with each goal of the issue, measured and met or not.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, manage_argv, run_measured
from run import cpu_times, machine, steal_pct, versions

sys.path.insert(0, str(ROOT))
from tests.pgbackrest_cluster import AS_POSTGRES, PG_BIN, ArchivingCluster  # noqa: E402

DATABASE = "app"
EXTRA_CONF = (
    "shared_buffers = 256MB\nmax_wal_size = 4GB\nmin_wal_size = 256MB\ncheckpoint_timeout = 30min\n"
    "maintenance_work_mem = 256MB\nmax_connections = 40\n"
)
GOAL_POINT_S = 5.0
GOAL_FLAT = 1.25  # the point at the largest scale against the smallest: "flat" (or within FLAT_SLACK_S)
FLAT_SLACK_S = 0.5
GOAL_RESTORE_SPEEDUP = 5.0
GOAL_ONLINE_RATIO = 1.1
MARKER_ID = -424242
APPLIED = ("applied", "online_applied")


class Bench:
    def __init__(self, cluster: ArchivingCluster, args, work: Path, entry: dict, save) -> None:
        self.cluster = cluster
        self.args = args
        self.work = work
        self.entry = entry
        self.save = save
        self.url = cluster.url.rsplit("/", 1)[0] + f"/{DATABASE}"
        server = cluster.server
        pg_ctl = [*AS_POSTGRES, str(PG_BIN / "pg_ctl"), "-D", str(server.datadir)]
        self.common_env = {
            "BACKUP_DIR": str(work / "backups"),
            "MIGRATION_LOG": str(work / "migration.log"),
            "BACKUP_KEEP": "1000",
            "PGBACKREST_STANZA": cluster.stanza,
            "PGBACKREST_CONFIG": str(cluster.config),
            "PGBACKREST_COMMAND": shlex.join([*AS_POSTGRES, "pgbackrest"]),
            "PGBACKREST_STOP_COMMAND": shlex.join([*pg_ctl, "-m", "fast", "-w", "stop"]),
            "PGBACKREST_START_COMMAND": shlex.join(
                [*pg_ctl, "-l", str(server.logfile), "-o", f"-p {server.port} -k {server.socket_dir}", "start"]
            ),
        }

    def env(self, kind: str) -> dict:
        return {**self.common_env, "MIGRATION_SAFETY_POINT": kind}

    # --- the database -------------------------------------------------------------------------
    def sql(self, statement: str) -> str:
        return self.cluster.psql(statement, database=DATABASE)

    def settle(self) -> float:
        """A CHECKPOINT and the archiver caught up (outside every timing): the seconds it took."""
        started = time.monotonic()
        self.sql("CHECKPOINT")
        self.cluster.switch_and_wait_archived(timeout=1800)
        return round(time.monotonic() - started, 2)

    def state(self) -> dict:
        heads = self.sql(
            "SELECT string_agg(app || ':' || name, ',' ORDER BY app, name) FROM django_migrations "
            "WHERE app IN ('accounts', 'billing')"
        )
        tables = self.sql(
            "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"
        )
        counts = self.sql(
            "SELECT (SELECT count(*) FROM users) || ',' || (SELECT count(*) FROM subscriptions) || ',' || "
            "(SELECT count(*) FROM ledger_archive)"
        ).split(",")
        return {
            "migrations": heads.split(","),
            "tables": tables.split(","),
            "rows": dict(zip(("users", "subscriptions", "ledger_archive"), map(int, counts), strict=True)),
            "marker": self.sql(f"SELECT count(*) FROM ledger_archive WHERE id = {MARKER_ID}") != "0",
            "in_recovery": self.cluster.psql("SELECT pg_is_in_recovery()") == "t",
        }

    def check(self, baseline: dict) -> dict:
        now = self.state()
        differences = [key for key in baseline if now[key] != baseline[key]]
        return {"ok": not differences, "differs": differences, **({"now": now} if differences else {})}

    def small_write(self) -> None:
        """What the application writes after the migration: lost by the restore back to before it."""
        self.sql(f"INSERT INTO ledger_archive VALUES ({MARKER_ID}, 'written after the migration', now())")

    def sizes(self) -> dict:
        def du(path: Path) -> int:
            return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()[0])

        return {
            "database_bytes": int(self.sql("SELECT pg_database_size(current_database())")),
            "ledger_archive_bytes": int(self.sql("SELECT pg_total_relation_size('ledger_archive')")),
            "users_bytes": int(self.sql("SELECT pg_total_relation_size('users')")),
            "subscriptions_bytes": int(self.sql("SELECT pg_total_relation_size('subscriptions')")),
            "data_directory_bytes": du(self.cluster.datadir),
            "repository_bytes": du(self.cluster.repo),
        }

    # --- the measured steps ------------------------------------------------------------------
    def raw_backup(self, backup_type: str) -> dict:
        self.settle()
        argv = [*AS_POSTGRES, "pgbackrest", f"--config={self.cluster.config}", f"--stanza={self.cluster.stanza}"]
        run = run_measured([*argv, f"--type={backup_type}", "backup"])
        newest = self.cluster.info()[0]["backup"][-1]
        return {
            **slim(run),
            "label": newest["label"],
            "type": newest["type"],
            "size_bytes": newest["info"]["size"],
            "delta_bytes": newest["info"]["delta"],
            "repository_delta_bytes": newest["info"]["repository"]["delta"],
        }

    def backup_db(self, kind: str, name: str) -> dict:
        self.settle()
        run = run_measured(manage_argv(self.url, "backup_db", "--name", name, "--json"), env=self.env(kind))
        manifest = json.loads(run["stdout"])
        result = {**slim(run), "name": name, "format": manifest["format"], "size_bytes": manifest["size_bytes"]}
        if kind == "pgbackrest":
            point = json.loads((self.work / "backups" / manifest["file"]).read_text())
            result |= {"backup_taken": point["backup_taken"], "backup_label": point["backup_label"]}
        return result

    def pg_dump(self, path: Path) -> dict:
        self.settle()
        run = run_measured(["pg_dump", "-Fc", "-f", str(path), "-d", self.url])
        return {**slim(run), "size_bytes": path.stat().st_size}

    def safe_migrate(self, kind: str, online: bool) -> dict:
        self.settle()
        argv = manage_argv(self.url, "safe_migrate", "--noinput", "--json", *(["--online"] if online else []))
        run = run_measured(argv, env=self.env(kind), check=False)
        summary = json.loads(run["stdout"]) if run["stdout"].strip() else {}
        result = {
            **slim(run),
            "kind": kind,
            "online": online,
            "status": summary.get("status"),
            "backup": summary.get("backup"),
            "durations": {key: round(value, 3) for key, value in (summary.get("durations") or {}).items()},
        }
        if result["status"] not in APPLIED:
            result["error"] = summary.get("error") or run["stderr"][-800:]
            raise StepFailed(result)
        durations = result["durations"]
        result["total_over_migrate"] = round(durations["total_s"] / durations["migrate_s"], 3)
        if kind == "pgbackrest":
            point = json.loads((self.work / "backups" / f"{result['backup']}.pitr.json").read_text())
            result |= {"backup_taken": point["backup_taken"], "backup_label": point["backup_label"]}
        self.small_write()
        return result

    def restore_db(self, kind: str, name: str, baseline: dict) -> dict:
        self.settle()
        run = run_measured(manage_argv(self.url, "restore_db", name, "--noinput", "--json"), env=self.env(kind))
        summary = json.loads(run["stdout"])
        return {
            **slim(run),
            "backup": name,
            "duration_s": round(summary["duration_s"], 3),
            "safety_backup": summary.get("safety_backup"),
            "validation_ok": summary["validation"].get("ok"),
            "content": self.check(baseline),
        }

    def raw_pgbackrest_restore(self, point: str, label: str, baseline: dict) -> dict:
        self.settle()
        server = self.cluster.server
        started = time.monotonic()
        server.stop("fast")
        stopped = time.monotonic()
        done = self.cluster.pgbackrest(
            "--delta",
            "--type=name",
            f"--target={point}",
            f"--set={label}",
            "--target-action=promote",
            "restore",
            check=True,
            timeout=3600,
        )
        restored = time.monotonic()
        server.start(timeout=600)
        ready = time.monotonic()
        server.wait_until_primary(timeout=3600)
        promoted = time.monotonic()
        return {
            "wall_s": round(promoted - started, 3),
            "stop_s": round(stopped - started, 3),
            "restore_s": round(restored - stopped, 3),
            "start_s": round(ready - restored, 3),
            "until_promoted_s": round(promoted - ready, 3),
            "returncode": done.returncode,
            "point": point,
            "set": label,
            "content": self.check(baseline),
        }

    def raw_pg_restore(self, dump: Path, baseline: dict) -> dict:
        """`pg_restore --clean --if-exists --single-transaction` over the migrated database; when it fails
        (nothing changed: one transaction), dropdb + createdb + `pg_restore --single-transaction`."""
        self.settle()
        clean = run_measured(
            ["pg_restore", "--clean", "--if-exists", "--single-transaction", "--no-owner", "-d", self.url, str(dump)],
            check=False,
        )
        result = {"clean": {**slim(clean), "error": first_error(clean["stderr"])}}
        if clean["returncode"] == 0:
            result["clean"]["content"] = self.check(baseline)
            if result["clean"]["content"]["ok"]:
                return result | {"wall_s": clean["wall_s"], "way": "pg_restore --clean"}
        self.settle()
        admin = self.cluster.url
        fresh = run_measured(
            [
                "bash",
                "-o",
                "pipefail",
                "-c",
                f"dropdb --force --maintenance-db='{admin}' {DATABASE} && "
                f"createdb --maintenance-db='{admin}' {DATABASE} && "
                f"pg_restore --single-transaction --no-owner -d '{self.url}' '{dump}'",
            ]
        )
        result["fresh"] = {**slim(fresh), "content": self.check(baseline)}
        return result | {"wall_s": fresh["wall_s"], "way": "dropdb + createdb + pg_restore --single-transaction"}

    # --- a scale ---------------------------------------------------------------------------------
    def scale(self, ledger_rows: int, first: bool) -> dict:
        scale: dict = {"ledger_rows": ledger_rows, "steps": {}, "settle_s": []}
        self.entry["scales"].append(scale)
        steps = scale["steps"]
        label = f"l{ledger_rows}"

        def step(name: str, value: dict) -> dict:
            steps[name] = value
            print(f"  [{ledger_rows:,}] {name}: {brief(value)}", flush=True)
            self.save()
            return value

        started = time.monotonic()
        if first:
            self.sql(
                "CREATE TABLE ledger_archive AS SELECT g AS id, md5(g::text) AS note, now() AS at "
                f"FROM generate_series(1, {ledger_rows}) g"
            )
            self.sql("ALTER TABLE ledger_archive ADD PRIMARY KEY (id)")
        else:
            self.sql(
                "INSERT INTO ledger_archive SELECT g, md5(g::text), now() "
                f"FROM generate_series((SELECT max(id) FROM ledger_archive) + 1, {ledger_rows}) g"
            )
        self.sql("VACUUM ANALYZE")
        scale["ledger_load_s"] = round(time.monotonic() - started, 1)
        baseline = self.state()
        scale["baseline"] = baseline
        scale["sizes"] = self.sizes()
        print(f"  [{ledger_rows:,}] baseline {baseline['rows']}, {scale['sizes']['database_bytes'] / 1e9:.2f} GB")

        # 1. raw pgBackRest backups
        step("pgbackrest backup --type=full", self.raw_backup("full"))
        step("pgbackrest backup --type=incr", self.raw_backup("incr"))
        # 2. the pgBackRest side
        step("backup_db (pgbackrest point)", self.backup_db("pgbackrest", f"{label}-point"))
        migrated = step("safe_migrate (pgbackrest)", self.safe_migrate("pgbackrest", online=False))
        step("restore_db (pgbackrest point, delta PITR)", self.restore_db("pgbackrest", migrated["backup"], baseline))
        step("pgbackrest backup --type=incr (2)", self.raw_backup("incr"))
        online = step("safe_migrate --online (pgbackrest)", self.safe_migrate("pgbackrest", online=True))
        step(
            "pgbackrest restore --delta --type=name (raw)",
            self.raw_pgbackrest_restore(online["backup"], online["backup_label"], baseline),
        )
        # 3. the dump side
        dump = self.work / f"{label}.dump"
        step("pg_dump -Fc", self.pg_dump(dump))
        step("backup_db (dump)", self.backup_db("dump", f"{label}-dump"))
        migrated = step("safe_migrate (dump)", self.safe_migrate("dump", online=False))
        step("restore_db (dump, logical in place)", self.restore_db("dump", migrated["backup"], baseline))
        step("safe_migrate --online (dump)", self.safe_migrate("dump", online=True))
        step("pg_restore (raw, logical)", self.raw_pg_restore(dump, baseline))
        dump.unlink(missing_ok=True)
        for leftover in (self.work / "backups").iterdir():
            if leftover.is_file() and not leftover.name.endswith(".json"):
                leftover.unlink()  # the dump side's dump files (disk); their manifests and the points stay
        scale["sizes_after"] = self.sizes()
        scale["duration_s"] = round(time.monotonic() - started, 1)
        return scale


class StepFailed(RuntimeError):
    def __init__(self, result: dict) -> None:
        super().__init__(json.dumps(result, indent=2)[:3000])
        self.result = result


def slim(run: dict) -> dict:
    return {key: run[key] for key in ("wall_s", "cpu_user_s", "cpu_sys_s", "maxrss_mb", "returncode")}


def first_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "error" in line.lower()]
    return (lines[0] if lines else stderr.strip()[:300])[:400]


def brief(value: dict) -> str:
    parts = [f"{value.get('wall_s')} s"]
    if value.get("durations"):
        d = value["durations"]
        parts.append(f"backup {d.get('backup_s')} s, migrate {d.get('migrate_s')} s, total {d.get('total_s')} s")
    if "content" in value:
        parts.append(f"content ok {value['content']['ok']}")
    if "way" in value:
        parts.append(value["way"])
    if "backup_taken" in value:
        parts.append(f"backup taken {value['backup_taken']}")
    return ", ".join(parts)


def content_of(step: dict) -> dict | None:
    """The content check of a restore step (the raw logical restore's is its fresh database's)."""
    return step.get("content") or step.get("fresh", {}).get("content")


# --- verdicts -----------------------------------------------------------------------------------------
def verdict(entry: dict) -> list[dict]:
    scales = entry["scales"]
    if not scales or not all("duration_s" in s for s in scales):
        return []
    small, big = scales[0], scales[-1]

    def s(scale: dict, name: str, key: str = "wall_s") -> float:
        return scale["steps"][name][key]

    def point_times(scale: dict) -> list[float]:
        return [
            s(scale, "backup_db (pgbackrest point)"),
            scale["steps"]["safe_migrate (pgbackrest)"]["durations"]["backup_s"],
            scale["steps"]["safe_migrate --online (pgbackrest)"]["durations"]["backup_s"],
        ]

    worst = max(max(point_times(scale)) for scale in scales)
    taken = [
        scale["steps"][name].get("backup_taken")
        for scale in scales
        for name in ("backup_db (pgbackrest point)", "safe_migrate (pgbackrest)", "safe_migrate --online (pgbackrest)")
    ]
    flat_small, flat_big = s(small, "backup_db (pgbackrest point)"), s(big, "backup_db (pgbackrest point)")
    growth = big["sizes"]["database_bytes"] / small["sizes"]["database_bytes"]
    dump_small, dump_big = s(small, "backup_db (dump)"), s(big, "backup_db (dump)")
    pitr = s(big, "restore_db (pgbackrest point, delta PITR)")
    logical = s(big, "restore_db (dump, logical in place)")
    raw_logical = big["steps"]["pg_restore (raw, logical)"]["wall_s"]
    online_p = big["steps"]["safe_migrate --online (pgbackrest)"]
    online_d = big["steps"]["safe_migrate --online (dump)"]
    contents = {
        f"{scale['ledger_rows']:,}: {name}": content_of(scale["steps"][name])["ok"]
        for scale in scales
        for name in scale["steps"]
        if content_of(scale["steps"][name])
    }
    flat = flat_big <= GOAL_FLAT * flat_small or flat_big - flat_small <= FLAT_SLACK_S
    return [
        {
            "goal": f"pgBackRest safety point <= {GOAL_POINT_S:g} s",
            "measured": f"worst {worst:.2f} s of backup_db and safe_migrate's backup_s at every scale "
            f"(backup taken for a point: {sum(bool(t) for t in taken)} of {len(taken)})",
            "met": worst <= GOAL_POINT_S,
        },
        {
            "goal": f"the point flat as the database grows (<= {GOAL_FLAT}x, or within {FLAT_SLACK_S} s)",
            "measured": f"backup_db {flat_small:.2f} s -> {flat_big:.2f} s ({flat_big / flat_small:.2f}x) while the "
            f"database grew {growth:.2f}x ({small['sizes']['database_bytes'] / 1e9:.2f} -> "
            f"{big['sizes']['database_bytes'] / 1e9:.2f} GB); the dump {dump_small:.1f} s -> {dump_big:.1f} s "
            f"({dump_big / dump_small:.2f}x)",
            "met": flat,
        },
        {
            "goal": f"restore of a small change after a migration >= {GOAL_RESTORE_SPEEDUP:g}x faster than the "
            "logical restore (largest scale)",
            "measured": f"restore_db of the point {pitr:.1f} s against restore_db of the dump {logical:.1f} s: "
            f"{logical / pitr:.1f}x; against raw pg_restore {raw_logical:.1f} s: {raw_logical / pitr:.1f}x",
            "met": logical / pitr >= GOAL_RESTORE_SPEEDUP,
        },
        {
            "goal": f"safe_migrate --online total <= {GOAL_ONLINE_RATIO}x the migration's own work (largest scale)",
            "measured": f"pgbackrest: total {online_p['durations']['total_s']:.1f} s / migrate "
            f"{online_p['durations']['migrate_s']:.1f} s = {online_p['total_over_migrate']:.3f}x; dump: total "
            f"{online_d['durations']['total_s']:.1f} s / migrate {online_d['durations']['migrate_s']:.1f} s = "
            f"{online_d['total_over_migrate']:.3f}x",
            "met": online_p["total_over_migrate"] <= GOAL_ONLINE_RATIO,
        },
        {
            "goal": "every restore back to the content before the migration",
            "measured": ", ".join(f"{key} {'ok' if ok else 'WRONG'}" for key, ok in contents.items()),
            "met": all(contents.values()),
        },
    ]


# --- rendering ------------------------------------------------------------------------------------------
def yes(flag: bool) -> str:
    return "yes" if flag else "**no: missed**"


def gb(value: int) -> str:
    return f"{value / 1e9:.2f} GB"


def render_scale(scale: dict) -> list[str]:
    steps, sizes = scale["steps"], scale["sizes"]
    lines = [
        f"### ledger_archive {scale['ledger_rows']:,} rows",
        "",
        f"Database {gb(sizes['database_bytes'])} (ledger_archive {gb(sizes['ledger_archive_bytes'])}, users "
        f"{gb(sizes['users_bytes'])}, subscriptions {gb(sizes['subscriptions_bytes'])}); data directory "
        f"{gb(sizes['data_directory_bytes'])}; repository {gb(sizes['repository_bytes'])} before this scale's "
        f"backups, {gb(scale.get('sizes_after', sizes)['repository_bytes'])} after. Loading the ledger rows: "
        f"{scale['ledger_load_s']} s; the scale's steps took {scale.get('duration_s', 0) / 60:.1f} min.",
        "",
        "| step | wall | details |",
        "|---|---|---|",
    ]
    for name, value in steps.items():
        details = []
        if "size_bytes" in value:
            details.append(f"size {value['size_bytes'] / 1e6:,.1f} MB")
        if "delta_bytes" in value:
            details.append(f"delta {value['delta_bytes'] / 1e6:,.1f} MB, label {value['label']}")
        if "backup_taken" in value:
            details.append(f"backup taken: {value['backup_taken']} (on {value['backup_label']})")
        if value.get("durations"):
            d = value["durations"]
            details.append(
                ", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in d.items())
                + f"; total/migrate {value['total_over_migrate']:.3f}x"
            )
        if "duration_s" in value:
            details.append(f"its own duration {value['duration_s']:.1f} s, safety backup {value['safety_backup']}")
        if "restore_s" in value:
            details.append(
                f"stop {value['stop_s']:.1f} s, pgbackrest restore {value['restore_s']:.1f} s, start "
                f"{value['start_s']:.1f} s, until promoted {value['until_promoted_s']:.1f} s"
            )
        if "way" in value:
            clean = value["clean"]
            details.append(
                f"`pg_restore --clean --if-exists --single-transaction`: exit {clean['returncode']} after "
                f"{clean['wall_s']:.1f} s"
                + (f" ({clean['error']})" if clean["returncode"] else "")
                + f"; timed: {value['way']}"
            )
        content = content_of(value)
        if content:
            details.append("content as before the migration: " + ("yes" if content["ok"] else f"NO {content}"))
        lines.append(f"| {name} | {value['wall_s']:.2f} s | {'; '.join(details).replace('|', '/')} |")
    return lines


def render(document: dict) -> str:
    lines = [
        "# Safety points: dump vs pgBackRest (bench/bench_safety_point.py)",
        "",
        "Rendered from results-safety-point.json. One archiving PostgreSQL 15 cluster (tests/pgbackrest_cluster.py), "
        "the project at the baseline with users and subscriptions seeded, and a table no migration touches "
        "(ledger_archive) grown between scales; see the script's docstring for the order of the steps.",
        "",
    ]
    for name, entry in document.items():
        load, v = entry["load"], entry["versions"]
        lines += [
            f"## {name}: {entry['users']:,} users + {entry['users']:,} subscriptions, ledger_archive "
            + " then ".join(f"{s['ledger_rows']:,}" for s in entry["scales"])
            + " rows",
            "",
            f"Date {entry['date']}, commit {v['commit']}, {entry.get('duration_s', 0) / 60:.1f} min in all. "
            f"Machine: {entry['machine']['cpu']}, {entry['machine']['cores']} cores, "
            f"{entry['machine']['memory_gb']} GB; PostgreSQL {entry['server_version']}, {entry['pgbackrest']}, "
            f"compress-type {entry['compress_type']}; server settings {entry['server_settings']}.",
            (  # a run in progress (saved after each step) has no end yet
                f"Load: 1-minute load average {load['start'][0]:.2f} at the start, {load['end'][0]:.2f} at the end "
                f"(5-minute {load['end'][1]:.2f}); CPU stolen by the hypervisor: {load['cpu_steal_pct']}%. "
                if "end" in load
                else f"Load: 1-minute load average {load['start'][0]:.2f} at the start; the run is in progress. "
            )
            + f"Other work on the machine: {entry.get('other_work', 'not recorded')}.",
            f"Seeding: {entry['seed_s']} s (seed_demo_data --users {entry['users']} --subscriptions "
            f"{entry['users']} --seed 1).",
            "",
        ]
        if entry.get("verdict"):
            lines += ["| goal (the issue) | measured | met |", "|---|---|---|"]
            lines += [
                f"| {g['goal']} | {g['measured'].replace('|', '/')} | {yes(g['met'])} |" for g in entry["verdict"]
            ]
            lines.append("")
        if entry.get("failure"):
            lines += [f"**The run failed:** {entry['failure']}", ""]
        lines += side_by_side(entry)
        for scale in entry["scales"]:
            lines += [*render_scale(scale), ""]
        if entry.get("notes"):
            lines += ["Notes (written by hand after the run, kept by --render):", ""]
            lines += [f"- {note}" for note in entry["notes"]] + [""]
    return "\n".join(lines) + "\n"


def side_by_side(entry: dict) -> list[str]:
    scales = [s for s in entry["scales"] if "duration_s" in s]
    if not scales:
        return []
    rows = [
        ("safety point: backup_db", "backup_db (pgbackrest point)", "backup_db (dump)", None),
        ("raw tool for the point", "pgbackrest backup --type=incr", "pg_dump -Fc", None),
        ("raw full backup", "pgbackrest backup --type=full", None, None),
        ("safe_migrate: its backup_s", "safe_migrate (pgbackrest)", "safe_migrate (dump)", "backup_s"),
        ("safe_migrate: migrate_s", "safe_migrate (pgbackrest)", "safe_migrate (dump)", "migrate_s"),
        ("safe_migrate: total_s", "safe_migrate (pgbackrest)", "safe_migrate (dump)", "total_s"),
        ("--online: backup_s", "safe_migrate --online (pgbackrest)", "safe_migrate --online (dump)", "backup_s"),
        ("--online: migrate_s", "safe_migrate --online (pgbackrest)", "safe_migrate --online (dump)", "migrate_s"),
        ("--online: total_s", "safe_migrate --online (pgbackrest)", "safe_migrate --online (dump)", "total_s"),
        ("--online: total / migrate", "safe_migrate --online (pgbackrest)", "safe_migrate --online (dump)", "ratio"),
        (
            "restore to before the migration: restore_db",
            "restore_db (pgbackrest point, delta PITR)",
            "restore_db (dump, logical in place)",
            None,
        ),
        ("restore: raw tool", "pgbackrest restore --delta --type=name (raw)", "pg_restore (raw, logical)", None),
    ]
    header = (
        "| | "
        + " | ".join(f"pgBackRest @ {s['ledger_rows'] / 1e6:g}M | dump @ {s['ledger_rows'] / 1e6:g}M" for s in scales)
        + " |"
    )
    lines = [
        "Side by side (wall seconds; ledger_archive rows after the @):",
        "",
        header,
        "|---|" + "---|---|" * len(scales),
    ]

    def value(scale: dict, name: str | None, key: str | None) -> str:
        if not name:
            return ""
        got = scale["steps"][name]
        if key == "ratio":
            return f"{got['total_over_migrate']:.3f}x"
        number = got["durations"][key] if key else got["wall_s"]
        return f"{number:.2f}"

    for title, ours, theirs, key in rows:
        cells = []
        for scale in scales:
            cells += [value(scale, ours, key), value(scale, theirs, key)]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return [*lines, ""]


# --- main ------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000, help="users and subscriptions seeded")
    parser.add_argument("--ledger", default="5000000,15000000", help="ledger_archive rows at each scale")
    parser.add_argument("--quick", action="store_true", help="100k + 100k, ledger 200k then 1M")
    parser.add_argument("--label", help="the entry's name in the results (default: quick or full)")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results-safety-point"))
    parser.add_argument("--render", action="store_true", help="only render the .md from the .json")
    args = parser.parse_args()
    if args.quick:
        args.users, args.ledger = 100_000, "200000,1000000"
    label = args.label or ("quick" if args.quick else "full")
    out_json, out_md = Path(args.output + ".json"), Path(args.output + ".md")
    document = json.loads(out_json.read_text()) if out_json.exists() else {}
    if args.render:
        out_md.write_text(render(document))
        return
    ledgers = [int(n) for n in args.ledger.split(",")]
    entry: dict = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "users": args.users,
        "machine": machine(),
        "load": {"start": list(os.getloadavg())},
        "scales": [],
        "notes": document.get(label, {}).get("notes", []),
        "other_work": document.get(label, {}).get("other_work", "not recorded"),
    }
    document[label] = entry

    def save() -> None:
        entry["verdict"] = verdict(entry)
        out_json.write_text(json.dumps(document, indent=2) + "\n")
        out_md.write_text(render(document))

    started, cpu_before = time.monotonic(), cpu_times()
    work = Path(tempfile.mkdtemp(prefix="bench-safety-point-"))
    try:
        with ArchivingCluster(extra_conf=EXTRA_CONF) as cluster:
            bench = Bench(cluster, args, work, entry, save)
            entry["versions"] = versions(cluster.url.rsplit("/", 1)[0])
            entry["server_version"] = cluster.psql("SHOW server_version")
            entry["server_settings"] = entry["versions"]["server_settings"]
            entry["pgbackrest"] = subprocess.run(
                ["pgbackrest", "version"], capture_output=True, text=True
            ).stdout.strip()
            entry["compress_type"] = cluster.compress_type
            cluster.stanza_create()
            cluster.create_database(DATABASE)
            for app, target in (("accounts", "0001"), ("billing", "0001")):
                run_measured(manage_argv(bench.url, "migrate", app, target, "--noinput", "-v0"))
            seeded = run_measured(
                manage_argv(
                    bench.url,
                    "seed_demo_data",
                    "--users",
                    str(args.users),
                    "--subscriptions",
                    str(args.users),
                    "--seed",
                    "1",
                    "-v0",
                )
            )
            entry["seed_s"] = seeded["wall_s"]
            print(f"seeded {args.users:,} + {args.users:,} in {seeded['wall_s']:.1f} s", flush=True)
            for index, rows in enumerate(ledgers):
                bench.scale(rows, first=index == 0)
            save()
    except Exception as exc:
        entry["failure"] = str(exc)[:3000]
        raise
    finally:
        entry["load"]["end"] = list(os.getloadavg())
        entry["load"]["cpu_steal_pct"] = steal_pct(cpu_before, cpu_times())
        entry["duration_s"] = round(time.monotonic() - started, 1)
        save()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    for goal in entry["verdict"]:
        print(f"{'met' if goal['met'] else 'MISSED'}: {goal['goal']}: {goal['measured']}")


if __name__ == "__main__":
    main()
