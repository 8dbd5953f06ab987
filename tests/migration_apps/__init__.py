"""Test-only apps whose migrations misbehave on purpose (loaded only by tests that ask for them).

- ma_raises: 0001 creates ma_widgets with rows, 0002 adds a column and backfills it, 0003 alters a
  column and then raises: a failure in the middle of a plan, after schema changes.
- ma_orphan: 0002 inserts a row whose deferred foreign key points nowhere.
- ma_nonatomic: an `atomic = False` migration that creates a table, then fails (restore path).
- ma_slow: sleeps MA_SLOW_SECONDS inside its migration (concurrency and signal tests).
- ma_conflict: two leaf migrations without a merge.
"""

ALL = ["ma_raises", "ma_orphan", "ma_nonatomic", "ma_slow", "ma_conflict"]


def app_path(label: str) -> str:
    return f"tests.migration_apps.{label}"
