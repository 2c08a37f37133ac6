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

from detectors.models import Annotation, Area, Detector, DetectorImage
from imagery.models import Image
from imagery.storage import get_blob_store
from workers.ml.datasets import outlines_in_areas
from workers.ml.raster_io import ImagePairSource


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
    # A change detector's second date (ready), read onto this image's grid; None for one image.
    second_cog_path: str | None = None

    @property
    def source(self) -> str | ImagePairSource:
        """What the ML core opens (``raster_io.open_image``): the COG, or the pair of dates."""
        return ImagePairSource(self.cog_path, self.second_cog_path) if self.second_cog_path else self.cog_path

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
    attached = (
        DetectorImage.objects.filter(detector=detector, image__status=Image.Status.READY)
        .select_related("image", "second_image")
        .order_by("image__created_at")
    )
    change = detector.kind == Detector.Kind.CHANGE
    for row in attached:
        image, second = row.image, row.second_image
        if change and (second is None or second.status != Image.Status.READY):
            continue  # not a pair yet: training_problems says so
        item = ImageTrainingInputs(
            image_id=str(image.pk),
            image_name=image.name,
            cog_path=store.gdal_path(image.cog_key),
            gdal_env=store.gdal_env(),
            crs=image.crs,
            second_cog_path=store.gdal_path(second.cog_key) if change else None,
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
    problems = pair_problems(detector) if detector.kind == Detector.Kind.CHANGE else []
    if problems:
        return problems
    if not inputs:
        return ["Wait until your images have finished processing, then train."]
    if not any(i.training_areas for i in inputs):
        problems.append("Draw at least one training area: the detector learns only from inside training areas.")
    elif not any(i.training_outlines for i in inputs):
        problems.append(
            "Outline the objects inside your training areas: none of your outlines is inside a training area."
        )
    return problems


def pair_problems(detector: Detector) -> list[str]:
    """A change detector's images without a usable second date: each training image needs one."""
    rows = list(DetectorImage.objects.filter(detector=detector).select_related("image", "second_image"))
    seconds = [r.second_image for r in rows if r.second_image is not None]
    unpaired = sorted(r.image.name for r in rows if r.second_image is None)
    failed = sorted(i.name for i in seconds if i.status == Image.Status.FAILED)
    waiting = sorted(i.name for i in seconds if i.status not in Image.TERMINAL_STATUSES)
    problems = []
    if unpaired:
        problems.append(
            "Choose the second date of each image: a change detector compares every image with a picture of the "
            f"same place at another date (missing for {', '.join(unpaired[:5])})."
        )
    if failed:
        problems.append(f"These second-date images could not be processed, choose others: {', '.join(failed[:5])}.")
    if waiting:
        problems.append(f"Wait until these second-date images have finished processing: {', '.join(waiting[:5])}.")
    return problems
