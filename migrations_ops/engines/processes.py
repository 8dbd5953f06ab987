"""Child-process plumbing shared by the engines: stderr readers, pipes, error lines, clean-up.

Written once here so that every engine runs its tools the same way: stderr is read on a thread
(a full pipe would block the child), every child is killed and reaped on any way out, and the
operator sees the tool's first error line rather than its whole output.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from migrations_ops import interrupts

HASH_CHUNK = 1 << 20


def first_error(stderr: str, default: str) -> str:
    """The first line of a tool's stderr that reports an error (else its last line, else ``default``)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "ERROR:" in line or "error:" in line or "FATAL:" in line:
            return line
    return lines[-1] if lines else default


def returncode_text(name: str, code: int) -> str:
    return f"{name} was killed by signal {-code}" if code < 0 else f"{name} exited with status {code}"


class StreamReader(threading.Thread):
    """Collects a child's stderr; ``on_line(line)`` returning True drops the line (progress output)."""

    def __init__(self, stream, on_line=None) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.on_line = on_line
        self.lines: list[str] = []

    def run(self) -> None:
        for raw in iter(self.stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            if self.on_line and self.on_line(line):
                continue  # a progress line: not worth keeping
            self.lines.append(line)
        self.stream.close()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def kill_all(processes: list[subprocess.Popen]) -> None:
    """Kill every child still running and reap them all (a reaped child leaves no zombie)."""
    for process in processes:
        if process.poll() is None:
            process.kill()
    for process in processes:
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)


@contextmanager
def killed_on_interrupt(processes: list[subprocess.Popen]) -> Iterator[None]:
    """An interrupt kills these children at once (the main thread may be blocked reading their
    pipes, where no Python signal handler can run); the caller still reaps them."""

    def kill() -> None:
        for process in list(processes):
            if process.poll() is None:
                process.kill()

    with interrupts.cancellable(kill):
        yield


def finish(
    process: subprocess.Popen,
    input: bytes | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """Wait for a started child whose stdout and stderr are pipes, as ``subprocess.run(argv,
    capture_output=True)`` does, except that an interrupt ends it at once; it is reaped on every way out."""
    try:
        with killed_on_interrupt([process]):
            stdout, stderr = process.communicate(input, timeout=timeout)
    finally:
        kill_all([process])
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_hashed(stream, path) -> tuple[str, int]:
    """Copy a readable binary ``stream`` into the new file ``path`` (mode 0600, fsynced), hashing as it
    goes: the sha256 of what was written and its size, with no second read of the file."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while chunk := stream.read(HASH_CHUNK):
            digest.update(chunk)
            write_all(fd, chunk)
            size += len(chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest.hexdigest(), size


def pump(source_fd: int, target_fd: int) -> bool:
    """Copy a pipe into another until EOF (zero-copy splice where available); False if the reader went away."""
    try:
        if hasattr(os, "splice"):
            while os.splice(source_fd, target_fd, 1 << 20):
                pass
        else:  # pragma: no cover - non-Linux
            while chunk := os.read(source_fd, 1 << 20):
                write_all(target_fd, chunk)
    except BrokenPipeError:
        return False
    return True
