from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("imagery", "0002_cog_version")]

    operations = [
        migrations.AddField(
            model_name="image",
            name="ingest_attempts",
            field=models.PositiveSmallIntegerField(default=0),
        ),
    ]
