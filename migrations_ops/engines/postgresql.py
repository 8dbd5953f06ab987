"""PostgreSQL: pg_dump / pg_restore / psql, advisory locks, catalog introspection.

Passwords reach the client tools through PGPASSWORD in their environment, never through argv.

Backup format (chosen by measurement, see bench/README.md): an uncompressed custom-format archive
(`pg_dump -Fc -Z0`) piped through `zstd -1` when the zstd binary exists ("pg_custom+zstd"), otherwise
`pg_dump -Fc -Z1` ("pg_custom"). Restore: the application schemas are dropped and recreated and
`pg_restore -f -` output is applied with `psql --single-transaction -v ON_ERROR_STOP=1`; a deferred
guard trigger makes the transaction roll back unless the whole stream (and the row-count check that
ends it) arrived, so a restore killed or failing at any point leaves the previous content.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql as pgsql

from migrations_ops import interrupts
from migrations_ops.capacity import TableRewrite
from migrations_ops.engines.base import (
    DatabaseEngine,
    DumpFile,
    DumpResult,
    LockOwner,
    Progress,
    causes,
    check_free_space,
    count_rows,
    read_head,
)
from migrations_ops.engines.processes import (
    StreamReader,
    first_error,
    kill_all,
    killed_on_interrupt,
    pump,
    returncode_text,
    run_tool,
    write_hashed,
)
from migrations_ops.errors import BadInput, LockHeld, OperationFailed, first_line

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

# One advisory lock key for "a schema-changing operation runs on this database" ("mops" in ASCII).
LOCK_KEY = 0x6D6F7073
LOCK_APP_PREFIX = "mops-lock"

# libpq connection keywords Django users put in OPTIONS, and the environment variables of the tools.
_OPTION_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "options": "PGOPTIONS",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
}
# A dead server or network is noticed within about 25 s instead of a TCP timeout of minutes.
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30000,
    "connect_timeout": 10,
}
_SYSTEM_SCHEMA_FILTER = "n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"


def _major(version: str) -> int:
    match = re.search(r"(\d+)(?:\.(\d+))?", version or "")
    if not match:
        return 0
    return int(match.group(1))


class PostgreSQLEngine(DatabaseEngine):
    vendor = "postgresql"
    _lock_backend_pid: int | None = None

    # --- connection plumbing ---
    def _dbname(self) -> str:
        return str(self.settings_dict.get("NAME") or "")

    def connect_params(self, dbname: str | None = None) -> dict[str, Any]:
        """psycopg2/libpq keyword arguments for a dedicated connection (not Django's)."""
        cfg = self.settings_dict
        params: dict[str, Any] = {"dbname": dbname or self._dbname()}
        for key, setting in (("user", "USER"), ("password", "PASSWORD"), ("host", "HOST"), ("port", "PORT")):
            if cfg.get(setting):
                params[key] = cfg[setting]
        for key in _OPTION_ENV:
            if key in (cfg.get("OPTIONS") or {}):
                params[key] = cfg["OPTIONS"][key]
        return params

    def _connect(self, dbname: str | None = None, **extra) -> psycopg2.extensions.connection:
        try:
            conn = psycopg2.connect(**self.connect_params(dbname), **extra)
        except psycopg2.OperationalError as exc:
            raise BadInput(f"database unreachable: {first_line(exc, 'connection failed')}") from None
        conn.autocommit = True
        return conn

    def tool_env(self, dbname: str | None = None) -> dict[str, str]:
        """Environment for pg_dump/pg_restore/psql: inherited PG* variables removed, ours set."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        params = self.connect_params(dbname)
        mapping = {"dbname": "PGDATABASE", "user": "PGUSER", "password": "PGPASSWORD", "host": "PGHOST"}
        mapping["port"] = "PGPORT"
        mapping.update(_OPTION_ENV)
        for key, value in params.items():
            env[mapping[key]] = str(value)
        env["PGAPPNAME"] = "migrations_ops"
        return env

    # --- identity ---
    def database_info(self) -> dict[str, Any]:
        cfg = self.settings_dict
        port = cfg.get("PORT")
        return {"name": self._dbname(), "host": cfg.get("HOST") or "localhost", "port": int(port) if port else 5432}

    def server_version(self) -> str:
        try:
            conn = self._connect()
        except BadInput:
            if self.database_exists():
                raise
            conn = self._maintenance()  # a restore target not created yet: same server, same version
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW server_version")
                return cur.fetchone()[0]
        finally:
            conn.close()

    def table_names(self) -> list[str]:
        """Tables (plain and partitioned) visible on the search path, as Django names them; no views."""
        with self.connection.cursor() as cursor:
            cursor.execute(self._table_sql())
            return [row[0] for row in cursor.fetchall()]

    def special_relations(self) -> dict[str, str]:
        # Views and materialized views report every column nullable; foreign tables' constraints
        # live on the remote side. Partitioned tables ('p') are plain tables for this purpose.
        kinds = {"v": "PostgreSQL view", "m": "PostgreSQL materialized view", "f": "PostgreSQL foreign table"}
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('v', 'm', 'f') AND pg_table_is_visible(c.oid) AND " + _SYSTEM_SCHEMA_FILTER
            )
            return {name: kinds[kind] for name, kind in cursor.fetchall()}

    @staticmethod
    def _table_sql() -> str:
        return (
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND pg_table_is_visible(c.oid) AND "
            + _SYSTEM_SCHEMA_FILTER
            + " ORDER BY c.relname"
        )

    # --- tools ---
    def _tool(self, name: str) -> str:
        path = shutil.which(name)
        if not path:
            raise BadInput(f"{name} not found on PATH: install the PostgreSQL client tools (version >= the server's)")
        return path

    def _tool_version(self, name: str) -> str:
        done = subprocess.run([self._tool(name), "--version"], capture_output=True, timeout=30)
        match = re.search(r"(\d+(?:\.\d+)*)", done.stdout.decode(errors="replace"))
        if done.returncode != 0 or not match:
            raise BadInput(
                f"{name} --version failed ({returncode_text(name, done.returncode)}): cannot check its version"
            )
        return match.group(1)

    def _server_major(self) -> int:
        return _major(self.server_version())

    def check_dump_tools(self) -> str:
        version = self._tool_version("pg_dump")
        server = self._server_major()
        if _major(version) < server:
            raise BadInput(
                f"pg_dump {version} is older than the PostgreSQL {server} server: "
                f"install pg_dump {server} or newer (nothing was written)"
            )
        return version

    def check_restore_tools(self, backup_format: str, backup_tool_version: str) -> None:
        version = self._tool_version("pg_restore")
        self._tool("psql")
        needed = max(self._server_major(), _major(backup_tool_version))
        if _major(version) < needed:
            raise BadInput(f"pg_restore {version} is too old for this server/backup: install version {needed} or newer")
        if backup_format == FORMAT_ZSTD and not shutil.which("zstd"):
            raise BadInput("this backup is zstd-compressed and the zstd binary is not on PATH: install zstd")
        if backup_format not in SUFFIXES:
            raise BadInput(f"unknown PostgreSQL backup format {backup_format!r}")

    def preferred_format(self) -> str:
        return FORMAT_ZSTD if shutil.which("zstd") else FORMAT_CUSTOM

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
            stream, helpers = self._archive_reader(path, backup_format)
            try:
                listed = subprocess.run([self._tool("pg_restore"), "--list"], stdin=stream, capture_output=True)
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

    def _lock_timeout_ms(self, seconds: float) -> int:
        return max(1, int(seconds * 1000))

    # --- dump ---
    def dump(
        self, path: Path, backup_format: str, progress: Progress | None = None, lock_timeout: float = 5.0
    ) -> DumpResult:
        tool_version = self.check_dump_tools()
        meta = self._connect()
        processes: list[subprocess.Popen] = []
        hooks = ExitStack()  # an interrupt kills the tools and cancels the row counting
        try:
            hooks.enter_context(killed_on_interrupt(processes))
            hooks.enter_context(interrupts.cancellable(meta.cancel))
            meta.autocommit = False
            meta.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with meta.cursor() as cur:
                cur.execute(f"SET lock_timeout = {self._lock_timeout_ms(lock_timeout)}")
                write_counters = _write_counters(cur)
                cur.execute("SELECT pg_export_snapshot(), current_setting('server_version')")
                snapshot, server_version = cur.fetchone()
                cur.execute(self._table_sql())
                tables = [row[0] for row in cur.fetchall()]

            argv = [self._tool("pg_dump"), "-Fc", "--snapshot", snapshot, "--no-password"]
            argv += [f"--lock-wait-timeout={self._lock_timeout_ms(lock_timeout)}"]
            argv += ["-Z0"] if backup_format == FORMAT_ZSTD else ["-Z1"]
            if progress:
                argv.append("--verbose")
            done_tables = [0]

            def on_dump_line(line: str) -> bool:
                match = re.search(r'dumping contents of table "([^"]+)"', line)
                if match and progress:
                    done_tables[0] += 1
                    progress(min(done_tables[0], len(tables)), len(tables), match.group(1))
                return line.startswith("pg_dump: ") and "error" not in line and "warning" not in line

            dumper = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.tool_env(), stdin=subprocess.DEVNULL
            )
            processes.append(dumper)
            readers = [StreamReader(dumper.stderr, on_dump_line)]
            output = dumper.stdout
            if backup_format == FORMAT_ZSTD:
                compressor = subprocess.Popen(
                    [self._tool("zstd"), ZSTD_LEVEL, "-q", "-c"],
                    stdin=dumper.stdout,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
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
            meta.close()

    def _archive_reader(self, path: Path, backup_format: str) -> tuple[Any, list[subprocess.Popen]]:
        """A readable stream of the uncompressed custom-format archive at ``path``."""
        if backup_format == FORMAT_ZSTD:
            with open(path, "rb") as handle:
                decompressor = subprocess.Popen(
                    [self._tool("zstd"), "-d", "-q", "-c"],
                    stdin=handle,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            return decompressor.stdout, [decompressor]
        return open(path, "rb"), []  # noqa: SIM115 - closed by the caller

    # --- verify ---
    def verify_file(self, path: Path, backup_format: str) -> list[str]:
        problems: list[str] = []
        if backup_format not in SUFFIXES:
            return [f"unknown PostgreSQL backup format {backup_format!r}"]
        if backup_format == FORMAT_PLAIN:
            return self._plain_problems(path)
        if backup_format == FORMAT_ZSTD:
            tested = run_tool([self._tool("zstd"), "-t", "-q", str(path)], timeout=3600)
            if tested.returncode != 0:
                return [f"zstd: {first_error(tested.stderr.decode(errors='replace'), 'corrupt compressed stream')}"]
        stream, helpers = self._archive_reader(path, backup_format)
        try:
            listed = run_tool([self._tool("pg_restore"), "--list"], timeout=3600, stdin=stream)
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

    # --- restore ---
    def _catalog(self) -> tuple[list[str], list[str]]:
        """Non-system schemas and their tables (quoted, qualified) as they are now."""
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT quote_ident(n.nspname) FROM pg_namespace n WHERE {_SYSTEM_SCHEMA_FILTER}")
                schemas = sorted(row[0] for row in cur.fetchall())
                cur.execute(
                    "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND "
                    + _SYSTEM_SCHEMA_FILTER
                )
                tables = sorted(row[0] for row in cur.fetchall())
            return schemas, tables
        finally:
            conn.close()

    def _public_schema_sql(self) -> list[str]:
        """Statements that give the re-created ``public`` schema its current comment and owner.

        pg_dump leaves out the public schema's default owner and comment, so without these the
        restore would leave it owned by the restoring role with no comment. The owner is set only
        when the restoring role may hand it over (a member of that role), else it stays ours.
        """
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT quote_ident(pg_get_userbyid(n.nspowner)), quote_literal(obj_description(n.oid, "
                    "'pg_namespace')), pg_has_role(current_user, n.nspowner, 'MEMBER') "
                    "FROM pg_namespace n WHERE n.nspname = 'public'"
                )
                row = cur.fetchone()
        finally:
            conn.close()
        if row is None:
            return []
        owner, comment, may_hand_over = row
        lines = [f"COMMENT ON SCHEMA public IS {comment or 'NULL'};"]
        if may_hand_over:
            lines.append(f"ALTER SCHEMA public OWNER TO {owner};")
        return lines

    def _prelude(self, lock_timeout: float) -> str:
        schemas, tables = self._catalog()
        public_schema = self._public_schema_sql()  # read before the prelude drops it
        ms = self._lock_timeout_ms(lock_timeout)
        lines = [f"SET lock_timeout = {ms};", f"SET statement_timeout = {ms};"]
        if tables:
            lines.append(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE;")
        lines.append("SET statement_timeout = 0;")
        lines += [f"DROP SCHEMA {schema} CASCADE;" for schema in schemas]
        lines += ["CREATE SCHEMA public;", "GRANT USAGE ON SCHEMA public TO PUBLIC;", "SET lock_timeout = 0;"]
        lines += public_schema
        # The guard: COMMIT fails unless the epilogue (sent only after a complete pg_restore) ran.
        lines += [
            "CREATE TEMP TABLE mops_restore_guard (done boolean NOT NULL);",
            "CREATE FUNCTION pg_temp.mops_restore_guard_check() RETURNS trigger LANGUAGE plpgsql AS $g$ BEGIN "
            "IF NOT (SELECT done FROM pg_temp.mops_restore_guard) THEN "
            "RAISE EXCEPTION 'restore stream incomplete: rolled back'; END IF; RETURN NULL; END $g$;",
            "CREATE CONSTRAINT TRIGGER mops_restore_guard AFTER INSERT OR UPDATE ON pg_temp.mops_restore_guard "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pg_temp.mops_restore_guard_check();",
            "INSERT INTO pg_temp.mops_restore_guard VALUES (false);",
        ]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _epilogue(expected_tables: dict[str, int] | None) -> str:
        body = ["RESET search_path;"]
        if expected_tables:
            checks = []
            idents = []
            for table, rows in sorted(expected_tables.items()):
                ident = '"' + table.replace('"', '""') + '"'
                literal = "'" + table.replace("'", "''") + "'"
                idents.append(ident)
                checks.append(
                    f"SELECT count(*) INTO n FROM {ident}; IF n <> {int(rows)} THEN RAISE EXCEPTION "
                    f"'row count of % is %, the backup manifest says %', {literal}, n, {int(rows)}; END IF;"
                )
            body.append("DO $mops$ DECLARE n bigint; BEGIN " + " ".join(checks) + " END $mops$;")
            # pg_restore writes no planner statistics: the validation that follows (anti-joins and
            # aggregates over millions of rows) and the application's first queries would be planned
            # blind until autovacuum comes by. ANALYZE samples each restored table (a bounded cost at
            # any size) and commits with the data; the catalogs are left alone (not ours to analyze).
            body.append(f"ANALYZE {', '.join(idents)};")
        body.append("UPDATE pg_temp.mops_restore_guard SET done = true;")
        return "\n".join(body) + "\n"

    def _write_prelude(self, workdir: str, lock_timeout: float) -> Path:
        prelude = Path(workdir) / "prelude.sql"
        fd = os.open(prelude, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self._prelude(lock_timeout))
        return prelude

    def _restore_plain(self, dump: DumpFile, lock_timeout: float) -> None:
        """A plain SQL dump is psql's input as it is: prelude, the file, then the epilogue on stdin, all
        in one transaction (the file was verified complete first, so psql never sees half of it)."""
        with tempfile.TemporaryDirectory(prefix="mops-restore-") as workdir:
            prelude = self._write_prelude(workdir, lock_timeout)
            argv = [self._tool("psql"), "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
            argv += ["-f", str(prelude), "-f", str(dump.path), "-f", "-"]
            done = subprocess.run(
                argv, input=self._epilogue(dump.tables).encode(), capture_output=True, env=self.tool_env()
            )
        if done.returncode != 0:
            self._raise_psql_error(done.stderr.decode(errors="replace"))

    def restore(self, dump: DumpFile, progress: Progress | None = None, lock_timeout: float = 5.0) -> None:
        expected_tables = dump.tables
        self.connection.close()  # Django's session must not hold anything while the schema is replaced
        if dump.format == FORMAT_PLAIN:
            self._restore_plain(dump, lock_timeout)
            return
        total = len(expected_tables or {})
        with tempfile.TemporaryDirectory(prefix="mops-restore-") as workdir:
            prelude = self._write_prelude(workdir, lock_timeout)
            stream, processes = self._archive_reader(dump.path, dump.format)
            env = self.tool_env()
            hooks = ExitStack()
            try:
                hooks.enter_context(killed_on_interrupt(processes))
                argv = [self._tool("pg_restore"), "-f", "-", "--no-owner", "--no-acl", "--exit-on-error"]
                if progress:
                    argv.append("--verbose")
                restorer = subprocess.Popen(argv, stdin=stream, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
                processes.append(restorer)
                stream.close()
                psql_argv = [self._tool("psql"), "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1"]
                psql_argv += ["--single-transaction", "-f", str(prelude), "-f", "-"]
                applier = subprocess.Popen(
                    psql_argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
                )
                processes.append(applier)
                done_tables = [0]

                def on_restore_line(line: str) -> bool:
                    match = re.search(r'processing data for table "([^"]+)"', line)
                    if match and progress:
                        done_tables[0] += 1
                        progress(min(done_tables[0], total or done_tables[0]), total or done_tables[0], match.group(1))
                    return line.startswith("pg_restore: ") and "error" not in line and "warning" not in line

                restore_reader = StreamReader(restorer.stderr, on_restore_line)
                psql_reader = StreamReader(applier.stderr)
                restore_reader.start()
                psql_reader.start()
                pumped_ok = pump(restorer.stdout.fileno(), applier.stdin.fileno())
                restorer.stdout.close()
                restorer.wait()
                for helper in processes[:-2]:
                    helper.wait()
                restore_reader.join()
                helpers_ok = all(helper.returncode == 0 for helper in processes[:-2])
                if restorer.returncode != 0 or not helpers_ok or not pumped_ok:
                    applier.kill()  # never let psql reach COMMIT with a partial stream
                    applier.wait()
                    psql_reader.join()
                    if psql_reader.lines and any("ERROR:" in line for line in psql_reader.lines):
                        self._raise_psql_error(psql_reader.text)
                    reason = (
                        first_error(restore_reader.text, returncode_text("pg_restore", restorer.returncode))
                        if restorer.returncode != 0
                        else "decompressing the backup failed"
                    )
                    raise OperationFailed(f"restore failed, database {self._dbname()} unchanged: {reason}")
                with suppress(BrokenPipeError):
                    applier.stdin.write(self._epilogue(expected_tables).encode())
                with suppress(BrokenPipeError):
                    applier.stdin.close()
                applier.wait()
                psql_reader.join()
                if applier.returncode != 0:
                    self._raise_psql_error(psql_reader.text)
            finally:
                hooks.close()
                kill_all(processes)

    def _raise_psql_error(self, stderr: str) -> None:
        message = first_error(stderr, "psql failed")
        message = re.sub(r"^psql:[^:]*:\d+:\s*", "", message)
        if "lock timeout" in message or "statement timeout" in message:
            sessions = self.other_sessions()
            who = "; ".join(sessions) if sessions else "sessions that have since ended"
            raise OperationFailed(
                f"restore blocked by other sessions on {self._dbname()} ({who}); nothing was changed: "
                "stop them or retry with --terminate-connections"
            )
        raise OperationFailed(f"restore failed and was rolled back, database {self._dbname()} unchanged: {message}")

    def other_sessions(self) -> list[str]:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pid, usename, application_name, client_addr, state FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s "
                    "AND backend_type = 'client backend' ORDER BY pid",
                    [self._lock_backend_pid or 0],
                )
                return [
                    f"pid {pid} user {user} app {app or '-'} from {addr or 'local'} ({state})"
                    for pid, user, app, addr, state in cur.fetchall()
                ]
        finally:
            conn.close()

    def terminate_other_sessions(self) -> list[str]:
        self.connection.close()
        ended = self.other_sessions()
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND pid <> %s AND backend_type = 'client backend'",
                    [self._lock_backend_pid or 0],
                )
        finally:
            conn.close()
        return ended

    # --- other databases on this server ---
    def scratch_settings(self, label: str) -> dict[str, Any]:
        settings = {**self.settings_dict, "OPTIONS": dict(self.settings_dict.get("OPTIONS") or {})}
        suffix = f"_{label}"
        settings["NAME"] = self._dbname()[: 63 - len(suffix)] + suffix
        return settings

    def _maintenance(self) -> psycopg2.extensions.connection:
        return self._connect(dbname="postgres")

    def database_exists(self) -> bool:
        conn = self._maintenance()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self._dbname()])
                return cur.fetchone() is not None
        finally:
            conn.close()

    def create_database(self) -> None:
        conn = self._maintenance()
        try:
            with conn.cursor() as cur:
                cur.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(self._dbname())))
        except psycopg2.Error as exc:
            raise BadInput(f"cannot create database {self._dbname()}: {first_line(exc)}") from None
        finally:
            conn.close()

    def drop_database(self) -> None:
        self.connection.close()
        conn = self._maintenance()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(self._dbname()))
                )
        finally:
            conn.close()

    # --- applying migrations ---
    def set_lock_timeout(self, seconds: float) -> None:
        """lock_timeout for every statement of the current transaction (RunPython/RunSQL too)."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{self._lock_timeout_ms(seconds)}ms"])

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return any(getattr(e, "pgcode", None) == "55P03" for e in causes(exc))

    def is_connection_lost(self, exc: BaseException) -> bool:
        for cause in causes(exc):
            code = getattr(cause, "pgcode", None) or ""
            if code.startswith("57P0") or code.startswith("08") or isinstance(cause, psycopg2.InterfaceError):
                return True
            if isinstance(cause, psycopg2.OperationalError) and not code:
                return True  # libpq's own errors carry no SQLSTATE: the server or the network is gone
        raw = self.connection.connection
        return raw is not None and bool(raw.closed)

    def is_cancelled(self, exc: BaseException) -> bool:
        return any(getattr(e, "pgcode", None) == "57014" for e in causes(exc))

    def cancel_running_statement(self) -> None:
        raw = self.connection.connection
        if raw is not None and not raw.closed:
            raw.cancel()

    @contextmanager
    def hardened_session(self, lock_timeout: float) -> Iterator[None]:
        options = self.settings_dict.setdefault("OPTIONS", {})
        saved = dict(options)
        bound = f"-c lock_timeout={self._lock_timeout_ms(lock_timeout)}"
        options.update(_KEEPALIVES)
        options["options"] = f"{options.get('options', '')} {bound}".strip()
        self.connection.close()  # reconnect with the options above
        try:
            yield
        finally:
            options.clear()
            options.update(saved)
            with suppress(Exception):  # a dead connection has nothing left to close
                self.connection.close()

    def lock_tables(self, tables: list[str]) -> None:
        existing = sorted(set(tables) & set(self.table_names()))
        if existing:
            names = ", ".join(self.connection.ops.quote_name(name) for name in existing)
            with self.connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")

    def own_row_changes(self) -> dict[str, int] | None:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT relname, n_tup_ins - n_tup_del FROM pg_stat_xact_user_tables "
                "WHERE pg_table_is_visible(relid) AND (n_tup_ins <> 0 OR n_tup_del <> 0)"
            )
            return {name: int(delta) for name, delta in cursor.fetchall()}

    def write_counters(self) -> dict[str, int] | None:
        with self.connection.cursor() as cursor:
            return _write_counters(cursor)

    def exclusively_locked_tables(self) -> list[str]:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' "
                "AND l.mode = 'AccessExclusiveLock' AND c.relkind IN ('r', 'p')"
            )
            return sorted(row[0] for row in cursor.fetchall())

    def database_size(self) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            return int(cursor.fetchone()[0])

    def table_rewrite(self, table: str) -> TableRewrite | None:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.reltuples::bigint, pg_table_size(c.oid), pg_indexes_size(c.oid),"
                " pg_size_bytes(current_setting('shared_buffers')), pg_size_bytes(current_setting('max_wal_size')),"
                " current_setting('checkpoint_completion_target')::float"
                " FROM pg_class c WHERE c.oid = to_regclass(quote_ident(%s))",
                [table],
            )
            row = cursor.fetchone()
            if row is None:
                return None
            rows, *sizes = (int(value) for value in row[:5])
            if rows < 0:  # never vacuumed nor analyzed: no estimate, and such a table is small to count
                rows = count_rows(cursor, [table])[table]
        return TableRewrite(table, rows, *sizes, checkpoint_completion_target=float(row[5]))

    def missing_privileges(self) -> list[str]:
        """What the role lacks to back up and migrate: read every table/sequence, create and alter."""
        problems = []
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, c.relkind, has_table_privilege(c.oid, 'SELECT'),"
                " pg_has_role(c.relowner, 'USAGE') FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'S')"
            )
            for name, kind, can_read, owns in cursor.fetchall():
                what = "sequence" if kind == "S" else "table"
                if not can_read:
                    problems.append(f"SELECT on {what} {name}")
                if not owns and kind != "S":
                    problems.append(f"ownership of table {name} (needed to ALTER it)")
            cursor.execute("SELECT current_schema(), has_schema_privilege(current_schema(), 'CREATE')")
            schema, can_create = cursor.fetchone()
            if not can_create:
                problems.append(f"CREATE on schema {schema}")
        return problems

    def check_online_ready(self) -> None:
        """Online steps rely on catalog-only ADD COLUMN with a default (11+) and TID range scans (14+)."""
        if self._server_major() < 14:
            raise BadInput("safe_migrate --online needs PostgreSQL 14 or newer")

    def is_transient(self, exc: BaseException) -> bool:
        # 55P03 lock_not_available, 40P01 deadlock_detected, 40001 serialization_failure
        return any(getattr(e, "pgcode", None) in ("55P03", "40P01", "40001") for e in causes(exc))

    def plan_for_small_batches(self) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")

    def replica_lag_seconds(self) -> float:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT COALESCE(MAX(EXTRACT(EPOCH FROM GREATEST(replay_lag, write_lag, flush_lag))), 0) "
                "FROM pg_stat_replication"
            )
            return float(cursor.fetchone()[0])

    def index_state(self, name: str) -> str | None:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT i.indisvalid AND i.indisready FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = %s AND pg_table_is_visible(c.oid)",
                [name],
            )
            row = cursor.fetchone()
        return None if row is None else ("valid" if row[0] else "invalid")

    def check_ready_for_migration(self, backup_dir: Path) -> None:
        self.check_dump_tools()
        missing = self.missing_privileges()
        if missing:
            raise BadInput("the database role lacks privileges: " + ", ".join(missing))
        check_free_space(Path(backup_dir), 2 * self.database_size())

    # --- the migration lock ---
    @contextmanager
    def migration_lock(self, owner: LockOwner) -> Iterator[LockOwner]:
        since = datetime.fromisoformat(owner.since).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        app = f"{LOCK_APP_PREFIX} pid={owner.pid} since={since} host={owner.host}"[:63]
        conn = self._connect(application_name=app)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_lock(%s), pg_backend_pid()", [LOCK_KEY])
                acquired, backend_pid = cur.fetchone()
                if not acquired:
                    holder = self._lock_holder(cur)
                    raise LockHeld(
                        f"another safe_migrate/restore_db holds the migration lock on {self._dbname()}: "
                        f"{holder}; nothing was changed"
                    )
            self._lock_backend_pid = backend_pid
            try:
                yield owner
            finally:
                self._lock_backend_pid = None
                with suppress(psycopg2.Error), conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
        finally:
            conn.close()

    @staticmethod
    def _lock_holder(cur) -> str:
        cur.execute(
            "SELECT a.application_name, a.pid, a.backend_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = %s AND l.objid = %s AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF],
        )
        row = cur.fetchone()
        if not row:
            return "a session that has just released it (retry)"
        app, backend_pid, started = row
        fields = dict(re.findall(r"(pid|since|host)=(\S+)", app or ""))
        if fields.get("pid"):
            return f"pid {fields['pid']} on {fields.get('host', '?')} since {fields.get('since', '?')}"
        return f"server backend {backend_pid} ({app or 'unknown application'}) since {started.isoformat()}"


def _write_counters(cursor: Any) -> dict[str, int]:
    """The cumulative statistics' rows inserted, updated and deleted per table. A session's writes show
    once it reports them (at the latest about a second after its commit); pg_stat_reset(), a crash or
    a recreated table starts them afresh."""
    cursor.execute("SELECT pg_stat_clear_snapshot()")  # fresh numbers, not this transaction's cache
    cursor.execute(
        "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE pg_table_is_visible(relid)"
    )
    return {name: int(total) for name, total in cursor.fetchall()}
