"""Blob references leave the results (issue 14, item 3) and temporary files get an expiry (item 5).

Data: in stored results, "blob:<key>" strings at the places the server wrote them (`url`, `download_url`,
`by_class[i].result.url`) move to `blob_refs`; any other string, whatever it starts with, stays as it is
and is never signed again. Downloads already written and rasters still waiting for their bytes get a
`TemporaryFile` row, so they expire like new ones.
"""

import uuid
from datetime import timedelta

import django.db.models.deletion
from django.db import migrations, models

LEGACY_PREFIX = "blob:"
DOWNLOAD_KEEP_S = 24 * 3600  # picterra.public_api.cleanup, as of this migration
RASTER_UPLOAD_KEEP_S = 2 * 24 * 3600


def server_written_places(results):
    """(container, key-or-index, path) of every place a blob reference was written before this change."""
    if not isinstance(results, dict):
        return
    for name in ("url", "download_url"):
        if name in results:
            yield results, name, [name]
    by_class = results.get("by_class")
    if isinstance(by_class, list):
        for index, item in enumerate(by_class):
            result = item.get("result") if isinstance(item, dict) else None
            if isinstance(result, dict) and "url" in result:
                yield result, "url", ["by_class", index, "result", "url"]


def move_blob_strings_to_refs(apps, schema_editor):
    Operation = apps.get_model("public_api", "Operation")
    for operation in Operation.objects.filter(results__isnull=False).iterator():
        refs = list(operation.blob_refs or [])
        changed = False
        for container, name, path in list(server_written_places(operation.results)):
            value = container[name]
            if isinstance(value, str) and value.startswith(LEGACY_PREFIX) and len(value) > len(LEGACY_PREFIX):
                refs.append({"path": path, "key": value[len(LEGACY_PREFIX) :]})
                container[name] = None
                changed = True
        if changed:
            Operation.objects.filter(pk=operation.pk).update(results=operation.results, blob_refs=refs)


def refs_back_to_blob_strings(apps, schema_editor):
    Operation = apps.get_model("public_api", "Operation")
    for operation in Operation.objects.filter(results__isnull=False).iterator():
        results = operation.results
        if not operation.blob_refs:
            continue
        for ref in operation.blob_refs or []:
            target = results
            try:
                for step in ref["path"][:-1]:
                    target = target[step]
                target[ref["path"][-1]] = LEGACY_PREFIX + ref["key"]
            except (KeyError, IndexError, TypeError):
                continue
        Operation.objects.filter(pk=operation.pk).update(results=results)


def record_existing_temporaries(apps, schema_editor):
    Operation = apps.get_model("public_api", "Operation")
    TemporaryFile = apps.get_model("public_api", "TemporaryFile")
    Image = apps.get_model("imagery", "Image")
    RasterDetails = apps.get_model("public_api", "RasterDetails")
    rows = []
    for operation in Operation.objects.filter(kind="vector_layer_download").iterator():
        for ref in operation.blob_refs or []:
            key = ref.get("key", "") if isinstance(ref, dict) else ""
            # Written for this download (public-api/vector-layers/<layer>/<random>.geojson); an uploaded
            # layer's own file (public-api/vector-layers/<layer>.geojson) belongs to the layer and stays.
            if key.startswith("public-api/vector-layers/") and key.count("/") == 3:
                rows.append(
                    TemporaryFile(
                        organization_id=operation.organization_id,
                        kind="download",
                        key=key,
                        operation_id=operation.pk,
                        expires_at=operation.created_at + timedelta(seconds=DOWNLOAD_KEEP_S),
                    )
                )
    waiting = Image.objects.filter(
        status="uploading", pk__in=RasterDetails.objects.values("image_id")
    ).select_related("project")
    for image in waiting.iterator():
        rows.append(
            TemporaryFile(
                organization_id=image.project.organization_id,
                kind="raster_upload",
                image_id=image.pk,
                expires_at=image.created_at + timedelta(seconds=RASTER_UPLOAD_KEEP_S),
            )
        )
    TemporaryFile.objects.bulk_create(rows, batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("imagery", "0002_cog_version"),
        ("organizations", "0001_initial"),
        ("public_api", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="operation",
            name="blob_refs",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.CreateModel(
            name="TemporaryFile",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("geojson_upload", "Geojson Upload"),
                            ("raster_upload", "Raster Upload"),
                            ("download", "Download"),
                        ],
                        max_length=16,
                    ),
                ),
                ("key", models.CharField(blank=True, default="", max_length=500)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("expires_at", models.DateTimeField(db_index=True)),
                (
                    "image",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="imagery.image",
                    ),
                ),
                (
                    "operation",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="public_api.operation",
                    ),
                ),
                (
                    "organization",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="organizations.organization",
                    ),
                ),
            ],
        ),
        migrations.RunPython(move_blob_strings_to_refs, refs_back_to_blob_strings),
        migrations.RunPython(record_existing_temporaries, migrations.RunPython.noop),
    ]
