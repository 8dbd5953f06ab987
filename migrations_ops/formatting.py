"""Small text helpers for what operators read (sizes), shared by commands and the pipeline."""

from __future__ import annotations


def human_size(size: int) -> str:
    """1536 -> '1.5 KB'; bytes below 1 KB stay whole ('512 B')."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover
