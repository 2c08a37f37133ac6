import numpy as np
from affine import Affine
from shapely.geometry import Point, Polygon

from workers.ml.config import DetectorConfig, Recipe
from workers.ml.datasets import core_target
from workers.ml.postprocess import detections_to_geojson, instance_labels, labels_to_detections
from workers.ml.raster_io import read_window  # noqa: F401  (import check)

T = Affine(0.5, 0, 500_000, 0, -0.5, 5_200_000)


def _probs_from_discs(discs, shape=(64, 96)):
    from rasterio.features import rasterize

    ids = rasterize(((g, i + 1) for i, g in enumerate(discs)), out_shape=shape, dtype="int32")
    fg = (ids > 0).astype(np.float32)
    core = core_target(ids, 0.45)
    return np.stack([1 - fg, fg, core])


def test_touching_objects_are_split():
    discs = [Point(30, 32).buffer(12), Point(54, 32).buffer(12)]  # touching at x = 42
    probs = _probs_from_discs(discs)
    labels, n = instance_labels(probs, "count", Recipe())
    assert n == 2
    seg_labels, n_seg = instance_labels(probs, "segmentation", Recipe())
    assert n_seg == 1  # a segmentation detector returns the area, not the instances


def test_polygons_valid_single_and_in_image_crs():
    discs = [Point(30, 32).buffer(12), Point(54, 32).buffer(12), Point(80, 20).buffer(6)]
    probs = _probs_from_discs(discs)
    labels, _ = instance_labels(probs, "count", Recipe())
    cfg = DetectorConfig(classes=["disc"])
    dets = labels_to_detections(labels, probs, T, cfg, Recipe())
    assert len(dets) == 3
    for d in dets:
        assert isinstance(d.geometry, Polygon) and d.geometry.geom_type == "Polygon" and d.geometry.is_valid
        x, y = d.geometry.centroid.coords[0]
        assert 500_000 < x < 500_048 and 5_199_968 < y < 5_200_000
        assert d.class_name == "disc" and 0.9 <= d.score <= 1.0
    areas = sorted(d.geometry.area for d in dets)
    assert abs(areas[-1] - np.pi * 12**2 * 0.25) / (np.pi * 36) < 0.2
    fc = detections_to_geojson(dets, "EPSG:32633")
    lon, lat = fc["features"][0]["geometry"]["coordinates"][0][0]
    assert 14 < lon < 16 and 46 < lat < 48
    assert fc["features"][0]["properties"]["class"] == "disc"


def test_bbox_output_and_min_area():
    discs = [Point(30, 32).buffer(12), Point(80, 20).buffer(2)]
    probs = _probs_from_discs(discs)
    labels, _ = instance_labels(probs, "count", Recipe())
    dets = labels_to_detections(labels, probs, Affine.identity(), DetectorConfig(output_type="bbox"),
                                Recipe(min_area_px=30))
    assert len(dets) == 1
    g = dets[0].geometry
    assert g.geom_type == "Polygon" and abs(g.area - g.envelope.area) < 1e-9


def test_multiclass_instances_take_majority_class():
    from rasterio.features import rasterize

    a, b = Point(20, 20).buffer(8), Point(60, 40).buffer(8)
    shape = (64, 96)
    ma = rasterize([(a, 1)], out_shape=shape, dtype="uint8").astype(np.float32)
    mb = rasterize([(b, 1)], out_shape=shape, dtype="uint8").astype(np.float32)
    core = core_target(rasterize([(a, 1), (b, 2)], out_shape=shape, dtype="int32"), 0.45)
    probs = np.stack([1 - ma - mb, ma, mb, core])
    labels, n = instance_labels(probs, "count", Recipe())
    dets = labels_to_detections(labels, probs, Affine.identity(), DetectorConfig(classes=["x", "y"]), Recipe())
    assert sorted(d.class_name for d in dets) == ["x", "y"]
