"""How a plan is applied and undone: one small interface (base.py), one module per way."""
