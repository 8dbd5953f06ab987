"""Retry a unit of work that failed on a transient conflict (lock timeout, deadlock), with backoff.

A lock wait that times out or a deadlock the server broke is not a defect of the migration: the
other party (application traffic) usually finishes within a second or two. The work must be a
whole transaction that rolled back, so running it again starts from the same state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from migrations_ops import interrupts

T = TypeVar("T")
BACKOFF_S = (0.5, 1.0, 2.0)


def with_retries(
    work: Callable[[], T],
    is_transient: Callable[[BaseException], bool],
    on_retry: Callable[[int, float, BaseException], None] | None = None,
    backoff: tuple[float, ...] = BACKOFF_S,
) -> T:
    """``work()``; on a transient failure wait ``backoff[i]`` and run it again, ``len(backoff)`` times.

    An interrupt (SIGINT/SIGTERM) is never retried: a statement it cancelled is not a conflict.
    ``on_retry(attempt, wait_s, exc)`` is told before each wait (attempt 1 is the first retry).
    """
    attempt = 0
    while True:
        try:
            return work()
        except Exception as exc:
            state = interrupts.current()
            if state.received or attempt >= len(backoff) or not is_transient(exc):
                raise
            wait = backoff[attempt]
            attempt += 1
            if on_retry is not None:
                on_retry(attempt, wait, exc)
            state.sleep(wait)
