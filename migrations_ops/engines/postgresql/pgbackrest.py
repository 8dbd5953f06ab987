"""pgBackRest, the physical safety point: its command, what it says, and what its failures mean.

Every pgBackRest call goes through :meth:`PgBackRest.run` (the command prefix of PGBACKREST_COMMAND,
``--config`` and ``--stanza``, killed at once on an interrupt). pgBackRest 2.45 answers some failures
with exit 0 (``info`` and ``verify`` of a missing stanza or repository), so the JSON of ``info`` is
read for its ``status.code``, and the archive's continuity is checked here, segment by segment,
because ``verify`` does not report a gap in the WAL (tests/test_pgbackrest_cluster.py shows each).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from typing import Any

from migrations_ops.engines.postgresql import tools
from migrations_ops.engines.processes import first_error
from migrations_ops.errors import BadInput, OperationFailed

SEGMENT = re.compile(r"^[0-9A-F]{24}$")
SEGMENTS_PER_XLOGID = 0x100  # 16 MB segments: 256 per "log id" (the middle 8 hex digits)


@dataclass(frozen=True)
class Repository:
    """Where pgBackRest keeps a stanza: the settings that name it."""

    stanza: str
    config: str | None  # --config; None: pgBackRest's own default (/etc/pgbackrest/pgbackrest.conf)
    command: str  # how to run it, e.g. "runuser -u postgres -- pgbackrest"; the repository's owner must run it

    def describe(self) -> str:
        return f"stanza {self.stanza}" + (f" ({self.config})" if self.config else "")


class PgBackRest:
    """One stanza of one repository, as the safety point and the restore use it."""

    def __init__(self, repository: Repository, timeout: float = 3600) -> None:
        self.repository = repository
        self.timeout = timeout

    def argv(self, *args: str) -> list[str]:
        prefix = shlex.split(self.repository.command)
        if not prefix:
            raise BadInput("PGBACKREST_COMMAND is empty: give the pgbackrest command (e.g. pgbackrest)")
        options = [f"--stanza={self.repository.stanza}"]
        if self.repository.config:
            options.insert(0, f"--config={self.repository.config}")
        return [*prefix, *options, *args]

    def run(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        argv = self.argv(*args)
        done = tools.run(argv[0], argv[1:], timeout=timeout or self.timeout)
        return subprocess.CompletedProcess(
            done.args, done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        )

    def checked(self, *args: str, what: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        """``run``, and its failure as the operator's one line (:func:`failure`)."""
        done = self.run(*args, timeout=timeout)
        if done.returncode != 0:
            raise failure(self.repository, what, done.returncode, done.stderr)
        return done

    def version(self) -> str:
        """pgBackRest's version ("2.45")."""
        prefix = shlex.split(self.repository.command)
        done = tools.run(prefix[0], [*prefix[1:], "version"], timeout=60)
        words = done.stdout.decode(errors="replace").split()
        return words[-1] if done.returncode == 0 and words else "unknown"

    def info(self) -> dict[str, Any]:
        """The stanza as ``info --output=json`` describes it; BadInput when the repository has no such stanza."""
        done = self.checked("--output=json", "info", what="reading the repository", timeout=120)
        try:
            stanzas = json.loads(done.stdout or "[]")
        except json.JSONDecodeError:
            raise OperationFailed(f"pgBackRest info printed no JSON for {self.repository.describe()}") from None
        stanza = next((s for s in stanzas if s.get("name") == self.repository.stanza), None)
        status = (stanza or {}).get("status", {})
        if stanza is None or status.get("code") not in (0, None):
            message = status.get("message") or "no such stanza"
            raise BadInput(
                f"pgBackRest has no usable {self.repository.describe()}: {message} (check repo1-path in its "
                "configuration and that stanza-create ran); nothing was changed"
            )
        return stanza

    def backups(self) -> list[dict[str, Any]]:
        """The stanza's backups, oldest first, that pgBackRest calls complete (no error), each with the
        id of its WAL archive (``archive_id``, e.g. "15-1": the archive of its database)."""
        stanza = self.info()
        archives = {archive["database"]["id"]: archive["id"] for archive in stanza.get("archive", [])}
        return [
            {**backup, "archive_id": archives.get(backup.get("database", {}).get("id"), "")}
            for backup in stanza.get("backup", [])
            if not backup.get("error")
        ]

    def backup(self, backup_type: str) -> dict[str, Any]:
        """Take a backup (full, diff or incr) and return it as ``info`` lists it."""
        self.checked(f"--type={backup_type}", "backup", what=f"taking a {backup_type} backup")
        return self.backups()[-1]

    def archived_segments(self, archive_id: str, timeline: str) -> set[str]:
        """The WAL segment names of ``timeline`` in the repository's archive (``repo-ls``)."""
        found: set[str] = set()
        path = f"archive/{self.repository.stanza}/{archive_id}"
        listing = self.checked("--output=json", "--recurse", "repo-ls", path, what="listing the archive", timeout=300)
        for name in json.loads(listing.stdout or "{}"):
            file = name.rsplit("/", 1)[-1]  # <segment>-<sha1>[.lz4|.gz...]; not <segment>.<offset>.backup
            segment = file[:24]
            if SEGMENT.match(segment) and file[24:25] in ("-", "") and segment.startswith(timeline):
                found.add(segment)
        return found


def failure(repository: Repository, what: str, code: int, stderr: str) -> BadInput | OperationFailed:
    """pgBackRest's exit code and error line as the operator's one line: bad input (nothing changed)
    for what the configuration or the server's state explains, a failure otherwise."""
    line = first_error(stderr, f"pgbackrest exited {code}")
    where = repository.describe()
    if code == 37 or "requires option: pg1-path" in stderr:
        return BadInput(f"pgBackRest knows no {where} (no pg1-path for it): {line}; nothing was changed")
    if code == 55 or "unable to load info file" in stderr:
        return BadInput(
            f"the pgBackRest repository has no {where} (a wrong repo1-path, or stanza-create never ran): "
            f"{line}; nothing was changed"
        )
    if code in (27, 56) or "unable to find primary cluster" in stderr or "no database found" in stderr:
        return BadInput(f"pgBackRest cannot reach the database server of {where}: {line}; nothing was changed")
    if code == 38:
        return BadInput(f"pgBackRest refuses to restore while PostgreSQL is running ({where}): {line}")
    if code == 41 or "Permission denied" in stderr:
        return BadInput(
            f"pgBackRest was refused access to its files ({where}): {line}; run it as the repository's owner "
            "(PGBACKREST_COMMAND, e.g. 'runuser -u postgres -- pgbackrest'); nothing was changed"
        )
    return OperationFailed(f"pgBackRest failed {what} ({where}, exit {code}): {line}")


def segment_after(segment: str) -> str:
    """The WAL segment that follows ``segment`` (16 MB segments)."""
    timeline, log, seg = int(segment[:8], 16), int(segment[8:16], 16), int(segment[16:], 16) + 1
    if seg >= SEGMENTS_PER_XLOGID:
        log, seg = log + 1, 0
    return f"{timeline:08X}{log:08X}{seg:08X}"


def missing_segments(archived: set[str], first: str, last: str, limit: int = 5) -> list[str]:
    """The segments from ``first`` to ``last`` (inclusive) that are not in ``archived``: a gap."""
    missing, segment = [], first
    while segment <= last and len(missing) < limit:
        if segment not in archived:
            missing.append(segment)
        segment = segment_after(segment)
    return missing
