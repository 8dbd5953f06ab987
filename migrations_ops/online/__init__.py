"""What ``safe_migrate --online`` needs to know and keep: analysis, statements, checkpoint (the strategy
that drives them is strategies/online.py)."""
