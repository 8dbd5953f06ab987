"""The outcome of one safe_migrate run: an object until the edge (``to_dict`` for --json, ``render``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from migrations_ops.errors import ExitCode
from migrations_ops.planning import MigrationPlan
from migrations_ops.validation import ValidationReport


@dataclass
class MigrationSummary:
    """The outcome of one safe_migrate run; objects until the edge (``to_dict`` for --json, ``render``)."""

    status: str = "failed"
    applied: list[str] = field(default_factory=list)
    backup: str | None = None
    rollback: str | None = None  # "transaction", "reverse", "restore" or None
    validation: ValidationReport | None = None
    durations: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    plan: MigrationPlan | None = None
    exit_code: int = int(ExitCode.OK)
    reversed: list[str] = field(default_factory=list)  # migrations taken back by the "reverse" rollback
    # What the operator must read: server settings a backfill outgrows (capacity.py), the warnings of
    # preflight and of the validation after migrating, post_migrate handlers that failed after a reversal.
    warnings: list[str] = field(default_factory=list)

    @property
    def applied_count(self) -> int:
        return len(self.applied)

    def to_dict(self) -> dict[str, Any]:
        """The contract's ``--json`` summary."""
        return {
            "status": self.status,
            "applied": self.applied,
            "backup": self.backup,
            "rollback": self.rollback,
            "reversed": self.reversed,
            "validation": self.validation.to_dict() if self.validation else {},
            "durations": {key: round(value, 3) for key, value in self.durations.items()},
            "error": self.error,
            "plan": self.plan.to_dict() if self.plan else {},
            "warnings": self.warnings,
        }

    def render_plan(self) -> str:
        """The plan as --plan and --dry-run print it."""
        return self.plan.render() if self.plan else ""

    def render(self) -> str:
        """The closing line of the human output."""
        durations = ", ".join(f"{key[:-2]} {value:.2f}s" for key, value in self.durations.items())
        # Bad input (exit 2) changed nothing: "failed" would read as a failed migration.
        status = "refused, nothing was changed" if self.exit_code == ExitCode.BAD_INPUT else self.status
        return f"Status: {status} ({durations})"


__all__ = ["MigrationSummary"]
