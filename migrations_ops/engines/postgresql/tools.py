"""The client tools (pg_dump, pg_restore, psql, zstd): found on PATH, versions, environment, start/run.

Passwords reach the client tools through PGPASSWORD in their environment, never through argv: the
environment (:func:`tool_env`) is made from the same libpq parameters as the engine's own
connections, with every inherited PG* variable removed first.

Every child process of the PostgreSQL engine starts in :func:`start`; :func:`run` is its one-shot
form (output captured, killed at once on an interrupt, reaped on every way out). Pipelines (pg_dump |
zstd, zstd -d | pg_restore | psql) start each stage with :func:`start` and join them with the
plumbing of ``engines/processes.py`` (stderr readers, pump, kill_all).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import IO, Any

from migrations_ops.engines.processes import finish, returncode_text
from migrations_ops.errors import BadInput

# libpq connection keywords Django users put in OPTIONS, and the environment variables of the tools.
OPTION_ENV = {
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

# A tool's stdin, stdout: a file, a pipe of another tool, or one of subprocess's constants.
Stream = IO[bytes] | int | None


def major(version: str) -> int:
    """The major number of a version string ('16.4', 'pg_dump (PostgreSQL) 17.0'); 0 when there is none."""
    match = re.search(r"(\d+)(?:\.(\d+))?", version or "")
    if not match:
        return 0
    return int(match.group(1))


def find(name: str) -> str:
    """The path of client tool ``name``; BadInput when it is not on PATH."""
    path = shutil.which(name)
    if not path:
        raise BadInput(f"{name} not found on PATH: install the PostgreSQL client tools (version >= the server's)")
    return path


def available(name: str) -> bool:
    """Whether ``name`` is on PATH (zstd is optional: a dump without it is compressed by pg_dump)."""
    return bool(shutil.which(name))


def version(name: str) -> str:
    """The version ``name --version`` reports; BadInput when it cannot tell."""
    done = run(name, ["--version"], timeout=30)
    match = re.search(r"(\d+(?:\.\d+)*)", done.stdout.decode(errors="replace"))
    if done.returncode != 0 or not match:
        raise BadInput(f"{name} --version failed ({returncode_text(name, done.returncode)}): cannot check its version")
    return match.group(1)


def tool_env(params: dict[str, Any]) -> dict[str, str]:
    """Environment for pg_dump/pg_restore/psql connecting with the libpq keyword arguments ``params``
    (``connect_params``): inherited PG* variables removed, ours set."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    mapping = {"dbname": "PGDATABASE", "user": "PGUSER", "password": "PGPASSWORD", "host": "PGHOST"}
    mapping["port"] = "PGPORT"
    mapping.update(OPTION_ENV)
    for key, value in params.items():
        env[mapping[key]] = str(value)
    env["PGAPPNAME"] = "migrations_ops"
    return env


def start(
    name: str,
    args: list[str],
    *,
    stdin: Stream = None,
    stdout: Stream = subprocess.PIPE,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start client tool ``name`` (found on PATH, else BadInput) with ``args``: its stderr is a pipe for
    the caller to read (a StreamReader), ``env`` None lets it inherit ours (a tool that connects to the
    database gets ``tool_env``). The caller kills and reaps it on every way out (``kill_all``)."""
    return subprocess.Popen([find(name), *args], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env)


def run(
    name: str,
    args: list[str],
    *,
    timeout: float | None,
    stdin: Stream = None,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run client tool ``name`` to its end, as ``subprocess.run(capture_output=True)`` does, except that
    an interrupt ends it at once; ``input`` is written to its stdin."""
    process = start(name, args, stdin=subprocess.PIPE if input is not None else stdin, env=env)
    return finish(process, input=input, timeout=timeout)
