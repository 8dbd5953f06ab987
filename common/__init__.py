"""Plain-Python helpers shared by the domain apps (not a Django app: no models, no migrations)."""
