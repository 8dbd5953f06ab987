"""Restore: replace the whole content of the database with a dump, all or nothing.

The application schemas are dropped and recreated and `pg_restore -f -` output is applied with
`psql --single-transaction -v ON_ERROR_STOP=1`; a deferred guard trigger makes the transaction roll
back unless the whole stream (and the row-count check that ends it) arrived, so a restore killed or
failing at any point leaves the previous content.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from contextlib import ExitStack, suppress
from pathlib import Path

from migrations_ops.engines.base import DumpFile, Progress
from migrations_ops.engines.postgresql import tools
from migrations_ops.engines.postgresql.dumps import FORMAT_PLAIN, FORMAT_ZSTD, SUFFIXES, archive_reader
from migrations_ops.engines.postgresql.introspection import SYSTEM_SCHEMA_FILTER
from migrations_ops.engines.postgresql.sessions import Connections, lock_timeout_ms
from migrations_ops.engines.processes import (
    StreamReader,
    first_error,
    kill_all,
    killed_on_interrupt,
    pump,
    returncode_text,
)
from migrations_ops.errors import BadInput, OperationFailed

PSQL_ARGS = ["-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--single-transaction"]


class Restore(Connections):
    """The restore tools' check and the restore itself: prelude, the dump, epilogue, in one transaction."""

    def check_restore_tools(self, backup_format: str, backup_tool_version: str) -> None:
        version = tools.version("pg_restore")
        tools.find("psql")
        needed = max(tools.major(self.server_version()), tools.major(backup_tool_version))
        if tools.major(version) < needed:
            raise BadInput(f"pg_restore {version} is too old for this server/backup: install version {needed} or newer")
        if backup_format == FORMAT_ZSTD and not tools.available("zstd"):
            raise BadInput("this backup is zstd-compressed and the zstd binary is not on PATH: install zstd")
        if backup_format not in SUFFIXES:
            raise BadInput(f"unknown PostgreSQL backup format {backup_format!r}")

    def _catalog(self) -> tuple[list[str], list[str]]:
        """Non-system schemas and their tables (quoted, qualified) as they are now."""
        with self.side_connection() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT quote_ident(n.nspname) FROM pg_namespace n WHERE {SYSTEM_SCHEMA_FILTER}")
            schemas = sorted(row[0] for row in cur.fetchall())
            cur.execute(
                "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND "
                + SYSTEM_SCHEMA_FILTER
            )
            tables = sorted(row[0] for row in cur.fetchall())
        return schemas, tables

    def _public_schema_sql(self) -> list[str]:
        """Statements that give the re-created ``public`` schema its current comment and owner.

        pg_dump leaves out the public schema's default owner and comment, so without these the
        restore would leave it owned by the restoring role with no comment. The owner is set only
        when the restoring role may hand it over (a member of that role), else it stays ours.
        """
        with self.side_connection() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT quote_ident(pg_get_userbyid(n.nspowner)), quote_literal(obj_description(n.oid, "
                "'pg_namespace')), pg_has_role(current_user, n.nspowner, 'MEMBER') "
                "FROM pg_namespace n WHERE n.nspname = 'public'"
            )
            row = cur.fetchone()
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
        ms = lock_timeout_ms(lock_timeout)
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
            args = [*PSQL_ARGS, "-f", str(prelude), "-f", str(dump.path), "-f", "-"]
            done = tools.run(
                "psql", args, input=self._epilogue(dump.tables).encode(), env=self.tool_env(), timeout=None
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
            stream, processes = archive_reader(dump.path, dump.format)
            env = self.tool_env()
            hooks = ExitStack()
            try:
                hooks.enter_context(killed_on_interrupt(processes))
                args = ["-f", "-", "--no-owner", "--no-acl", "--exit-on-error"]
                if progress:
                    args.append("--verbose")
                restorer = tools.start("pg_restore", args, stdin=stream, env=env)
                processes.append(restorer)
                stream.close()
                psql_args = [*PSQL_ARGS, "-f", str(prelude), "-f", "-"]
                applier = tools.start("psql", psql_args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
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
