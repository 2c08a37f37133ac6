from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("imagery", "0003_image_ingest_attempts")]

    operations = [
        migrations.CreateModel(
            name="BlobPurge",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("prefix", models.CharField(max_length=500)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("last_error", models.TextField(blank=True, default="")),
            ],
            options={"ordering": ["attempts", "created_at"]},
        ),
    ]
