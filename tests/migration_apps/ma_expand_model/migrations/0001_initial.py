from django.db import migrations, models


class Migration(migrations.Migration):
    """The release before: widgets (Django's table name, from the model's name) and their parts."""

    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Widget",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=50)),
                ("size", models.IntegerField(default=1)),
            ],
        ),
        migrations.CreateModel(
            name="Part",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("widget", models.ForeignKey(on_delete=models.deletion.CASCADE, to="ma_expand_model.widget")),
            ],
        ),
    ]
