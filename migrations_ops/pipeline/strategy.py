"""The interface every strategy has (implementations in strategies/): how a plan is applied and undone.

The pipeline (pipeline/core.py) locks, plans, preflights and takes the safety point; a strategy
applies the plan and validates it (at the moment its way of applying allows: inside the open
transaction, or after the last online step), and undoes it on failure. It talks back only through
the pipeline's event stream and summary, and calls only the pipeline's public phases.
"""

from __future__ import annotations

from typing import Any

from migrations_ops.backups import BackupManifest
from migrations_ops.errors import BadInput
from migrations_ops.pipeline.snapshot import StateSnapshot
from migrations_ops.pipeline.summary import MigrationSummary
from migrations_ops.planning import MigrationPlan


class Strategy:
    name = ""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline  # pipeline.core.Pipeline (not imported: it imports this interface)

    # The run's context, as the pipeline holds it.
    @property
    def using(self) -> str:
        return self.pipeline.using

    @property
    def options(self):
        return self.pipeline.options

    @property
    def engine(self):
        return self.pipeline.engine

    @property
    def connection(self):
        return self.pipeline.connection

    @property
    def summary(self) -> MigrationSummary:
        return self.pipeline.summary

    def new_summary(self) -> MigrationSummary:
        """The summary this strategy's runs fill (a subclass of MigrationSummary may add fields)."""
        return MigrationSummary()

    def review(self, plan: MigrationPlan) -> None:
        """``--plan``: add what this strategy would do to the summary (nothing by default)."""

    def check(self, plan: MigrationPlan) -> None:
        """Refuse (BadInput) what this strategy cannot do, before anything changes."""

    def counts_rows(self) -> bool:
        """Whether the row-count guard needs every table's exact row count before and after (False: the
        strategy counts its own row changes and replaces no table's storage, so estimates are shown)."""
        return True

    def apply(self, plan: MigrationPlan, before: StateSnapshot, backup: BackupManifest | None) -> None:
        """Apply and validate ``plan``; on failure undo it and raise OperationFailed (or RecoveryFailed)."""
        raise NotImplementedError

    def resume(self) -> None:
        """Continue an unfinished run from its checkpoint."""
        raise BadInput(f"the {self.name or 'chosen'} strategy has nothing to resume")

    def abort(self) -> None:
        """Undo an unfinished run from its checkpoint."""
        raise BadInput(f"the {self.name or 'chosen'} strategy has nothing to abort")

    def complete(self) -> None:
        """Run the contract half of an open expand/contract window."""
        raise BadInput(f"the {self.name or 'chosen'} strategy has nothing to complete")


__all__ = ["Strategy"]
