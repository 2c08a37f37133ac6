"""The official `picterra==4.0.0` client, unchanged, against a live server and a real Celery worker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import rasterio
from shapely.geometry import box, shape

from detectors.models import Annotation, Area, DetectionRun, Detector, DetectorClass, TrainingRun
from imagery.sample import write_sample_geotiff
from picterra.public_api.models import Operation
from tests.public_api.conftest import feature_collection, lonlat
from workers.ml.synthetic_change import tiny_pair


def write_plan(tmp_path, classes: list[str] | None = None, detector_id: str | None = None) -> tuple[dict, object]:
    """A generated 512 px scene of trees, its outlines split between ``classes``, and the four area files."""
    sample = write_sample_geotiff(tmp_path / "trees.tif", size=512, trees=40, seed=3)
    left, top = sample.transform.c, sample.transform.f
    size = 512 * sample.transform.a
    areas = {
        "training_area": box(left, top - size, left + 0.6 * size, top),
        "validation_area": box(left + 0.6 * size, top - size, left + size, top - 0.5 * size),
        "testing_area": box(left + 0.6 * size, top - 0.5 * size, left + size, top),
        "detection_area": box(left + 0.05 * size, top - 0.95 * size, left + 0.95 * size, top - 0.05 * size),
    }
    plan: dict = {"raster": str(sample.path), "outlines": {}}
    for name, geometry in areas.items():
        path = tmp_path / f"{name}.geojson"
        path.write_text(json.dumps(feature_collection([lonlat(geometry, sample.crs)])))
        plan[name] = str(path)
    names = classes or ["object"]
    for index, name in enumerate(names):
        trees = [lonlat(t, sample.crs) for i, t in enumerate(sample.objects) if i % len(names) == index]
        path = tmp_path / f"outlines-{index}.geojson"
        path.write_text(json.dumps(feature_collection(trees)))
        plan["outlines"][name] = str(path)
    if classes:
        plan["classes"] = classes
    if detector_id:
        plan["detector_id"] = detector_id
    bad = tmp_path / "notes.tif"
    bad.write_bytes(b"these are meeting notes, not a raster\n" * 100)
    plan["not_a_raster"] = str(bad)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    return plan, sample


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_official_client_full_flow(official_client, celery_worker_process, owner_key, personas, tmp_path):
    write_plan(tmp_path)
    seen = official_client.run("flow.py", owner_key, str(tmp_path / "plan.json"))

    assert seen["user"]["organization_id"] == str(personas.organization.pk)
    raster = seen["raster"]
    assert raster["status"] == "ready" and raster["name"] == "trees.tif"
    assert raster["folder_id"] == seen["ids"]["folder"] and raster["footprint"]["type"] == "Polygon"
    assert "/{z}/{x}/{y}@1x.png" in raster["tms_url"]

    training = seen["training"]
    assert training["status"] == "success"
    assert 0 <= training["results"]["score"] <= 100
    stats = training["results"]["stats"]
    assert stats["training_areas_count"] == 1 and stats["validation_areas_count"] == 1
    assert stats["assessment_areas_count"] == 1 and stats["training_annotations_count"] > 10
    assert seen["detector_after_training"]["is_runnable"] is True

    # where to label next: refused in plain words before training, then the version's squares, ranked
    assert "Train the detector first" in seen["recommendation_untrained"]
    recommendation = seen["recommendation"]
    assert recommendation["status"] == "success" and recommendation["results"]["type"] == "FeatureCollection"
    suggested = recommendation["results"]["features"]
    stored = TrainingRun.objects.get(detector_id=seen["ids"]["detector"]).suggestions["features"]
    assert len(suggested) == len(stored) and 1 <= len(suggested) <= 5
    assert [f["properties"]["rank"] for f in suggested] == list(range(1, len(suggested) + 1))
    for feature in suggested:
        assert feature["geometry"]["type"] == "Polygon"
        assert feature["properties"]["raster_id"] == seen["ids"]["raster"]
        assert feature["properties"]["reason"] and 0 < feature["properties"]["score"] <= 1

    result = seen["result"]
    assert result["type"] == "FeatureCollection" and len(result["features"]) == 1
    feature = result["features"][0]
    assert feature["properties"]["class_name"] == "object" and feature["geometry"]["type"] == "MultiPolygon"
    found = feature["geometry"]["coordinates"]
    assert len(found) >= 5, "the trained detector should find trees"
    # Every object lies in the detection area that was set from a file.
    run_areas = Area.objects.filter(detector_id=seen["ids"]["detector"], kind=Area.Kind.DETECTION)
    assert run_areas.count() == 1
    from django.contrib.gis.geos import Polygon

    area = run_areas.get().geometry
    for rings in found:
        assert area.buffer(0.0001).contains(Polygon(*[[tuple(p) for p in ring] for ring in rings], srid=4326).centroid)

    assert seen["legacy_result"] == "MultiPolygon"
    assert [c["class"]["name"] for c in seen["operation_results"]["by_class"]] == ["object"]
    assert seen["layer_feature_types"] == ["Polygon"]
    assert seen["vector_layers"][0]["count"] == len(found)
    assert seen["detector_rasters"] == [seen["ids"]["raster"]]
    assert seen["folder_detectors"] == [seen["ids"]["detector"]]
    assert seen["rasters"] == [seen["ids"]["raster"]]

    # A file that is not a raster: the server's reason reaches the script through APIError.
    assert seen["bad_upload"].startswith("Operation ") and "failed" in seen["bad_upload"]
    bad = Operation.objects.filter(kind=Operation.Kind.UPLOAD_RASTER, status="failed").get()
    assert bad.errors and bad.errors[0] in seen["bad_upload"].replace('\\"', '"')
    assert TrainingRun.objects.filter(detector_id=seen["ids"]["detector"], status="succeeded").count() == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_official_client_multiclass(official_client, celery_worker_process, owner_key, personas, tmp_path):
    classes = ["oak", "pine", "birch"]
    detector = Detector.objects.create(organization=personas.organization, name="Three trees", training_steps=500)
    for position, name in enumerate(classes):
        DetectorClass.objects.create(detector=detector, name=name, position=position)
    write_plan(tmp_path, classes=classes, detector_id=str(detector.pk))
    seen = official_client.run("flow.py", owner_key, str(tmp_path / "plan.json"))

    per_class = {
        c.name: Annotation.objects.filter(detector=detector, detector_class=c).count() for c in detector.classes.all()
    }
    assert all(count >= 10 for count in per_class.values()), per_class
    assert seen["training"]["status"] == "success"
    assert [f["properties"]["class_name"] for f in seen["result"]["features"]] == classes
    assert all(f["geometry"]["type"] == "MultiPolygon" for f in seen["result"]["features"])
    assert sum(len(f["geometry"]["coordinates"]) for f in seen["result"]["features"]) >= 5
    assert len(seen["vector_layers"]) == 3


@pytest.mark.django_db(transaction=True)
def test_official_client_other_methods(official_client, celery_worker_process, owner_key, personas, tmp_path, settings):
    """Pagination, edits, deletes, markers, vector layers, folders, grants, errors, non-georeferenced images."""
    settings.PUBLIC_API_PAGE_SIZE = 2
    rasters = [write_sample_geotiff(tmp_path / f"r{i}.tif", size=96, trees=2, seed=i) for i in range(3)]
    sample = rasters[0]
    left, top = sample.transform.c, sample.transform.f
    size = 96 * sample.transform.a
    area = lonlat(box(left + 1, top - size + 1, left + size - 1, top - 1), sample.crs)
    (tmp_path / "area.geojson").write_text(json.dumps(feature_collection([area])))
    fields = [lonlat(box(left + 2, top - 10, left + 10, top - 2), sample.crs)]
    (tmp_path / "layer.geojson").write_text(json.dumps(feature_collection(fields)))
    png = tmp_path / "photo.png"
    PIL.Image.fromarray(np.full((40, 64, 3), 120, dtype=np.uint8)).save(png)
    plan = {
        "rasters": [str(r.path) for r in rasters],
        "detection_area": str(tmp_path / "area.geojson"),
        "vector_layer": str(tmp_path / "layer.geojson"),
        "lng": area.centroid.x,
        "lat": area.centroid.y,
        "png": str(png),
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    seen = official_client.run("methods.py", owner_key, str(tmp_path / "plan.json"))
    ids = seen["rasters"]

    # Newest first, two per page, next/previous followed verbatim.
    assert seen["page1"] == [ids[2], ids[1]] and seen["page2"] == [ids[0]]
    assert seen["page2_previous"] == seen["page1"] and seen["page2_next"] is None
    assert seen["page2_str"].startswith("1 results from http") and "page_number=2" in seen["page2_str"]
    assert seen["search"] == ["r1.tif"] and seen["captured_after"] == 2

    edited = seen["edited"]
    assert edited["name"] == "renamed" and edited["identity_key"] == "plot-7" and edited["cloud_coverage"] == 5
    assert edited["multispectral_band_specification"]["display_bands"][0]["bands"] == [2, 1, 0]
    assert edited["multispectral_band_specification"]["ranges"] == [[0, 200]] * 3
    assert seen["tagged"] == [ids[0]]
    assert seen["download_magic"] in ("49492a00", "4d4d002a")  # a TIFF

    assert seen["marker"]["text"] == "look here" and seen["markers"] == ["look here"]
    assert seen["marker_on_detector"]["detector_id"]
    assert [layer["name"] for layer in seen["layers"]] == ["fields 2024"] and seen["layers"][0]["color"] == "#112233"
    assert seen["has_layers"] == [ids[0]]
    assert [f["geometry"]["type"] for f in seen["layer_download"]["features"]] == ["Polygon"]
    assert seen["layers_after_delete"] == 0

    detector = seen["detector"]
    assert detector["name"] == "Cars v2"
    assert detector["configuration"] == {
        "detection_type": "count",
        "output_type": "polygon",
        "training_steps": 1000,
        "backbone": "resnet50",
        "tile_size": 512,
        "background_sample_ratio": 0.25,
    }
    assert [c["name"] for c in detector["classes"]] == ["object"] and detector["is_runnable"] is False
    assert seen["detectors"] == ["Cars v2"]
    organization = {"type": "organization", "id": str(personas.organization.pk)}
    assert seen["grants"] == {"grants": [{"grantee": organization, "role": "editor"}]}
    assert seen["set_grants"] == seen["grants"]

    errors = seen["errors"]
    assert "training_steps" in errors["edit_detector_bad"]
    assert "training area" in errors["train_without_areas"]
    assert "Train the detector first" in errors["run_untrained"]
    assert "No raster with id" in errors["unknown_raster"]
    assert "only Polygon and MultiPolygon" in errors["bad_annotations"]
    assert errors["remote_import"] is not None and "not available" in errors["remote_import"]
    assert seen["after_delete"] == {"detectors": 0, "rasters": 2}

    xs, ys = zip(*[point for ring in seen["nongeo_pixels"][0] for point in ring], strict=True)
    assert [round(min(xs), 3), round(min(ys), 3), round(max(xs), 3), round(max(ys), 3)] == [0, 0, 64, 40]
    assert seen["png_folder"] != seen["folder"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_official_client_change_detector(official_client, celery_worker_process, owner_key, personas, tmp_path):
    """Two dates of a generated place, the new discs outlined: trained and run with ``secondary_raster_id``."""
    pair = tiny_pair(seed=1, size=256)
    before, after = pair.write(tmp_path / "pair")
    with rasterio.open(after) as src:
        profile, pixels = src.profile, src.read()
    t = profile["transform"]
    profile["transform"] = rasterio.Affine(t.a, t.b, t.c + 5_000.0, t.d, t.e, t.f)  # 5 km away: no overlap
    with rasterio.open(tmp_path / "elsewhere.tif", "w", **profile) as dst:
        dst.write(pixels)
    crs, size = pair.before.crs, 256 * t.a
    left, top = t.c, t.f
    areas = {
        "training_area": box(left, top - size, left + 0.6 * size, top),
        "validation_area": box(left + 0.6 * size, top - size, left + size, top),
    }
    detector = Detector.objects.create(organization=personas.organization, name="New discs", kind="change")
    DetectorClass.objects.create(detector=detector, name="new disc", position=0)
    plan = {"before": str(before), "after": str(after), "elsewhere": str(tmp_path / "elsewhere.tif"),
            "detector_id": str(detector.pk)}
    for name, geometry in areas.items():
        plan[name] = str(tmp_path / f"{name}.geojson")
        Path(plan[name]).write_text(json.dumps(feature_collection([lonlat(geometry, crs)])))
    plan["outlines"] = str(tmp_path / "outlines.geojson")
    changes = [lonlat(pair.to_crs(g), crs) for g, _ in pair.changes]
    Path(plan["outlines"]).write_text(json.dumps(feature_collection(changes)))
    (tmp_path / "plan.json").write_text(json.dumps(plan))

    seen = official_client.run("change_flow.py", owner_key, str(tmp_path / "plan.json"))

    assert seen["detector"]["kind"] == "change"
    assert seen["bad_pair"]["status"] == 400
    assert seen["bad_pair"]["body"]["errors"]["secondary_raster_id"][0].startswith("The two images do not overlap")
    assert seen["pair"] == {"status": 201, "body": {"raster_id": seen["ids"]["before"],
                                                     "secondary_raster_id": seen["ids"]["after"]}}
    assert seen["training"]["status"] == "success", seen["training"]
    assert 0 <= seen["training"]["results"]["score"] <= 100
    assert seen["training"]["results"]["stats"]["validation_annotations_count"] > 0
    assert "This is a change detector: choose the second image too" in seen["errors"]["no_second"]
    assert "The two images do not overlap" in seen["errors"]["elsewhere"]

    run = DetectionRun.objects.get(detector=detector)
    assert run.status == "succeeded" and str(run.second_image_id) == seen["ids"]["after"]
    result = seen["result"]
    assert [f["properties"]["class_name"] for f in result["features"]] == ["new disc"]
    # What it finds are the discs that appeared (not those that stayed or went): a margin far from the 27 of 27
    # a run here found, so a loaded machine's fewer steps still pass.
    found = [shape({"type": "Polygon", "coordinates": r}) for r in result["features"][0]["geometry"]["coordinates"]]
    on_new = [f for f in found if any(c.buffer(1e-5).contains(f.centroid) for c in changes)]
    assert len(on_new) >= len(changes) / 2 and len(on_new) > len(found) / 2, (len(on_new), len(found), len(changes))
