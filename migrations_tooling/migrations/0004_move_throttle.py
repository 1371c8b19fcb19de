from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("migrations_tooling", "0003_mirrored_reads"),
    ]

    operations = [
        migrations.AddField(
            model_name="moverange",
            name="throttle",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
