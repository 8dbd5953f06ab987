"""safe_migrate's options, and the one place they are checked.

The command, :func:`migrations_ops.api.safe_migrate` and :class:`migrations_ops.service.MigrationService`
all go through :meth:`SafeMigrateOptions.validate` before anything touches the database: a combination
the command refuses is refused from Python too, with the same one line (:class:`BadInput`, exit 2).
The command's argparse groups stay for ``--help`` (and refuse first on the command line, in argparse's
words); the checks here are the ones that hold whatever the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from migrations_ops.errors import BadInput


@dataclass
class SafeMigrateOptions:
    app_label: str | None = None
    migration_name: str | None = None
    plan_only: bool = False
    dry_run: bool = False
    rehearse: bool = False
    from_backup: str | None = None
    allow_row_loss: frozenset[str] = frozenset()  # a table name, or several: normalised to a frozenset
    fake: bool = False
    fake_initial: bool = False
    accept_existing_issues: bool = False
    online: bool = False  # expand, backfill in batches, validate: the application keeps running
    resume: bool = False  # with online: continue a killed online run from its checkpoint
    abort: bool = False  # with online: undo an unfinished online run, or close an open window backwards
    complete: bool = False  # with online: the contract half of an open expand/contract window
    lint: bool = False  # with plan_only: exit 1 when the plan cannot run online
    allow_data_loss: bool = False  # may restore the backup (losing writes since) when reversing fails

    def __post_init__(self) -> None:
        self.allow_row_loss = _table_names(self.allow_row_loss)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SafeMigrateOptions:
        """Options from keyword values (the Python API); an unknown name is bad input, not a TypeError."""
        unknown = sorted(set(values) - FIELD_NAMES)
        if unknown:
            raise BadInput(
                f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                f"(safe_migrate's options: {', '.join(sorted(FIELD_NAMES))})"
            )
        return cls(**values)

    def validate(self) -> None:
        """Refuse (BadInput, exit 2, one line) a combination that cannot mean what it says; checked
        in the order the command always checked them, argparse's exclusive groups first."""
        self._check_types()
        if sum((self.plan_only, self.dry_run, self.rehearse)) > 1:
            raise BadInput("--plan, --dry-run and --rehearse exclude one another")
        if sum((self.resume, self.abort, self.complete)) > 1:
            raise BadInput("--resume, --abort and --complete exclude one another")
        if self.from_backup and not self.rehearse:
            raise BadInput("--from-backup goes with --rehearse (to restore a backup, use restore_db)")
        if (self.resume or self.abort or self.complete) and not self.online:
            raise BadInput("--resume, --abort and --complete go with --online")
        if self.lint and not self.plan_only:
            raise BadInput("--lint goes with --plan (it only reads the plan)")
        if self.online and (self.rehearse or self.fake or self.fake_initial):
            raise BadInput("--online does not combine with --rehearse, --fake or --fake-initial")
        if self.rehearse and (self.fake or self.fake_initial):
            raise BadInput("--rehearse does not combine with --fake or --fake-initial (a rehearsal runs the plan)")
        if (self.resume or self.abort) and (self.app_label or self.migration_name or self.plan_only or self.dry_run):
            raise BadInput("--resume and --abort take no target, --plan or --dry-run: they continue or undo the run")
        if self.complete and (self.app_label or self.migration_name or self.plan_only or self.dry_run):
            raise BadInput("--complete takes no target, --plan or --dry-run: it contracts the open window")
        if self.migration_name and not self.app_label:
            # The command cannot say this (positional arguments); Python can, and `migrate` would take
            # the name for an app label while the plan ignored it.
            raise BadInput("a target migration needs its app label")

    def _check_types(self) -> None:
        """What only Python callers can get wrong: ``dry_run="false"`` is truthy, ``from_backup=7`` no name."""
        self.allow_row_loss = _table_names(self.allow_row_loss)  # also when assigned after __init__
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "allow_row_loss":
                names = isinstance(value, frozenset)
                bad = [t for t in value if not isinstance(t, str) or not t.strip()] if names else [value]
                if bad:
                    raise BadInput(f"--allow-row-loss takes table names, not {bad[0]!r}")
            elif field.default is False:
                if not isinstance(value, bool):
                    raise BadInput(f"option {field.name} takes True or False, not {value!r}")
            elif value is not None and not isinstance(value, str):
                raise BadInput(f"option {field.name} takes a name, not {value!r}")


FIELD_NAMES = frozenset(field.name for field in fields(SafeMigrateOptions))


def checked(options: SafeMigrateOptions | Mapping[str, Any] | None) -> SafeMigrateOptions:
    """``options`` (an object, keyword values, or None for the defaults) as a validated object."""
    if options is None:
        options = SafeMigrateOptions()
    elif isinstance(options, Mapping):
        options = SafeMigrateOptions.from_mapping(options)
    elif not isinstance(options, SafeMigrateOptions):
        raise BadInput(f"safe_migrate's options are SafeMigrateOptions or keyword values, not {options!r}")
    options.validate()
    return options


def _table_names(value: Any) -> Any:
    """A bare string is ONE table (frozenset("users") would be its letters); any other iterable its
    items; None none. Anything else is left for :meth:`SafeMigrateOptions.validate` to refuse."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, Iterable):
        try:
            return frozenset(value)
        except TypeError:  # unhashable items: refused by validate
            return value
    return value


__all__ = ["FIELD_NAMES", "SafeMigrateOptions", "checked"]
