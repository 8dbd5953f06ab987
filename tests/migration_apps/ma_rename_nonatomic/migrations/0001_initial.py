from django.db import migrations, models


def add_rows(apps, schema_editor):
    PageRevision = apps.get_model("ma_rename_nonatomic", "PageRevision")
    PageRevision.objects.using(schema_editor.connection.alias).bulk_create(
        PageRevision(title=t) for t in ("first", "second", "third")
    )


class Migration(migrations.Migration):
    """Create ma_rename_nonatomic_pagerevision with three rows."""

    operations = [
        migrations.CreateModel(
            name="PageRevision",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("title", models.CharField(max_length=50)),
            ],
        ),
        migrations.RunPython(add_rows, migrations.RunPython.noop),
    ]
