"""The run's event stream: one event per step, and the subscribers decide what becomes of it."""

from __future__ import annotations

from migrations_ops import audit
from migrations_ops.pipeline.events import Event, EventStream, audit_log, terminal


def test_each_event_reaches_every_subscriber_the_reader_gets_lines_the_audit_log_gets_fields(settings, tmp_path):
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    said: list[str] = []
    seen: list[Event] = []
    stream = EventStream()
    stream.subscribe(audit_log("safe_migrate", lambda: {"name": "db", "host": None, "port": None}))
    stream.subscribe(terminal(said.append))
    stream.subscribe(seen.append)

    # A field may be called "name" or "text": the event's own name and line are positional.
    stream.emit("backup", "Backup: b1 verified", name="b1", text="x")
    stream.emit("note", "Applying 2 migration(s) in one transaction", record=False)
    stream.emit("prune", removed=["old"])

    assert said == ["Backup: b1 verified", "Applying 2 migration(s) in one transaction"]
    assert [event.name for event in seen] == ["backup", "note", "prune"]
    assert seen[0].fields == {"name": "b1", "text": "x"} and seen[0].text == "Backup: b1 verified"
    logged = [e for e in audit.read_events() if e["event"].startswith("safe_migrate.")]
    assert [e["event"] for e in logged] == ["safe_migrate.backup", "safe_migrate.prune"]  # the note is not recorded
    assert logged[0]["name"] == "b1" and logged[0]["database"]["name"] == "db"
    assert logged[1]["removed"] == ["old"]
