"""Detected objects' keys without per-row foreign-key checks, their integrity kept by locks and triggers.

PostgreSQL checked the four foreign keys of every inserted object row by row at commit: half of the database's
CPU for a detection's millions of objects (docs/experiments.md, seventeenth and eighteenth sessions). The keys
stay (same columns, same indexes, Django's cascades unchanged) without their constraints, and two things keep
what the constraints kept:

* ``detectors.results.insert_objects``, the one writer of objects, locks the runs, images and classes its rows
  name (``FOR KEY SHARE``, the lock a key check takes) once per insert and refuses rows whose parent is gone;
* this migration's trigger on each parent table deletes the objects of a deleted parent row. A deletion waits for
  the inserts that locked the row to commit, so its trigger also deletes what they wrote; an insert that comes
  after finds the row gone.

SpatiaLite runs one writer at a time: Django's cascade is enough there, and no trigger is made.
"""

from django.db import migrations, models
import django.db.models.deletion

#: (parent model, the object column naming it)
PARENTS = [
    ("detectors", "TrainingRun", "training_run_id"),
    ("detectors", "DetectionRun", "detection_run_id"),
    ("imagery", "Image", "image_id"),
    ("detectors", "DetectorClass", "detector_class_id"),
]
FUNCTION = "detectors_delete_objects_of_deleted_parent"


def trigger_name(column: str) -> str:
    return f"detected_objects_cascade_{column.removesuffix('_id')}"


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    objects = apps.get_model("detectors", "DetectedObject")._meta.db_table
    schema_editor.execute(
        f"""
        CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            EXECUTE format('DELETE FROM %I WHERE %I = $1', TG_ARGV[0], TG_ARGV[1]) USING OLD.id;
            RETURN NULL;
        END
        $$
        """,
        params=None,  # the function's own %I and $1 are not query parameters
    )
    for app, model, column in PARENTS:
        table = apps.get_model(app, model)._meta.db_table
        schema_editor.execute(
            f'CREATE TRIGGER {trigger_name(column)} AFTER DELETE ON "{table}" FOR EACH ROW '
            f"EXECUTE FUNCTION {FUNCTION}('{objects}', '{column}')"
        )


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for app, model, column in PARENTS:
        table = apps.get_model(app, model)._meta.db_table
        schema_editor.execute(f'DROP TRIGGER IF EXISTS {trigger_name(column)} ON "{table}"')
    schema_editor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")


class Migration(migrations.Migration):
    dependencies = [
        ("detectors", "0012_export_parts"),
        ("imagery", "0004_blob_purge"),
    ]

    operations = [
        migrations.AlterField(
            model_name="detectedobject",
            name="training_run",
            field=models.ForeignKey(
                blank=True, db_constraint=False, db_index=False, null=True,
                on_delete=django.db.models.deletion.CASCADE, related_name="predicted_objects",
                to="detectors.trainingrun",
            ),
        ),
        migrations.AlterField(
            model_name="detectedobject",
            name="detection_run",
            field=models.ForeignKey(
                blank=True, db_constraint=False, db_index=False, null=True,
                on_delete=django.db.models.deletion.CASCADE, related_name="detected_objects",
                to="detectors.detectionrun",
            ),
        ),
        migrations.AlterField(
            model_name="detectedobject",
            name="image",
            field=models.ForeignKey(
                db_constraint=False, on_delete=django.db.models.deletion.CASCADE, related_name="+",
                to="imagery.image",
            ),
        ),
        migrations.AlterField(
            model_name="detectedobject",
            name="detector_class",
            field=models.ForeignKey(
                db_constraint=False, on_delete=django.db.models.deletion.CASCADE, related_name="+",
                to="detectors.detectorclass",
            ),
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
