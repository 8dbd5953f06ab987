"""Dumps: the backup formats, writing a dump, and what a dump file says about itself.

Backup format (chosen by measurement, see bench/README.md): an uncompressed custom-format archive
(`pg_dump -Fc -Z0`) piped through `zstd -1` when the zstd binary exists ("pg_custom+zstd"), otherwise
`pg_dump -Fc -Z1` ("pg_custom"). The dump reads an exported snapshot of a REPEATABLE READ side
connection, which counts the rows of every table in the same snapshot while pg_dump runs.
"""

from __future__ import annotations

import re
import subprocess
import threading
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import IO

from migrations_ops import interrupts
from migrations_ops.engines.base import DumpResult, Progress, count_rows, read_head
from migrations_ops.engines.postgresql import introspection, tools
from migrations_ops.engines.postgresql.sessions import Connections, lock_timeout_ms
from migrations_ops.engines.processes import (
    StreamReader,
    first_error,
    kill_all,
    killed_on_interrupt,
    returncode_text,
    write_hashed,
)
from migrations_ops.errors import BadInput, OperationFailed

FORMAT_ZSTD = "pg_custom+zstd"
FORMAT_CUSTOM = "pg_custom"
# `pg_dump db > backup.sql`, as the old runbook made them; only adopted (backup_db --adopt), never written.
FORMAT_PLAIN = "pg_plain"
SUFFIXES = {FORMAT_ZSTD: ".dump.zst", FORMAT_CUSTOM: ".dump", FORMAT_PLAIN: ".sql"}
CUSTOM_MAGIC = b"PGDMP"
PLAIN_HEADER = "-- PostgreSQL database dump"
# pg_dump's last comment: a plain dump without it was cut short (psql would apply the part it got).
PLAIN_TRAILER = "-- PostgreSQL database dump complete"
ZSTD_LEVEL = "-1"


def archive_reader(path: Path, backup_format: str) -> tuple[IO[bytes], list[subprocess.Popen]]:
    """A readable stream of the uncompressed custom-format archive at ``path``, and the helper processes
    that produce it (the caller closes the one and kills the others)."""
    if backup_format == FORMAT_ZSTD:
        with open(path, "rb") as handle:
            decompressor = tools.start("zstd", ["-d", "-q", "-c"], stdin=handle)
        return decompressor.stdout, [decompressor]
    return open(path, "rb"), []  # noqa: SIM115 - closed by the caller


class Dumps(Connections):
    """Formats, the dump tools' check, dump, and reading a dump file back (facts, verification)."""

    def check_dump_tools(self) -> str:
        version = tools.version("pg_dump")
        server = tools.major(self.server_version())
        if tools.major(version) < server:
            raise BadInput(
                f"pg_dump {version} is older than the PostgreSQL {server} server: "
                f"install pg_dump {server} or newer (nothing was written)"
            )
        return version

    def preferred_format(self) -> str:
        return FORMAT_ZSTD if tools.available("zstd") else FORMAT_CUSTOM

    def file_suffix(self, backup_format: str) -> str:
        return SUFFIXES[backup_format]

    @classmethod
    def detect_format(cls, path: Path) -> str | None:
        head = read_head(path)
        if head.startswith(CUSTOM_MAGIC):
            return FORMAT_CUSTOM
        if PLAIN_HEADER in head[:200].decode(errors="replace"):
            return FORMAT_PLAIN
        return None

    def file_facts(self, path: Path, backup_format: str) -> dict[str, str]:
        if backup_format == FORMAT_PLAIN:
            text = read_head(path, 8192).decode(errors="replace")
            pattern = r"^-- Dumped {} version (\S+)"
        else:
            stream, helpers = archive_reader(path, backup_format)
            try:
                listed = tools.run("pg_restore", ["--list"], stdin=stream, timeout=None)
            finally:
                stream.close()
                kill_all(helpers)
            text = listed.stdout.decode(errors="replace")
            pattern = r"^;\s+Dumped {} version: (\S+)"
        facts = {"database": "", "server_version": "", "tool_version": ""}
        for key, words in (("server_version", "from database"), ("tool_version", "by pg_dump")):
            match = re.search(pattern.format(words), text, re.MULTILINE)
            facts[key] = match.group(1) if match else ""
        facts["tool_version"] = f"pg_dump {facts['tool_version'] or 'unknown'}"
        name = re.search(r"^;\s+dbname: (\S+)", text, re.MULTILINE)
        facts["database"] = name.group(1) if name else ""
        return facts

    # --- dump ---
    def dump(
        self, path: Path, backup_format: str, progress: Progress | None = None, lock_timeout: float = 5.0
    ) -> DumpResult:
        tool_version = self.check_dump_tools()
        with self.side_connection() as meta:
            processes: list[subprocess.Popen] = []
            hooks = ExitStack()  # an interrupt kills the tools and cancels the row counting
            try:
                hooks.enter_context(killed_on_interrupt(processes))
                hooks.enter_context(interrupts.cancellable(meta.cancel))
                meta.autocommit = False
                meta.set_session(isolation_level="REPEATABLE READ", readonly=True)
                with meta.cursor() as cur:
                    cur.execute(f"SET lock_timeout = {lock_timeout_ms(lock_timeout)}")
                    write_counters = introspection.write_counters(cur)
                    cur.execute("SELECT pg_export_snapshot(), current_setting('server_version')")
                    snapshot, server_version = cur.fetchone()
                    cur.execute(introspection.TABLES_SQL)
                    tables = [row[0] for row in cur.fetchall()]

                args = ["-Fc", "--snapshot", snapshot, "--no-password"]
                args += [f"--lock-wait-timeout={lock_timeout_ms(lock_timeout)}"]
                args += ["-Z0"] if backup_format == FORMAT_ZSTD else ["-Z1"]
                if progress:
                    args.append("--verbose")
                done_tables = [0]

                def on_dump_line(line: str) -> bool:
                    match = re.search(r'dumping contents of table "([^"]+)"', line)
                    if match and progress:
                        done_tables[0] += 1
                        progress(min(done_tables[0], len(tables)), len(tables), match.group(1))
                    return line.startswith("pg_dump: ") and "error" not in line and "warning" not in line

                dumper = tools.start("pg_dump", args, stdin=subprocess.DEVNULL, env=self.tool_env())
                processes.append(dumper)
                readers = [StreamReader(dumper.stderr, on_dump_line)]
                output = dumper.stdout
                if backup_format == FORMAT_ZSTD:
                    compressor = tools.start("zstd", [ZSTD_LEVEL, "-q", "-c"], stdin=dumper.stdout)
                    processes.append(compressor)
                    dumper.stdout.close()  # the compressor owns it now
                    readers.append(StreamReader(compressor.stderr))
                    output = compressor.stdout
                for reader in readers:
                    reader.start()

                counts: dict[str, int] = {}
                migrations: dict[str, list[str]] = {}
                count_error: list[BaseException] = []

                def count() -> None:
                    try:
                        with meta.cursor() as cur:
                            counts.update(count_rows(cur, tables))
                            if "django_migrations" in tables:
                                cur.execute("SELECT app, name FROM django_migrations ORDER BY app, name")
                                for app, name in cur.fetchall():
                                    migrations.setdefault(app, []).append(name)
                    except BaseException as exc:  # reported after the dump; never swallowed
                        count_error.append(exc)

                counter = threading.Thread(target=count, daemon=True)
                counter.start()

                sha256, size = write_hashed(output, path)
                for process in processes:
                    process.wait()
                for reader in readers:
                    reader.join()
                if any(process.returncode != 0 for process in processes):
                    meta.cancel()  # the dump failed: do not wait for the row counts
                counter.join()
                if dumper.returncode != 0:
                    raise OperationFailed(
                        f"pg_dump failed ({returncode_text('pg_dump', dumper.returncode)}): "
                        f"{first_error(readers[0].text, 'no message')}"
                    )
                if len(processes) > 1 and processes[1].returncode != 0:
                    raise OperationFailed(f"zstd failed: {first_error(readers[1].text, 'no message')}")
                if count_error:
                    raise OperationFailed(f"counting rows failed: {count_error[0]}")
                return DumpResult(
                    format=backup_format,
                    sha256=sha256,
                    size_bytes=size,
                    tool_version=f"pg_dump {tool_version}",
                    server_version=server_version,
                    tables=dict(sorted(counts.items())),
                    migrations=migrations,
                    write_counters=write_counters,
                )
            finally:
                hooks.close()
                kill_all(processes)
                with suppress(Exception):
                    meta.rollback()

    # --- verify ---
    def verify_file(self, path: Path, backup_format: str) -> list[str]:
        problems: list[str] = []
        if backup_format not in SUFFIXES:
            return [f"unknown PostgreSQL backup format {backup_format!r}"]
        if backup_format == FORMAT_PLAIN:
            return self._plain_problems(path)
        if backup_format == FORMAT_ZSTD:
            tested = tools.run("zstd", ["-t", "-q", str(path)], timeout=3600)
            if tested.returncode != 0:
                return [f"zstd: {first_error(tested.stderr.decode(errors='replace'), 'corrupt compressed stream')}"]
        stream, helpers = archive_reader(path, backup_format)
        try:
            listed = tools.run("pg_restore", ["--list"], stdin=stream, timeout=3600)
        finally:
            stream.close()
            kill_all(helpers)
        if listed.returncode != 0:
            problems.append(f"pg_restore --list: {first_error(listed.stderr.decode(errors='replace'), 'unreadable')}")
        elif "TABLE DATA" not in listed.stdout.decode(errors="replace") and b"TOC Entries" not in listed.stdout:
            problems.append("pg_restore --list: no table of contents")
        return problems

    @staticmethod
    def _plain_problems(path: Path) -> list[str]:
        if PLAIN_HEADER not in read_head(path, 200).decode(errors="replace"):
            return ["it does not start like pg_dump's plain SQL output"]
        size = path.stat().st_size
        with open(path, "rb") as handle:
            handle.seek(max(0, size - 4096))
            tail = handle.read().decode(errors="replace")
        if PLAIN_TRAILER not in tail:
            return [f"it ends before pg_dump's last line ({PLAIN_TRAILER!r}): truncated"]
        return []
