"""What a training run learns from, gathered from the database and put in each image's pixel CRS.

This is the seam between Django and the ML core: the core receives plain shapely geometries in the
image CRS and a readable COG path, never model instances.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.gis.geos import GEOSGeometry
from shapely import wkb
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from detectors.models import Annotation, Area, Detector
from imagery.models import Image
from imagery.storage import get_blob_store
from workers.ml.datasets import outlines_in_areas


@dataclass
class ImageTrainingInputs:
    image_id: str
    image_name: str
    cog_path: str
    gdal_env: dict[str, str]
    crs: str
    training_areas: list[BaseGeometry] = field(default_factory=list)
    testing_areas: list[BaseGeometry] = field(default_factory=list)
    accuracy_areas: list[BaseGeometry] = field(default_factory=list)
    # (outline, name of its class)
    outlines: list[tuple[BaseGeometry, str]] = field(default_factory=list)
    area_ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def training_outlines(self) -> list[tuple[BaseGeometry, str]]:
        """The outlines training learns from (the ML core's edge rule: crossing ones count by their inside part)."""
        return outlines_in_areas(self.outlines, self.training_areas)

    @property
    def accuracy_outlines(self) -> list[tuple[BaseGeometry, str]]:
        region = unary_union(self.accuracy_areas) if self.accuracy_areas else None
        return [(g, c) for g, c in self.outlines if region is not None and g.intersects(region)]


def to_image_crs(geometry: GEOSGeometry, crs: str) -> BaseGeometry:
    """A stored (lon/lat) geometry as a shapely geometry in an image's CRS."""
    return wkb.loads(bytes(geometry.transform(crs, clone=True).wkb))


def gather_training_inputs(detector: Detector) -> list[ImageTrainingInputs]:
    """Areas and outlines per ready image. Training areas exclude accuracy areas: what is scored is never learnt."""
    store = get_blob_store()
    class_names = dict(detector.classes.values_list("pk", "name"))
    inputs = []
    for image in detector.images.filter(status=Image.Status.READY).order_by("created_at"):
        item = ImageTrainingInputs(
            image_id=str(image.pk),
            image_name=image.name,
            cog_path=store.gdal_path(image.cog_key),
            gdal_env=store.gdal_env(),
            crs=image.crs,
        )
        for area in Area.objects.filter(detector=detector, image=image).order_by("created_at"):
            target = {
                Area.Kind.TRAINING: item.training_areas,
                Area.Kind.TESTING: item.testing_areas,
                Area.Kind.ACCURACY: item.accuracy_areas,
            }.get(area.kind)
            if target is not None:
                target.append(to_image_crs(area.geometry, image.crs))
                item.area_ids.setdefault(area.kind, []).append(str(area.pk))
        if item.accuracy_areas:
            scored = unary_union(item.accuracy_areas)
            kept = [a.difference(scored) for a in item.training_areas]
            item.training_areas = [a for a in kept if not a.is_empty]
        for outline in Annotation.objects.filter(detector=detector, image=image).order_by("created_at"):
            item.outlines.append((to_image_crs(outline.geometry, image.crs), class_names[outline.detector_class_id]))
        inputs.append(item)
    return inputs


def training_stats(detector: Detector, inputs: list[ImageTrainingInputs]) -> dict[str, int]:
    """The public API's training statistics (spec section 7)."""
    return {
        "rasters_count": len(inputs),
        "training_areas_count": sum(len(i.area_ids.get(Area.Kind.TRAINING, [])) for i in inputs),
        "assessment_areas_count": sum(len(i.testing_areas) for i in inputs),
        "validation_areas_count": sum(len(i.accuracy_areas) for i in inputs),
        "total_annotations_count": sum(len(i.outlines) for i in inputs),
        "training_annotations_count": sum(len(i.training_outlines) for i in inputs),
        "validation_annotations_count": sum(len(i.accuracy_outlines) for i in inputs),
    }


def training_problems(detector: Detector, inputs: list[ImageTrainingInputs]) -> list[str]:
    """Why training cannot start yet, in the words a first-time user needs."""
    if not detector.images.exists():
        return ["Add an image to the detector first."]
    if not inputs:
        return ["Wait until your images have finished processing, then train."]
    problems = []
    if not any(i.training_areas for i in inputs):
        problems.append("Draw at least one training area: the detector learns only from inside training areas.")
    elif not any(i.training_outlines for i in inputs):
        problems.append(
            "Outline the objects inside your training areas: none of your outlines is inside a training area."
        )
    return problems
