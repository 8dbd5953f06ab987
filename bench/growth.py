"""Growth with the data, on one machine in one run: each operation at every scale, interleaved.

    .venv/bin/python bench/growth.py --scales 1m,4m                   # bench/growth.md and bench/growth.json
    .venv/bin/python bench/growth.py --scales 1m,4m --with-restore    # also restore_db against pg_restore
    .venv/bin/python bench/growth.py --scales 100k,400k --rounds 3 --keep
    .venv/bin/python bench/growth.py --render                         # refigure growth.json, rewrite growth.md

Why not two run.py entries: run.py measures one scale per run, and two runs on these shared 2-core
VMs are not on the same machine, even when /proc/cpuinfo names the same CPU: on 2026-12-03 two
VMs named "AMD EPYC" seeded head rows at 75 s and 94 s per million, hours apart, and the
hypervisor takes a varying share of the CPU (steal). A growth computed across two such runs is the
machine's change as much as the data's. Here every round runs each operation at each scale back to
back, the order rotating, so a slower quarter of an hour slows every scale alike; the CPU stolen
during the run is recorded beside the figures.

1. seed: a database at the head per scale (`seed_demo_data --users N --subscriptions N --seed 1`),
   named growth_<scale>; --reuse takes an existing one instead (the operations below only read it).
2. rounds: `backup_db` / plain `pg_dump` / `validate_db` / the same SQL through `psql` at every
   scale; with --with-restore also `restore_db --target-database-url` / `createdb + pg_restore
   --single-transaction` (of a `pg_dump -Fc` made once per scale, untimed).
3. figures: the median at each scale, the growth against the data's factor, and each of ours
   beside its raw tool's growth (the raw tool is PostgreSQL's own growth on this machine: an
   operation that grows like it adds nothing superlinear of its own).

Not a test. Same server and environment as run.py (--server, BENCH_ADMIN_URL).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path

import _common
import bench_backup
import bench_seed
import bench_validate
import run
from _common import admin, drop_database, manage_argv, run_measured, url_of

PREFIX = "growth_"
# ours -> the raw tool whose growth it is set against
PAIRS = {
    run.BACKUP_DB: run.PG_DUMP,
    run.VALIDATE: run.VALIDATE_PSQL,
    run.RESTORE_TARGET: run.PG_RESTORE,
}


class Growth:
    def __init__(self, args) -> None:
        self.args = args
        self.samples = run.Samples()
        self.work = Path(tempfile.mkdtemp(prefix="bench-growth-", dir=args.workdir))
        self.backups = self.work / "backups"
        self.env = _common.scratch_env(self.work)
        self.seeding: dict[str, dict] = {}
        self.statements: dict[str, int] = {}

    def database(self, rows: int) -> str:
        return f"{PREFIX}{run.scale_name(rows)}"

    def seed(self, rows: int) -> None:
        name = self.database(rows)
        if self.args.reuse and bench_validate.database_exists(name):
            print(f"  {name}: reused", flush=True)
            return
        drop_database(name)
        admin(f'CREATE DATABASE "{name}"')
        bench_seed.prepare(url_of(name), "head")
        options = ["--users", str(rows), "--subscriptions", str(rows), "--seed", "1"]
        result = bench_seed.seed(url_of(name), options)
        self.seeding[run.scale_name(rows)] = {key: result[key] for key in ("wall_s", "rows", "rows_per_s")}
        print(f"  {name}: {result['rows']:,} rows in {result['wall_s']:.1f} s", flush=True)
        run.vacuum_analyze(name)

    def sides(self, rows: int) -> list[tuple[str, object]]:
        scale = run.scale_name(rows)
        name = self.database(rows)
        url = url_of(name)
        plain = self.work / f"plain-{scale}.sql"
        script = self.work / f"checks-{scale}.sql"
        worker = bench_validate.ValidationWorker(url, self.env)
        try:
            self.statements[scale] = worker.capture(script)
        finally:
            worker.close()

        def backup(round_no: int) -> dict:
            backup_name = f"growth-{scale}-{round_no}"
            sample = run_measured(bench_backup.backup_db(url, backup_name), env=self.env)
            sample["bytes"] = bench_backup.manifest_of(self.backups, backup_name)["size_bytes"]
            for path in self.backups.glob(f"{backup_name}.*"):
                path.unlink()
            return sample

        def pg_dump(_: int) -> dict:
            plain.unlink(missing_ok=True)
            sample = run_measured(bench_backup.pg_dump_plain(url, plain)) | {"bytes": plain.stat().st_size}
            plain.unlink()
            return sample

        def validate(_: int) -> dict:
            return run_measured(manage_argv(url, "validate_db", "-v0"), env=self.env)

        sides = [
            (f"{run.BACKUP_DB} @ {scale}", backup),
            (f"{run.PG_DUMP} @ {scale}", pg_dump),
            (f"{run.VALIDATE} @ {scale}", validate),
            (f"{run.VALIDATE_PSQL} @ {scale}", lambda _: run_measured(bench_validate.psql_script(url, script))),
        ]
        if self.args.with_restore:
            dump = self.work / f"custom-{scale}.dump"
            run_measured(bench_backup.pg_dump_custom(url, dump))
            run_measured(bench_backup.backup_db(url, f"growth-{scale}-restore"), env=self.env)
            ours_db, raw_db = f"{PREFIX}restore_ours_{scale}", f"{PREFIX}restore_raw_{scale}"

            def restore_ours(_: int) -> dict:
                drop_database(ours_db)
                return run_measured(
                    bench_backup.restore_db(url, f"growth-{scale}-restore", url_of(ours_db)), env=self.env
                )

            def restore_raw(_: int) -> dict:
                drop_database(raw_db)
                return run_measured(bench_backup.pg_restore_fresh(url_of(raw_db), raw_db, dump))

            sides += [(f"{run.RESTORE_TARGET} @ {scale}", restore_ours), (f"{run.PG_RESTORE} @ {scale}", restore_raw)]
        return sides

    def measure(self) -> None:
        """Every side of every scale once per round, the order rotating."""
        sides = [side for rows in self.args.rows for side in self.sides(rows)]
        run.alternate(self.samples, self.args.rounds, sides)

    def cleanup(self) -> None:
        for rows in self.args.rows:
            scale = run.scale_name(rows)
            drop_database(f"{PREFIX}restore_ours_{scale}")
            drop_database(f"{PREFIX}restore_raw_{scale}")
            if not self.args.keep:
                drop_database(self.database(rows))
        shutil.rmtree(self.work, ignore_errors=True)


def figures(samples: run.Samples, small: str, big: str, factor: float) -> list[dict]:
    """Per operation: its medians at both scales, its growth, and, for ours, its raw tool's growth."""
    labels = sorted({label.rsplit(" @ ", 1)[0] for label in samples.runs})
    rows = []
    for label in labels:
        low, high = samples.median(f"{label} @ {small}"), samples.median(f"{label} @ {big}")
        if low is None or high is None:
            continue
        # Each round ran both scales back to back, so a round's own ratio is free of the machine's
        # drift between rounds; their range is the noise the median growth carries.
        small_rounds, big_rounds = samples.by_round(f"{label} @ {small}"), samples.by_round(f"{label} @ {big}")
        per_round = [big_rounds[r] / small_rounds[r] for r in sorted(small_rounds.keys() & big_rounds.keys())]
        row = {
            "operation": label,
            "small_s": round(low, 3),
            "big_s": round(high, 3),
            "growth": round(high / low, 3),
            "round_growth": [round(min(per_round), 3), round(max(per_round), 3)] if per_round else None,
            "verdict": verdict(high / low, per_round, factor),
            "spread_pct": [
                samples.summary(f"{label} @ {small}")["spread_pct"],
                samples.summary(f"{label} @ {big}")["spread_pct"],
            ],
        }
        raw = PAIRS.get(label)
        raw_low, raw_high = samples.median(f"{raw} @ {small}"), samples.median(f"{raw} @ {big}")
        if raw and raw_low and raw_high:
            row["raw"] = raw
            row["raw_growth"] = round(raw_high / raw_low, 3)
            row["relative_growth"] = round((high / low) / (raw_high / raw_low), 3)
        rows.append(row)
    return rows


def verdict(growth: float, per_round: list[float], factor: float) -> str:
    """linear: the median grew no faster than the data; noise: it did, but some round did not;
    faster: every round grew faster than the data."""
    if growth <= factor:
        return "linear"
    return "noise" if per_round and min(per_round) <= factor else "faster"


VERDICTS = {"linear": "yes", "noise": "within the noise", "faster": "**no: faster than the data in every round**"}


def render(entry: dict) -> str:
    small, big, factor = entry["small"], entry["big"], entry["factor"]
    load = entry["load"]
    lines = [
        "# Growth with the data, on one machine in one run",
        "",
        "Written by `bench/growth.py` (see bench/README.md); do not edit by hand. Every round runs each "
        "operation at each scale, order rotated, so the machine's speed changes fall on both scales alike.",
        "",
        f"## {small} -> {big} (data x{factor:g})",
        "",
        f"Date {entry['date']}; {entry['rounds']} rounds; {entry['duration_s'] / 60:.1f} min in all. "
        f"Machine: {entry['machine']['cpu']}, {entry['machine']['cores']} cores, {entry['machine']['memory_gb']} GB; "
        f"CPU stolen by the hypervisor during the run: {entry['cpu_steal_pct']}%. "
        f"Load: 1-minute load average {load['start'][0]} at the start, {load['end'][0]} at the end. "
        f"Commit {entry['versions']['commit']}; PostgreSQL {entry['versions']['postgresql_server']}.",
        "",
        "| operation | " + small + " | " + big + " | growth (medians) | each round's growth | linear or better | "
        "raw tool's growth | growth relative to the raw tool |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in entry["figures"]:
        raw = f"x{row['raw_growth']:.2f} (`{run.cell(row['raw'])}`)" if "raw" in row else ""
        relative = f"{row['relative_growth']:.2f}" if "raw" in row else ""
        rounds = "x{:.2f}-x{:.2f}".format(*row["round_growth"]) if row.get("round_growth") else ""
        lines.append(
            f"| `{run.cell(row['operation'])}` | {run.seconds(row['small_s'])} | {run.seconds(row['big_s'])} | "
            f"x{row['growth']:.2f} | {rounds} | {VERDICTS[row['verdict']]} | {raw} | {relative} |"
        )
    if entry["seeding"]:
        lines += [
            "",
            "| seeding (one run each, before the rounds) | rows | time | rows per second |",
            "|---|---|---|---|",
        ]
        for scale, seeded in entry["seeding"].items():
            lines.append(
                f"| {scale} | {seeded['rows']:,} | {run.seconds(seeded['wall_s'])} | {seeded['rows_per_s']:,} |"
            )
    lines += ["", f"Validation statements captured per scale: {entry['statements']}.", ""]
    return "\n".join(lines)


def rerender(output: Path) -> None:
    """Figures again from the recorded samples (a verdict rule changed, not the measurements)."""
    json_path = output.with_suffix(".json")
    entry = json.loads(json_path.read_text())
    samples = run.Samples()
    samples.runs = entry["samples"]
    entry["figures"] = figures(samples, entry["small"], entry["big"], entry["factor"])
    json_path.write_text(json.dumps(entry, indent=1, default=str) + "\n")
    output.with_suffix(".md").write_text(render(entry))
    print(f"rewrote {output.with_suffix('.md')} from {json_path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1m,4m", help="two scales, like 1m,4m")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--with-restore", action="store_true", help="also restore_db against pg_restore")
    parser.add_argument("--server", default=_common.BASE_URL, help="PostgreSQL server URL, without a database name")
    parser.add_argument("--output", help="file prefix (default bench/growth)")
    parser.add_argument("--workdir", help="where dumps and backups go (default: the system's temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the seeded databases (growth_<scale>)")
    parser.add_argument("--reuse", action="store_true", help="use growth_<scale> databases left by --keep")
    parser.add_argument(
        "--render", action="store_true", help="measure nothing: refigure the JSON's samples and rewrite the Markdown"
    )
    args = parser.parse_args()
    args.rows = sorted(run.parse_scale(text) for text in args.scales.split(","))
    if len(args.rows) != 2 or args.rows[0] == args.rows[1]:
        parser.error("--scales takes two different scales, like 1m,4m")
    output = Path(args.output or (Path(__file__).parent / "growth"))
    if args.render:
        rerender(output)
        return
    _common.use_server(args.server.rstrip("/"))

    started = datetime.datetime.now(datetime.UTC)
    load_start = [round(value, 2) for value in os.getloadavg()]
    cpu_start = run.cpu_times()
    growth = Growth(args)
    small, big = (run.scale_name(rows) for rows in args.rows)
    print(f"bench/growth.py: {small} and {big}, {args.rounds} rounds, load {load_start}", flush=True)
    try:
        print("[seed]", flush=True)
        for rows in args.rows:
            growth.seed(rows)
        print("[rounds]", flush=True)
        measured_from = run.cpu_times()
        growth.measure()
        steal = run.steal_pct(measured_from, run.cpu_times())
    finally:
        growth.cleanup()
    finished = datetime.datetime.now(datetime.UTC)
    entry = {
        "small": small,
        "big": big,
        "factor": args.rows[1] / args.rows[0],
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round((finished - started).total_seconds(), 1),
        "rounds": args.rounds,
        "machine": run.machine(),
        "versions": run.versions(args.server.rstrip("/")),
        "cpu_steal_pct": steal,
        "cpu_steal_pct_with_seeding": run.steal_pct(cpu_start, run.cpu_times()),
        "load": {"start": load_start, "end": [round(value, 2) for value in os.getloadavg()]},
        "seeding": growth.seeding,
        "statements": growth.statements,
        "figures": figures(growth.samples, small, big, args.rows[1] / args.rows[0]),
        "measurements": {label: growth.samples.summary(label) for label in growth.samples.runs},
        "samples": growth.samples.runs,
    }
    json_path, md_path = output.with_suffix(".json"), output.with_suffix(".md")
    json_path.write_text(json.dumps(entry, indent=1, default=str) + "\n")
    md_path.write_text(render(entry))
    print(f"wrote {md_path} and {json_path}")
    print(render(entry))


if __name__ == "__main__":
    main()
