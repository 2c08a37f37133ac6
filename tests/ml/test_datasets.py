import numpy as np
from rasterio.features import rasterize
from rasterio.windows import Window
from shapely.geometry import Point, box

from workers.ml.config import DetectorConfig, Recipe
from workers.ml.datasets import (
    IGNORE,
    LabelledImage,
    build_samples,
    core_target,
    outlines_in_areas,
    rasterize_targets,
)
from workers.ml.raster_io import geometry_window, image_crs_to_lonlat, lonlat_to_image_crs, open_image, read_window
from workers.ml.samplers import grid_windows, select_chips


def test_pixels_outside_training_areas_are_ignored():
    outlines = [(Point(10, 10).buffer(5), 1), (Point(40, 40).buffer(5), 1)]
    mask, core, _ = rasterize_targets(outlines, [box(0, 0, 32, 32)], (64, 64), 0.45)
    assert mask.shape == (64, 64) and core.shape == (64, 64)
    assert (mask[32:, :] == IGNORE).all() and (mask[:, 32:] == IGNORE).all()
    assert mask[10, 10] == 1 and mask[0, 0] == 0
    # the second object lies outside the area: ignored, never taught as background
    assert mask[40, 40] == IGNORE


def test_an_outline_crossing_an_areas_edge_counts_by_its_inside_part_and_one_outside_counts_for_nothing():
    """The edge rule of training: clipped to the area, the outside unknown; wholly outside (or only touching the
    edge): left out, its pixels changed by nothing."""
    area = box(0, 0, 32, 32)
    crossing = (box(24, 8, 44, 20), "tree")  # 8 px inside, 12 px outside the area
    outside = (box(40, 40, 50, 50), "tree")
    touching = (box(32, 0, 40, 8), "tree")  # shares only the area's edge
    inside = (box(4, 4, 12, 12), "tree")
    kept = outlines_in_areas([crossing, outside, touching, inside], [area])
    assert kept == [crossing, inside]
    assert outlines_in_areas([crossing], []) == []

    mask, _, _ = rasterize_targets([(crossing[0], 1)], [area], (64, 64), 0.45)
    inside_part = rasterize([(crossing[0].intersection(area), 1)], out_shape=(64, 64), dtype="uint8").astype(bool)
    in_area = rasterize([(area, 1)], out_shape=(64, 64), dtype="uint8").astype(bool)
    assert inside_part.sum() == 8 * 12
    assert ((mask == 1) == inside_part).all()  # exactly its inside part is taught as the object
    assert (mask[~in_area] == IGNORE).all()  # the rest of it is unknown, never background
    assert (mask[in_area & ~inside_part] == 0).all()
    with_outside, _, _ = rasterize_targets([(crossing[0], 1), (outside[0], 1)], [area], (64, 64), 0.45)
    assert (with_outside == mask).all()  # the outline outside every area changes nothing


def test_core_target_separates_touching_objects():
    ids = np.zeros((40, 60), np.int32)
    ids[10:30, 5:30] = 1
    ids[10:30, 30:55] = 2
    core = core_target(ids, 0.45)
    assert core[20, 17] == 1 and core[20, 42] == 1
    assert core[:, 28:32].sum() == 0  # a gap between the two cores


def test_build_samples_shapes_and_background_ratio(make_scene_tif):
    path, scene = make_scene_tif(size=128)
    with open_image(str(path)) as src:
        t = src.transform
    item = LabelledImage(str(path), [scene.to_crs(box(0, 0, 128, 128))],
                         [(scene.to_crs(g), c) for g, c in scene.objects])
    cfg = DetectorConfig(classes=["disc"], tile_size=64, background_sample_ratio=0.25)
    samples = build_samples([item], cfg, Recipe(max_chips=12), np.random.default_rng(0))
    assert samples and len(samples) <= 12
    for s in samples:
        assert set(s) == {"image", "mask", "core", "box", "bounds", "crs"} and s["box"].shape == (4, 64, 64)
        assert s["image"].shape == (3, 64, 64) and s["image"].dtype == np.uint8
        assert s["mask"].shape == (64, 64) and s["core"].shape == (64, 64)
    assert geometry_window(item.training_areas[0], t) == Window(0, 0, 128, 128)


def test_select_chips_caps_background_share():
    rng = np.random.default_rng(0)
    keep = select_chips([True] * 6 + [False] * 20, 0.25, 100, rng)
    n_bg = sum(1 for k in keep if k >= 6)
    assert len(keep) - n_bg == 6 and n_bg == 2
    assert len(select_chips([True] * 50 + [False] * 50, 0.5, 20, rng)) == 20


def test_grid_windows_cover_with_overlap():
    wins = grid_windows(Window(0, 0, 1000, 700), 256, 32)
    cover = np.zeros((700, 1000), bool)
    for w in wins:
        assert w.width == 256 and w.height == 256
        cover[w.row_off : w.row_off + 256, w.col_off : w.col_off + 256] = True
    assert cover.all()
    assert max(w.col_off + 256 for w in wins) == 1000


def test_read_window_is_boundless_rgb(make_scene_tif):
    path, scene = make_scene_tif(size=64)
    with open_image(str(path)) as src:
        a = read_window(src, Window(-8, -8, 32, 32))
    assert a.shape == (3, 32, 32) and a.dtype == np.uint8
    assert (a[:, :8, :] == 0).all()
    assert (a[:, 8:, 8:] == scene.image[:, :24, :24]).all()


def test_lonlat_round_trip():
    g = box(500_000, 5_200_000, 500_010, 5_200_010)
    ll = image_crs_to_lonlat(g, "EPSG:32633")
    assert 14 < ll.centroid.x < 16 and 46 < ll.centroid.y < 48
    back = lonlat_to_image_crs(ll.__geo_interface__, "EPSG:32633")
    assert back.symmetric_difference(g).area < 1e-3
