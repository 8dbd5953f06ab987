"""One event stream per run: each step emits one event, and the subscribers decide what becomes of it.

A step never both says and records. It emits ``Event(name, text, fields)``: the terminal subscriber
prints ``text`` (the line a person reads), the audit subscriber writes ``name`` and ``fields`` to
MIGRATION_LOG as ``safe_migrate.<name>``, and a caller may add its own (a test that acts at a phase,
a progress display). ``record=False`` marks a line that is only for the reader (the audit log has
the same fact in a neighbouring event).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from migrations_ops import audit


@dataclass(frozen=True)
class Event:
    name: str
    text: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    record: bool = True


Subscriber = Callable[[Event], None]


class EventStream:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def emit(self, name: str, line: str | None = None, /, *, record: bool = True, **fields: Any) -> None:
        """``line``: what the reader sees (the event's ``text``); ``fields``: what the audit log records
        (positional-only ``name`` and ``line``, so a field may be called ``name`` or ``text``)."""
        event = Event(name=name, text=line, fields=fields, record=record)
        for subscriber in self._subscribers:
            subscriber(event)


def audit_log(prefix: str, database: Callable[[], dict[str, Any]]) -> Subscriber:
    """Writes each recorded event to MIGRATION_LOG as ``<prefix>.<name>`` with the database's identity."""

    def write(event: Event) -> None:
        if event.record:
            audit.record(f"{prefix}.{event.name}", database=database(), **event.fields)

    return write


def terminal(report: Callable[[str], None]) -> Subscriber:
    """Hands each event's line to ``report`` (the command's output; silent with --json or verbosity 0)."""

    def say(event: Event) -> None:
        if event.text is not None:
            report(event.text)

    return say


__all__ = ["Event", "EventStream", "Subscriber", "audit_log", "terminal"]
