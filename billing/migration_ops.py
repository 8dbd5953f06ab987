"""Where billing's applied migrations import their operations from (0002 and 0008 name this module).

The operation itself lives in migrations_ops.operations, beside RunSQLBatched; this re-export keeps
the applied migration files unedited, so their stored checksums still match.
"""

from migrations_ops.operations import PostgreSQLOnlySQL

__all__ = ["PostgreSQLOnlySQL"]
