from django.db import migrations

from migrations_ops.operations import BatchKey, RunSQLBatched


class Migration(migrations.Migration):
    """A batched data migration that deletes rows of a table in use: the row-count guard must see the
    loss from the run's own counted deletes, with no count of the table before or after."""

    dependencies = [("ma_expand", "0001_initial")]
    operations = [
        RunSQLBatched(
            "DELETE FROM ma_gadgets WHERE qty %% 2 = 0 AND {batch}",
            "SELECT 1",
            key=BatchKey("ma_gadgets"),
            reverse_key=None,
        )
    ]
