"""What every seeding phase shares: the fixed clock, the text forms COPY and executemany take, the
report, the refusal, and the per-index user ids."""

from __future__ import annotations

import calendar
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

# The fixed "now" of demo data: every timestamp is derived from it, never from the clock.
REFERENCE = calendar.timegm((2026, 1, 1, 0, 0, 0))
DAY = 86_400
DEFAULT_BATCH_SIZE = 20_000
DEFAULT_DAYS = 30

_UUID_MULT = 0x9E3779B97F4A7C15F39CC0605CEDC835  # odd, so index -> uuid is a bijection mod 2**128
_MASK128 = (1 << 128) - 1
_VERSION_CLEAR = _MASK128 ^ ((0xF << 76) | (0x3 << 62))
_VERSION_BITS = (0x4 << 76) | (0x2 << 62)  # version 4, RFC 4122 variant


class SeedRefused(ValueError):
    """Bad input or a database we will not seed; nothing was written."""


Progress = Callable[[str, int, int], None]


@dataclass
class SeedReport:
    """What was written, how long each phase took, and the schema state that was seeded."""

    state: str
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    # tables whose foreign keys and secondary indexes were dropped for the load and re-created
    rebuilt: list[str] = field(default_factory=list)

    def rate(self, table: str) -> float:
        """Rows per second of `table`'s phase (its rows over the wall time of that phase)."""
        seconds = self.seconds.get(table, 0.0)
        return self.counts.get(table, 0) / seconds if seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line: counts, phase rates and the total time."""
        parts = []
        for table, count in self.counts.items():
            rate = f" ({self.rate(table):,.0f}/s)" if table in self.seconds and count else ""
            parts.append(f"{table}={count:,}{rate}")
        commit = f", commit {self.seconds['commit']:.1f}s" if "commit" in self.seconds else ""
        if self.seconds.get("constraints", 0.0) >= 0.05:
            commit = f", constraints and indexes {self.seconds['constraints']:.1f}s" + commit
        return f"seeded {self.state} database: {', '.join(parts)} in {self.total_seconds:.1f}s{commit}"


def copy_safe(words: Iterable[str]) -> None:
    """COPY's text format needs no escaping because no generated value contains a tab, a newline or
    a backslash: word lists are checked once, at import."""
    for word in words:
        assert not set(word) & {"\t", "\n", "\r", "\\", '"'}, word


def user_uuid_hex(index: int, offset: int) -> str:
    """The id of generated user `index`: a bijection of (index + offset) shaped as a version-4 UUID,
    so later phases recompute a user's id instead of holding a million of them in memory."""
    value = ((index + offset) * _UUID_MULT) & _MASK128
    return f"{(value & _VERSION_CLEAR) | _VERSION_BITS:032x}"


def timestamp(epoch: int) -> str:
    """Naive UTC text, the form Django stores on SQLite and PostgreSQL reads in its UTC session."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def date(epoch: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def batches(rows: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def array_of(typecode: str, length: int) -> array:
    """A zero-filled compact array: per-row bookkeeping for a million rows in megabytes, not objects."""
    return array(typecode, bytes(array(typecode).itemsize * length))
