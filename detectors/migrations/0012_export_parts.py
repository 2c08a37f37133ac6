"""Exports by parts: each detected object says whether it lies along a border between cells (the merge reads only
those), and each cell keeps the blob of its export part.

Objects stored before this migration are marked near a border: the final step of a run retried after it then
considers every one of them for merging, as the spatial query before it did, and exports them from the database.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("detectors", "0011_detected_object_composite_indexes_only"),
        ("imagery", "0004_blob_purge"),
    ]

    operations = [
        migrations.AddField(
            model_name="detectedobject",
            name="near_border",
            field=models.BooleanField(default=True),
        ),
        migrations.AlterField(
            model_name="detectedobject",
            name="near_border",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="detectioncell",
            name="export_part",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AddIndex(
            model_name="detectedobject",
            index=models.Index(
                condition=models.Q(("near_border", True)), fields=["detection_run", "image"], name="object_near_border"
            ),
        ),
    ]
