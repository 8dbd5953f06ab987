"""Reviewed declarations that let --online run operations of migrations nobody can rewrite here.

A migration shipped inside a package (wagtail, django-taggit, ...) cannot be rewritten as
``RunSQLBatched`` or ``BoundedRunPython``. The operator reviews it instead and says so in the
setting ``MIGRATION_ONLINE_DECLARATIONS``, keyed by ``"app_label.migration_name"``::

    MIGRATION_ONLINE_DECLARATIONS = {
        "wagtailcore.0040_page_draft_title": {
            "bounded": [1],       # RunPython operations (indexes, or "all") that touch a bounded number of rows
            "brief": [0],         # other refused operations that hold their locks briefly (a small or new table)
            "reason": "one UPDATE per page; 2,000 pages in production",
            "reviewed_by": "alice@example.com",
            "sha256": "9f2c...",  # optional: the file as reviewed; any other content voids the declaration
        },
    }

A declared operation runs in one transaction under ``MIGRATION_ONLINE_LOCK_TIMEOUT`` (the online
strategy's ``_bounded``). A declaration cannot cover what no review makes safe online: an operation
without a reverse (a failure after it could not be undone step by step), or a drop or a rename of a
table or column that existed before the run (undone online, dropped data would not come back; the
running release still reads the old name). The whole setting is validated by :func:`read` before an
online run or plan: anything malformed is :class:`~migrations_ops.errors.BadInput` (exit 2, nothing
changed).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import migrations
from django.db.migrations.loader import MigrationLoader

from migrations_ops.checksums import file_checksum
from migrations_ops.errors import BadInput
from migrations_ops.planning import db_table

SETTING = "MIGRATION_ONLINE_DECLARATIONS"
BOUNDED = "bounded"  # RunPython: touches a bounded number of rows
BRIEF = "brief"  # any other operation: holds its locks briefly, and the running release survives it
ALL = "all"
_KEYS = (BOUNDED, BRIEF, "reason", "reviewed_by", "sha256")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DROPS = (migrations.RemoveField, migrations.DeleteModel)
_RENAMES = (migrations.RenameField, migrations.RenameModel, migrations.AlterModelTable)


@dataclass(frozen=True)
class Declaration:
    """One migration's entry of the setting, checked."""

    revision: str
    bounded: tuple[int, ...] | str  # operation indexes, or ALL
    brief: tuple[int, ...] | str
    reason: str
    reviewed_by: str
    sha256: str | None = None

    def covers(self, key: str, index: int) -> bool:
        """``key`` (BOUNDED or BRIEF) declares operation ``index`` (ALL: every operation of its kind)."""
        declared = getattr(self, key)
        return declared == ALL or index in declared

    def as_used(self, key: str) -> dict[str, Any]:
        """What the plan of an operation this declaration covers says about it."""
        return {"as": key, "reviewed_by": self.reviewed_by, "reason": self.reason}


def key_for(operation) -> str:
    """The declaration key that would cover ``operation``."""
    return BOUNDED if isinstance(operation, migrations.RunPython) else BRIEF


def _bad(revision: str | None, problem: str) -> BadInput:
    where = f'{SETTING}["{revision}"]' if revision is not None else SETTING
    return BadInput(f"{where}: {problem} (nothing was changed)")


def _indexes(revision: str, key: str, value: Any) -> tuple[int, ...] | str:
    if value is None:
        return ()
    if value == ALL:
        return ALL
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in value)
    ):
        raise _bad(revision, f'"{key}" must be "all" or a non-empty list of operation indexes, not {value!r}')
    return tuple(sorted(set(value)))


def _text(revision: str, entry: dict, key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        what = "why it is safe" if key == "reason" else "who reviewed it"
        raise _bad(revision, f'"{key}" is missing or empty: a declaration says {what}')
    return value.strip()


def _parse(revision: Any, entry: Any) -> Declaration:
    """One entry, checked for its shape (the migration itself is checked by :func:`read`)."""
    if not isinstance(revision, str) or revision.count(".") != 1:
        raise _bad(None, f'the key {revision!r} is not "app_label.migration_name"')
    if not isinstance(entry, dict):
        raise _bad(revision, f"must be a dict ({', '.join(_KEYS)}), not {type(entry).__name__}")
    unknown = sorted(str(key) for key in entry if key not in _KEYS)
    if unknown:
        raise _bad(revision, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(_KEYS)})")
    bounded, brief = _indexes(revision, BOUNDED, entry.get(BOUNDED)), _indexes(revision, BRIEF, entry.get(BRIEF))
    if not bounded and not brief:
        raise _bad(revision, f'declares nothing: give "{BOUNDED}" (RunPython operations) or "{BRIEF}" (the others)')
    sha256 = entry.get("sha256")
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.match(sha256.lower())):
        raise _bad(revision, f'"sha256" must be the 64 hex digits of the file as reviewed, not {sha256!r}')
    return Declaration(
        revision=revision,
        bounded=bounded,
        brief=brief,
        reason=_text(revision, entry, "reason"),
        reviewed_by=_text(revision, entry, "reviewed_by"),
        sha256=sha256.lower() if sha256 else None,
    )


def _setting() -> dict:
    value = getattr(settings, SETTING, None) or {}
    if not isinstance(value, dict):
        raise _bad(None, f'must be a dict keyed by "app_label.migration_name", not {type(value).__name__}')
    return value


def read(loader: MigrationLoader) -> dict[str, Declaration]:
    """Every declaration of the setting, checked against the migrations on disk; BadInput otherwise.

    A declaration must name a migration that exists, operations inside it, each of the kind its key
    declares (``bounded``: RunPython; ``brief``: anything else), and, when pinned, the file as it is.
    A declaration the plan does not need is no error (on a fresh database an app's RunPython runs as
    part of a new app, while the same setting serves the upgraded databases).
    """
    found: dict[str, Declaration] = {}
    for revision, entry in _setting().items():
        declaration = _parse(revision, entry)
        app_label, name = revision.split(".")
        migration = loader.disk_migrations.get((app_label, name))
        if migration is None:
            close = sorted(f"{a}.{n}" for a, n in loader.disk_migrations if a == app_label and n.startswith(name))
            hint = f" (did you mean {close[0]}?)" if len(close) == 1 else ""
            raise _bad(revision, f"no such migration on disk{hint}")
        operations = migration.operations
        for key in (BOUNDED, BRIEF):
            declared = getattr(declaration, key)
            for index in () if declared == ALL else declared:
                if not 0 <= index < len(operations):
                    raise _bad(
                        revision,
                        f'"{key}" names operation {index}, but it has {len(operations)} (0 to {len(operations) - 1})',
                    )
                operation = operations[index]
                if key_for(operation) != key:
                    kind = "a RunPython" if key == BRIEF else "not a RunPython"
                    raise _bad(
                        revision,
                        f'operation {index} ({operation.describe()}) is {kind}: "{BOUNDED}" '
                        f'declares RunPython operations, "{BRIEF}" the others',
                    )
        if declaration.sha256 is not None:
            actual = _checksum(revision)
            if actual != declaration.sha256:
                raise _bad(
                    revision,
                    f"the file is no longer the one reviewed (sha256 {actual or 'unknown'}, "
                    f"reviewed {declaration.sha256}): review it again",
                )
        found[revision] = declaration
    return found


def declared(revision: str, index: int, key: str) -> Declaration | None:
    """The declaration that covers operation ``index`` of ``revision`` under ``key``, if any."""
    entry = _setting().get(revision)
    if entry is None:
        return None
    declaration = _parse(revision, entry)
    return declaration if declaration.covers(key, index) else None


def obstacle(operation, app_label: str, state, existing: set[str]) -> str | None:
    """Why no declaration can make ``operation`` safe online (None: a reviewed declaration can)."""
    if not operation.reversible:
        return "it has no reverse, so a failure after it could not be undone step by step"
    if not isinstance(operation, _DROPS + _RENAMES + (migrations.AlterField,)):
        return None
    model_name = getattr(operation, "model_name_lower", None) or getattr(operation, "old_name_lower", None)
    model = state.models.get((app_label, model_name or operation.name_lower))
    table = db_table(state, app_label, model_name or operation.name_lower)
    if table not in existing:
        return None  # a table this run creates: nothing uses it yet, and undoing it loses nothing
    if isinstance(operation, _DROPS):
        return f"it drops from {table}, which existed before the run: undone online, the data would not come back"
    if isinstance(operation, migrations.AlterField):
        old = model.fields.get(operation.name)
        before, after = _column(old, operation.name), _column(operation.field, operation.name)
        if old is None or before == after:
            return None
        return f"it renames {table}.{before} to {after}: the running release still uses the old name"
    return f"it renames in {table}, which existed before the run: the running release still uses the old name"


def _column(field, name: str) -> str | None:
    """The column an unbound model-state field has under ``name`` (None: no column)."""
    if field is None:
        return None
    bound = field.clone()
    bound.set_attributes_from_name(name)
    return bound.column


@dataclass(frozen=True)
class Owner:
    """Who can change a migration's file: the project (under BASE_DIR) or a package."""

    project: bool
    label: str  # "the project", "wagtail 8.0.1", "a package outside the project", ...


def owner(revision: str) -> Owner:
    """The project's own migration (its file is under BASE_DIR, outside any site-packages) or another's."""
    path = migration_path(revision)
    if path is None:
        return Owner(False, "a migration built in memory")
    if not {"site-packages", "dist-packages"} & set(path.parts):
        base = getattr(settings, "BASE_DIR", None)
        if base and path.is_relative_to(Path(base).resolve()):
            return Owner(True, "the project")
    module = _module(revision)
    top = module.__name__.split(".")[0] if module else ""
    for distribution in _distributions().get(top, []):
        try:
            return Owner(False, f"{distribution} {importlib.metadata.version(distribution)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return Owner(False, "a package outside the project")


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _module(revision: str):
    app_label, name = revision.split(".", 1)
    package, _explicit = MigrationLoader.migrations_module(app_label)
    if not package:
        return None
    dotted = f"{package}.{name}"
    try:
        return sys.modules.get(dotted) or importlib.import_module(dotted)
    except ImportError:
        return None


def migration_path(revision: str) -> Path | None:
    """The file ``revision`` is loaded from (None for one built in memory)."""
    filename = getattr(_module(revision), "__file__", None)
    return Path(filename).resolve() if filename else None


def _checksum(revision: str) -> str | None:
    """The file's checksum, as validate_db records it (whitespace-only edits ignored)."""
    path = migration_path(revision)
    return file_checksum(path) if path and path.is_file() else None


def suggestion(revision: str, wanted: dict[str, list[int]]) -> str:
    """The declaration that would accept ``wanted`` ({key: operation indexes}) of ``revision``."""
    body = ", ".join(f'"{key}": {wanted[key]}' for key in (BOUNDED, BRIEF) if wanted.get(key))
    return f'{SETTING}["{revision}"] = {{{body}, "reason": "...", "reviewed_by": "..."}}'


def record(revision: str, declaration: Declaration, used: dict[str, list[int]]) -> dict[str, Any]:
    """What a plan (its JSON, the audit log) keeps of a declaration it used."""
    document: dict[str, Any] = {
        "revision": revision,
        **{key: indexes for key, indexes in used.items() if indexes},
        "reason": declaration.reason,
        "reviewed_by": declaration.reviewed_by,
        "origin": owner(revision).label,
        "sha256": _checksum(revision),
        "pinned": declaration.sha256 is not None,
    }
    return document


__all__ = [
    "ALL",
    "BOUNDED",
    "BRIEF",
    "SETTING",
    "Declaration",
    "Owner",
    "declared",
    "key_for",
    "migration_path",
    "obstacle",
    "owner",
    "read",
    "record",
    "suggestion",
]
