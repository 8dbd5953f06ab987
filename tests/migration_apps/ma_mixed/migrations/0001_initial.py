from django.db import migrations, models


def add_books(apps, schema_editor):
    alias = schema_editor.connection.alias
    Shelf = apps.get_model("ma_mixed", "Shelf")
    Book = apps.get_model("ma_mixed", "Book")
    shelf = Shelf.objects.using(alias).create(label="A")
    Book.objects.using(alias).bulk_create(Book(shelf=shelf, title=t) for t in ("Emma", "Ulysses"))


class Migration(migrations.Migration):
    """Create ma_shelves and ma_books (a foreign key between them) with rows."""

    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Shelf",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("label", models.CharField(max_length=20)),
            ],
            options={"db_table": "ma_shelves"},
        ),
        migrations.CreateModel(
            name="Book",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("title", models.CharField(max_length=100)),
                ("shelf", models.ForeignKey(on_delete=models.deletion.CASCADE, to="ma_mixed.shelf")),
            ],
            options={"db_table": "ma_books"},
        ),
        migrations.RunPython(add_books, migrations.RunPython.noop),
    ]
