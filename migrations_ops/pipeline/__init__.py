"""The safe_migrate pipeline: phases over one run context (core.py), its event stream (events.py) and
its outcome (summary.py). How a plan is applied and undone lives beside it, in strategies/."""

from migrations_ops.pipeline.core import Pipeline, Reporter, ValidationFailed
from migrations_ops.pipeline.snapshot import StateSnapshot
from migrations_ops.pipeline.summary import MigrationSummary

__all__ = ["MigrationSummary", "Pipeline", "Reporter", "StateSnapshot", "ValidationFailed"]
