"""A bench-only app for bench_expand_contract.py: one release of a subscriptions-like table."""
