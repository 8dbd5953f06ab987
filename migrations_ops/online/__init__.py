"""``safe_migrate --online``: expand, backfill in batches, validate; see executor.py."""
