"""A throw-away PostgreSQL cluster that archives its WAL into a real pgBackRest repository.

Not a test module: the harness of tests/test_pgbackrest_cluster.py (and of whatever test needs a
server it may stop, restore and break). Everything lives in one temporary directory::

    <tmp>/data              the cluster (initdb), port from a free 127.0.0.1 port
    <tmp>/sock              unix_socket_directories
    <tmp>/pgbackrest.conf   [global] repo1-path=<tmp>/repo ..., [<stanza>] pg1-path/pg1-port/pg1-socket-path
    <tmp>/repo, log, lock, spool
    <tmp>/restore-*         data directories of restored copies (`restore_copy`)

    with ArchivingCluster() as cluster:      # initdb + start
        cluster.stanza_create()
        cluster.backup()                     # full
        cluster.psql("SELECT pg_create_restore_point('mo_before_x')")

`__exit__` always stops every server it started (pg_ctl stop -m immediate, then SIGKILL of the
postmaster and its children named by postmaster.pid) and removes the directory.

Root: PostgreSQL refuses to run as root and pgBackRest must write the repository as the user the
server's archive_command runs as, so when `id -u` is 0 initdb, pg_ctl, postgres and pgbackrest run as
the `postgres` OS user (`runuser -u postgres --`, as bench/bench_online.py's start_standby does) and
the temporary directory is created in /tmp (pytest's tmp_path is 0700 root) and owned by postgres.

Standalone on purpose (no Django, no tests.helpers import), so a bench script can use it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PGBACKREST = shutil.which("pgbackrest")
IS_ROOT = os.geteuid() == 0
AS_POSTGRES = ["runuser", "-u", "postgres", "--"] if IS_ROOT else []


def missing_tools() -> str | None:
    """Why the harness cannot run here (None when it can): pgbackrest, initdb, the postgres user."""
    if not PGBACKREST:
        return "pgbackrest is not installed (apt-get install pgbackrest)"
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).exists():
            return f"{PG_BIN / tool} not found (set PG_BIN)"
    if not shutil.which("psql"):
        return "psql is not on PATH"
    if IS_ROOT:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` OS user to run the server as"
    return None


def compression_type() -> str:
    """lz4 when this pgBackRest build has it, else none. Probed with an archive-push of a missing file: the
    options are validated first (an unknown or unavailable type fails there, [032]), then the push fails
    on the missing pg_control ([055])."""
    with tempfile.TemporaryDirectory(prefix="pgbr-probe-") as scratch:
        probe = subprocess.run(
            [PGBACKREST or "pgbackrest", "--compress-type=lz4", "--stanza=probe", f"--pg1-path={scratch}/pg"]
            + [f"--repo1-path={scratch}/repo", f"--lock-path={scratch}", "--log-level-file=off"]
            + ["--log-level-console=off", "--log-level-stderr=error", "archive-push", f"{scratch}/pg/{'0' * 23}1"],
            capture_output=True,
            text=True,
        )
    return "none" if "compress-type" in probe.stderr else "lz4"


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (as tests.helpers.free_port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _chown_postgres(path: Path) -> None:
    if IS_ROOT:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _mkdir(path: Path) -> Path:
    path.mkdir(mode=0o700, exist_ok=True)
    _chown_postgres(path)
    return path


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    _chown_postgres(path)


class RecoveryFailed(RuntimeError):
    """A restored server shut down before it was promoted (recovery did not reach its target)."""

    def __init__(self, fatal: str, log_tail: str) -> None:
        super().__init__(f"{fatal}\n--- server log tail:\n{log_tail}")
        self.fatal = fatal


class Server:
    """One postgres server: a data directory, a port, a socket directory. Stopped by its cluster's __exit__."""

    def __init__(self, datadir: Path, port: int, socket_dir: Path) -> None:
        self.datadir = datadir
        self.port = port
        self.socket_dir = socket_dir
        self.logfile = datadir.parent / f"{datadir.name}.log"
        self._log_offset = 0

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: int = 60) -> None:
        """pg_ctl start -w; raises (with the server log's tail) when it does not come up: RecoveryFailed when
        the log says FATAL (e.g. a restore whose WAL is missing before the backup's consistency point)."""
        self._log_offset = self.logfile.stat().st_size if self.logfile.exists() else 0
        result = subprocess.run(
            [*AS_POSTGRES, str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile)]
            + ["-w", "-t", str(timeout), "-o", f"-p {self.port} -k {self.socket_dir}", "start"],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            if self.fatal_line():
                raise RecoveryFailed(self.fatal_line(), self.log_tail())
            raise RuntimeError(
                f"pg_ctl start failed ({result.returncode}): {result.stdout}{result.stderr}\n"
                f"--- server log tail:\n{self.log_tail()}"
            )

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop -m ``mode`` (fast waits for the shutdown checkpoint; immediate does not)."""
        subprocess.run(
            [*AS_POSTGRES, str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"],
            capture_output=True,
            text=True,
            check=True,
        )

    def running(self) -> bool:
        return self._postmaster_pid() is not None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def psql(self, sql: str, database: str = "postgres", check: bool = True) -> str:
        """Run ``sql`` (ON_ERROR_STOP, unaligned, tuples only) over TCP; stdout without the final newline."""
        result = subprocess.run(
            ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port)]
            + ["-U", "postgres", "-d", database, "-c", sql],
            capture_output=True,
            text=True,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}) on {sql!r}: {result.stderr.strip()}")
        return result.stdout.rstrip("\n")

    def wait_until_primary(self, timeout: float = 60) -> float:
        """Wait until pg_is_in_recovery() is false (a restore promoted); returns the seconds waited.

        Raises RecoveryFailed as soon as the server is gone: `pg_ctl start -w` returns 0 once a restored
        cluster is consistent ("ready to accept read-only connections"), before recovery reaches its
        target, so a target never reached (WAL gap, unknown restore point name, backup newer than the
        point) shows only as the server shutting itself down afterwards."""
        started = time.monotonic()
        while True:
            answer = self.psql("SELECT pg_is_in_recovery()", check=False)
            if answer == "f":
                return time.monotonic() - started
            if answer != "t" and not self.running():
                raise RecoveryFailed(self.fatal_line() or "server exited", self.log_tail())
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"still in recovery after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def start_until_promoted(self, timeout: float = 60) -> float:
        """Start a restored server and wait until recovery promoted it; returns the seconds it took.
        RecoveryFailed when it shut down instead: whether `pg_ctl start -w` itself fails or the server dies
        just after it returned 0 is a race (see wait_until_primary), so callers need not tell the two apart."""
        started = time.monotonic()
        self.start()
        self.wait_until_primary(timeout)
        return time.monotonic() - started

    def fatal_line(self) -> str | None:
        """The first FATAL/PANIC message the server logged since the last start() (without the timestamp)."""
        try:
            with open(self.logfile, "rb") as log:
                log.seek(self._log_offset)
                lines = log.read().decode(errors="replace").splitlines()
        except OSError:
            return None
        for line in lines:
            for level in ("FATAL:", "PANIC:"):
                if level in line:
                    return line[line.index(level) :]
        return None

    # ------------------------------------------------------------ cleanup

    def _postmaster_pid(self) -> int | None:
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def force_stop(self) -> None:
        """Stop whatever runs on this data directory: pg_ctl stop -m immediate, then SIGKILL the postmaster
        named by postmaster.pid and its children. Never raises."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        subprocess.run(
            [*AS_POSTGRES, str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "-t", "10"]
            + ["stop"],
            capture_output=True,
        )
        pid = self._postmaster_pid()
        if pid is None:
            return
        for victim in [pid, *_children(pid)]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(victim, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


class ArchivingCluster:
    """A temporary cluster archiving into a temporary pgBackRest repository (see the module docstring)."""

    def __init__(self, stanza: str = "mo", *, start: bool = True, extra_conf: str = "") -> None:
        self.stanza = stanza
        self._autostart = start
        self.extra_conf = extra_conf
        self.servers: list[Server] = []
        self.root: Path | None = None

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> ArchivingCluster:
        try:
            self.setup()
            if self._autostart:
                self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def setup(self) -> None:
        """Temporary directory, initdb, postgresql.conf, pg_hba.conf, pgbackrest.conf."""
        why = missing_tools()
        if why:
            raise RuntimeError(why)
        # /tmp rather than pytest's tmp_path: the postgres user must reach it when we are root.
        self.root = Path(tempfile.mkdtemp(prefix="pgbr-"))
        _chown_postgres(self.root)
        self.socket_dir = _mkdir(self.root / "sock")
        for name in ("repo", "log", "lock", "spool"):
            _mkdir(self.root / name)
        self.config = self.root / "pgbackrest.conf"
        self.repo = self.root / "repo"
        server = Server(self.root / "data", _free_port(), self.socket_dir)
        self.servers.append(server)
        self.server = server
        subprocess.run(
            [*AS_POSTGRES, str(PG_BIN / "initdb"), "-D", str(server.datadir), "-U", "postgres"]
            + ["--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"],
            capture_output=True,
            text=True,
            check=True,
        )
        archive_command = f"pgbackrest --config={self.config} --stanza={self.stanza} archive-push %p"
        with open(server.datadir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# tests/pgbackrest_cluster.py\n"
                f"port = {server.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "wal_level = replica\n"
                "max_wal_senders = 3\n"
                "archive_mode = on\n"
                f"archive_command = '{archive_command}'\n"
                "shared_buffers = 16MB\n"
                "max_connections = 20\n"
                "synchronous_commit = off\n"
                "min_wal_size = 32MB\n"
                "max_wal_size = 128MB\n"
                "logging_collector = off\n"
                f"{self.extra_conf}\n"
            )
        _write(
            server.datadir / "pg_hba.conf",
            "local all postgres trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "local replication postgres trust\n"
            "host replication postgres 127.0.0.1/32 trust\n",
        )
        self.compress_type = compression_type()
        _write(
            self.config,
            "[global]\n"
            f"repo1-path={self.repo}\n"
            "repo1-retention-full=2\n"
            f"log-path={self.root / 'log'}\n"
            f"lock-path={self.root / 'lock'}\n"
            f"spool-path={self.root / 'spool'}\n"
            "log-level-file=detail\n"
            "start-fast=y\n"
            "archive-timeout=30\n"
            f"compress-type={self.compress_type}\n"
            "\n"
            f"[{self.stanza}]\n"
            f"pg1-path={server.datadir}\n"
            f"pg1-port={server.port}\n"
            f"pg1-socket-path={self.socket_dir}\n"
            "pg1-user=postgres\n",
        )

    def cleanup(self) -> None:
        """Stop every server (force if need be) and remove the directory. Never raises."""
        for server in self.servers:
            with contextlib.suppress(Exception):  # cleanup goes on
                server.force_stop()
        if self.root is not None and os.environ.get("PGBACKREST_HARNESS_KEEP") != "1":
            shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------ the primary server

    @property
    def datadir(self) -> Path:
        return self.server.datadir

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()

    def stop(self, mode: str = "fast") -> None:
        self.server.stop(mode)

    def psql(self, sql: str, database: str = "postgres", check: bool = True) -> str:
        return self.server.psql(sql, database, check)

    def start_until_promoted(self, timeout: float = 60) -> float:
        return self.server.start_until_promoted(timeout)

    def create_database(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"')

    # ------------------------------------------------------------ pgBackRest

    def pgbackrest(self, *args: str, check: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
        """`pgbackrest --config=<tmp>/pgbackrest.conf --stanza=<stanza> <args>` (as postgres when root).
        Options given in ``args`` before the command override the config (e.g. --stanza=nope, --pg1-path=...);
        a later --stanza wins over ours."""
        command = [*AS_POSTGRES, PGBACKREST or "pgbackrest", f"--config={self.config}", f"--stanza={self.stanza}"]
        # pgBackRest rejects an option given twice on the command line: drop our default when overridden.
        if any(a.startswith("--stanza=") for a in args):
            command.remove(f"--stanza={self.stanza}")
        result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"pgbackrest {' '.join(args)} failed ({result.returncode}): {result.stdout}{result.stderr}"
            )
        return result

    def stanza_create(self) -> subprocess.CompletedProcess:
        return self.pgbackrest("stanza-create", check=True)

    def backup(self, type: str = "full") -> subprocess.CompletedProcess:
        return self.pgbackrest(f"--type={type}", "backup", check=True)

    def info(self) -> list[dict]:
        """`pgbackrest info --output=json`, parsed (one entry per stanza)."""
        return json.loads(self.pgbackrest("--output=json", "info", check=True).stdout)

    def restore_point(self, name: str) -> str:
        """pg_create_restore_point(name); returns its LSN."""
        return self.psql(f"SELECT pg_create_restore_point('{name}')")

    def switch_and_wait_archived(self, timeout: float = 60) -> str:
        """pg_switch_wal() and wait until the archiver has pushed the segment it closed (pg_stat_archiver);
        returns that segment's file name."""
        segment = self.psql("SELECT pg_walfile_name(pg_switch_wal())")
        self.wait_archived(segment, timeout)
        return segment

    def wait_archived(self, segment: str, timeout: float = 60) -> None:
        """Wait until pg_stat_archiver.last_archived_wal >= ``segment`` (same timeline: names sort by position)."""
        started = time.monotonic()
        while True:
            row = self.psql(
                "SELECT coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '') "
                "FROM pg_stat_archiver"
            )
            last, failed_count, last_failed = row.split("|")
            if last[:24] >= segment and last[:8] == segment[:8]:
                return
            if time.monotonic() - started > timeout:
                raise TimeoutError(
                    f"{segment} not archived after {timeout}s: last archived {last!r}, "
                    f"{failed_count} failures (last {last_failed!r})\n{self.server.log_tail()}"
                )
            time.sleep(0.05)

    def backup_labels(self) -> list[str]:
        """The labels of the stanza's backups, oldest first."""
        return [backup["label"] for backup in self.info()[0]["backup"]]

    def archived_wal(self) -> dict[str, Path]:
        """WAL segment name -> its file in the repository (archive/<stanza>/<db-id>/<timeline+log>/...)."""
        found = {}
        for path in (self.repo / "archive" / self.stanza).glob("*-*/*/*"):
            name = path.name.split("-", 1)[0]
            if len(name) == 24:
                found[name] = path
        return found

    def restore_copy(self, *args: str, name: str = "restore", port: int | None = None) -> Server:
        """`pgbackrest restore` into a new data directory <tmp>/<name> with archiving off
        (--archive-mode=off: a copy must not push WAL into the original's repository) and its own port;
        ``args`` are the restore's other options (--type=name --target=... ...). The copy is not started."""
        datadir = _mkdir(self.root / name)
        server = Server(datadir, port or _free_port(), self.socket_dir)
        self.servers.append(server)
        self.pgbackrest(f"--pg1-path={datadir}", "--archive-mode=off", *args, "restore", check=True)
        return server
