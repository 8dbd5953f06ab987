"""Progress on a terminal: one self-overwriting line on stderr, nothing when it is not a TTY."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class TerminalProgress:
    """A ``progress(done, total, item)`` callable drawing ``label: done/total item`` at most 10 times a second."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self.label = label
        self.stream = stream
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int, item: str = "") -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        line = f"{self.label}: {done}/{total} {item}"[:100]
        self.stream.write("\r" + line.ljust(100))
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()
            self._drawn = False


def terminal_progress(label: str, verbosity: int, json_output: bool, stream: TextIO | None = None):
    """A TerminalProgress when ``stream`` (stderr) is a terminal and output is wanted, else None."""
    stream = stream or sys.stderr
    if verbosity < 1 or json_output or not stream.isatty():
        return None
    return TerminalProgress(label, stream)
