"""`python manage.py export_experiment_dataset DETECTOR_ID`: a platform detector as an experiment dataset.

Writes, per ready image of the detector, a folder ``<output>/<name>[-<n>]/`` holding ``image.tif`` (the
image's COG, copied from the blob store) and ``dataset.json`` in the format
``workers.experiments.repository.project_dataset`` reads, so that
``python -m workers.experiments run --datasets 'project/*'`` tries methodologies on what users really drew.
Outlines inside accuracy areas become the ``truth`` (they are never trained on, exactly as in a training
run); training areas exclude accuracy areas for the same reason.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from detectors.models import Detector
from detectors.training_inputs import gather_training_inputs
from imagery.models import Image
from imagery.storage import get_blob_store
from workers.experiments.repository import VAR
from workers.ml.raster_io import image_crs_to_lonlat, to_geojson


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "detector"


class Command(BaseCommand):
    help = "Export a detector's images, areas and outlines as experiment datasets (var/experiments/projects/)."

    def add_arguments(self, parser):
        parser.add_argument("detector_id")
        parser.add_argument("--name", help="dataset name (default: the detector's name, slugified)")
        parser.add_argument("--output", default=str(VAR / "projects"), help="folder of project datasets")

    def handle(self, *args, detector_id: str, name: str | None, output: str, **options):
        try:
            detector = Detector.objects.get(pk=detector_id)
        except (Detector.DoesNotExist, ValidationError) as error:
            raise CommandError(f"No detector with id {detector_id!r}.") from error
        inputs = [i for i in gather_training_inputs(detector) if i.training_areas or i.accuracy_areas]
        if not inputs:
            raise CommandError("This detector has no ready image with training or accuracy areas: nothing to export.")
        store = get_blob_store()
        classes = list(detector.classes.order_by("pk").values_list("name", flat=True))
        base = name or _slug(detector.name)
        written = []
        for index, item in enumerate(inputs):
            folder = Path(output) / (base if len(inputs) == 1 else f"{base}-{index + 1}")
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.objects.get(pk=item.image_id)
            partial = folder / "image.tif.partial"
            with store.open_read(image.cog_key) as source, partial.open("wb") as target:
                shutil.copyfileobj(source, target, 8 * 1024 * 1024)
            partial.replace(folder / "image.tif")

            def areas(geometries, crs=item.crs):
                return [to_geojson(image_crs_to_lonlat(g, crs)) for g in geometries]

            def features(outlines, crs=item.crs):
                return [
                    {"type": "Feature", "geometry": to_geojson(image_crs_to_lonlat(g, crs)), "properties": {"class": c}}
                    for g, c in outlines
                ]

            dataset = {
                "source": {"detector": str(detector.pk), "image": item.image_id, "image_name": item.image_name},
                "image": "image.tif",
                "classes": classes,
                "detection_type": detector.detection_type,
                "output_type": detector.output_type,
                "training_areas": areas(item.training_areas),
                "accuracy_areas": areas(item.accuracy_areas),
                "outlines": features(item.training_outlines),
                "truth": features(item.accuracy_outlines),
            }
            (folder / "dataset.json").write_text(json.dumps(dataset, indent=1))
            written.append(folder)
            self.stdout.write(
                f"{folder}: {len(dataset['outlines'])} outlines in {len(dataset['training_areas'])} training areas, "
                f"{len(dataset['truth'])} in {len(dataset['accuracy_areas'])} accuracy areas"
            )
        self.stdout.write(f"run: python -m workers.experiments run --datasets 'project/{base}*'")
