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


def _reference_detections(labels, probs, transform, config, recipe, keep=None):
    """The straightforward pipeline: trace every label of the whole image with GDAL (``rasterio``'s
    ``shapes``), ``shape()`` each part, filter."""
    from rasterio.features import shapes
    from scipy import ndimage
    from shapely.geometry import box, shape

    from workers.ml.raster_io import pixels_to_geometry

    n = int(labels.max())
    idx = np.arange(1, n + 1)
    scores = ndimage.mean(1.0 - probs[0], labels, idx)
    cls = np.stack([ndimage.mean(probs[1 + k], labels, idx) for k in range(probs.shape[0] - 2)]).argmax(0)
    best = {}
    for geom, value in shapes(labels, mask=labels > 0, connectivity=4):
        poly, v = shape(geom), int(value)
        if v not in best or poly.area > best[v].area:
            best[v] = poly
    out = []
    # objects in reading order of their outline's first vertex, the top-left corner of its top row
    for v, poly in sorted(best.items(), key=lambda vp: vp[1].exterior.coords[0][::-1]):
        if poly.area < recipe.min_area_px or (keep is not None and not keep.contains(poly.representative_point())):
            continue
        fast = poly.simplify(recipe.simplify_px, preserve_topology=False)
        careful = fast.is_empty or not fast.is_valid or fast.geom_type != "Polygon"
        poly = poly.simplify(recipe.simplify_px, preserve_topology=True) if careful else fast
        if config.output_type == "bbox":
            poly = box(*poly.bounds)
        out.append((config.classes[int(cls[v - 1])], float(scores[v - 1]), pixels_to_geometry(poly, transform).wkb))
    return out


def test_prefiltered_tracing_matches_whole_image_tracing():
    """Masking instances off before tracing (too small, or boxed off ``keep``), tracing with array operations
    and building polygons in one call give exactly the polygons, order, classes and scores of tracing
    everything with GDAL and ``shape()``."""
    from rasterio.features import rasterize
    from shapely.geometry import box

    shape_ = (80, 90)
    geoms = [Point(20, 20).buffer(9), Point(37, 20).buffer(9),  # touching pair
             box(0, 30, 12, 50), box(70, 0, 90, 14),  # on the image edge
             Point(45, 60).buffer(12).difference(Point(45, 60).buffer(4)),  # with a hole
             box(60, 40, 66, 46), box(76, 40, 82, 46),  # one instance in two parts
             box(50, 5, 52, 7),  # below min_area
             box(2, 70, 10, 78)]  # inside the margin only
    values = [1, 2, 3, 4, 5, 6, 6, 7, 8]
    labels = rasterize(list(zip(geoms, values, strict=True)), out_shape=shape_, dtype="int32")
    rng = np.random.default_rng(0)
    fg = (labels > 0).astype(np.float32) * rng.uniform(0.6, 1.0, shape_).astype(np.float32)
    a = fg * rng.uniform(0, 1, shape_).astype(np.float32)
    probs = np.stack([1 - fg, a, fg - a, np.zeros(shape_, np.float32)])
    keep = box(4, 4, 82, 68)  # the edge objects' representative points fall inside, the last one's not
    for cfg in (DetectorConfig(classes=["x", "y"]), DetectorConfig(classes=["x", "y"], output_type="bbox")):
        for k in (None, keep):
            got = labels_to_detections(labels, probs, T, cfg, Recipe(), keep=k)
            assert [(d.class_name, d.score, d.geometry.wkb) for d in got] == \
                _reference_detections(labels, probs, T, cfg, Recipe(), keep=k)
            assert all(d.geometry.geom_type == "Polygon" for d in got)
    n_all = len(labels_to_detections(labels, probs, T, DetectorConfig(classes=["x", "y"]), Recipe()))
    n_keep = len(labels_to_detections(labels, probs, T, DetectorConfig(classes=["x", "y"]), Recipe(), keep=keep))
    assert n_all == 7 and n_keep == 6  # the tiny one never; the margin-only one only without keep


def _reference_instance_labels(probs, recipe):
    """Seeded growth written plainly: full distance transform, ``np.isin``, ``np.unique`` relabelling."""
    from scipy import ndimage

    fg = 1.0 - probs[0] > recipe.fg_threshold
    seeds, n = ndimage.label((probs[-1] > recipe.seed_threshold) & fg)
    sizes = ndimage.sum_labels(np.ones_like(seeds), seeds, index=np.arange(1, n + 1))
    seeds[np.isin(seeds, np.flatnonzero(sizes < 3) + 1)] = 0
    comps, _ = ndimage.label(fg)
    labels = np.zeros(fg.shape, np.int64)
    if seeds.any():
        _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
        grown = seeds[iy, ix]
        seed_comp = {int(s): int(c) for s, c in zip(seeds[seeds > 0], comps[seeds > 0], strict=True)}
        same = np.vectorize(lambda g, c: seed_comp.get(int(g)) == c)(grown, comps) & fg
        labels[same] = grown[same]
    seeded = set(comps[seeds > 0].tolist())
    orphan = fg & ~np.isin(comps, list(seeded))
    labels[orphan] = comps[orphan] + seeds.max()
    ids = np.unique(labels)
    return np.searchsorted(ids, labels).astype(np.int32), len(ids) - 1


def test_seeded_growth_matches_plain_version():
    """One seed: the whole blob unless a closer seed is across the background (then those pixels are
    dropped, as before); no seed or only specks under 3 px: one object; several seeds: nearest one wins."""
    h, w = 40, 60
    fg = np.zeros((h, w), bool)
    core = np.zeros((h, w), np.float32)
    fg[5:15, 5:45] = True  # blob A: two seeds at its ends
    core[9:11, 7:10] = 1
    core[9:11, 40:43] = 1
    fg[17:30, 5:20] = True  # blob B: one seed, its top rows nearer to blob A's left seed
    core[25:27, 10:13] = 1
    fg[20:30, 30:40] = True  # blob C: no seed
    fg[32:38, 45:55] = True  # blob D: a 2-pixel speck only
    core[34, 48:50] = 1
    probs = np.stack([1 - fg, fg, core]).astype(np.float32)
    labels, n = instance_labels(probs, "count", Recipe())
    ref, n_ref = _reference_instance_labels(probs, Recipe())
    assert n == n_ref == 5 and np.array_equal(labels, ref)
    a = labels[5:15, 5:45]
    assert len(np.unique(a)) == 2 and (a[:, :19] == a[0, 0]).all() and (a[:, 21:] == a[0, -1]).all()
    b = labels[17:30, 5:20]
    assert (b[0] == 0).any() and len(np.unique(b[b > 0])) == 1  # dropped where A's seed is nearer
    for sl in (np.s_[20:30, 30:40], np.s_[32:38, 45:55]):
        assert len(np.unique(labels[sl])) == 1 and labels[sl].min() > 0
    # blobs of random shapes and many seeds
    from scipy import ndimage

    rng = np.random.default_rng(3)
    field = ndimage.gaussian_filter(rng.normal(size=(120, 150)), 4)
    fg = field > 0.02
    core = (ndimage.gaussian_filter(rng.normal(size=fg.shape), 2) > 0.08).astype(np.float32)
    probs = np.stack([1 - fg, fg, core]).astype(np.float32)
    labels, n = instance_labels(probs, "count", Recipe())
    ref, n_ref = _reference_instance_labels(probs, Recipe())
    assert n == n_ref > 10 and np.array_equal(labels, ref)


def test_simplifying_never_loses_or_breaks_a_small_or_thin_object():
    """Plain Douglas-Peucker collapses a thin sliver and can make a notched shape cross itself; those
    objects are simplified again with the topology-preserving variant instead of being dropped."""
    from rasterio.features import rasterize
    from shapely.geometry import box

    shape_ = (40, 60)
    sliver = box(5, 5, 45, 6)  # 40 x 1 px
    comb = box(5, 15, 45, 35).difference(box(10, 15, 11, 33)).difference(box(20, 17, 21, 35))
    labels = rasterize([(sliver, 1), (comb, 2)], out_shape=shape_, dtype="int32")
    fg = (labels > 0).astype(np.float32)
    probs = np.stack([1 - fg, fg, np.zeros(shape_, np.float32)])
    recipe = Recipe(simplify_px=1.5)
    got = labels_to_detections(labels, probs, Affine.identity(), DetectorConfig(classes=["x"]), recipe)
    assert len(got) == 2
    assert all(d.geometry.geom_type == "Polygon" and d.geometry.is_valid and d.geometry.area > 0 for d in got)


def test_peak_seeds_split_touching_objects_whose_cores_merge():
    # two crowns in closed canopy: one foreground blob, and a core map whose saddle between the two centres
    # stays above the threshold, so its connected region is one seed; its local maxima are two
    yy, xx = np.mgrid[0:64, 0:96].astype(np.float32)
    bump = [h * np.exp(-((xx - cx) ** 2 + (yy - 32) ** 2) / (2 * 9.0**2)) for cx, h in ((36, 1.0), (56, 0.95))]
    core = np.maximum(*bump)
    fg = ((xx - 46) ** 2 / 26**2 + (yy - 32) ** 2 / 14**2 < 1).astype(np.float32)
    probs = np.stack([1 - fg, fg, core * fg])
    assert instance_labels(probs, "count", Recipe())[1] == 1
    labels, n = instance_labels(probs, "count", Recipe(seed_radius_px=8))
    assert n == 2
    # each pixel goes to its nearest peak: the split runs between the two centres
    assert labels[32, 36] != labels[32, 56] and labels[32, 36] > 0 and labels[32, 56] > 0
    # peaks closer than the radius are one object
    assert instance_labels(probs, "count", Recipe(seed_radius_px=24))[1] == 1


def _reference_peak_labels(probs, recipe):
    """Peak-seeded growth written plainly: the peaks grown by ``binary_dilation``, the whole window's distance
    transform looked up everywhere, ``np.isin`` and ``np.unique`` relabelling (what ``instance_labels`` did
    before it skipped the background)."""
    from scipy import ndimage

    fg = 1.0 - probs[0] > recipe.fg_threshold
    core = probs[-1]
    size = 2 * int(round(recipe.seed_radius_px)) + 1
    peaks = (core == ndimage.maximum_filter(core, size=size)) & (core > recipe.peak_threshold) & fg
    seeds, _ = ndimage.label(ndimage.binary_dilation(peaks) & fg)
    comps, _ = ndimage.label(fg)
    labels = np.zeros(fg.shape, np.int64)
    _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    grown = seeds[iy, ix]
    seed_comp = {int(s): int(c) for s, c in zip(seeds[seeds > 0], comps[seeds > 0], strict=True)}
    same = np.vectorize(lambda g, c: seed_comp.get(int(g)) == c)(grown, comps) & fg
    labels[same] = grown[same]
    orphan = fg & ~np.isin(comps, list(seed_comp.values()))
    labels[orphan] = comps[orphan] + seeds.max()
    ids = np.unique(labels)
    return np.searchsorted(ids, labels).astype(np.int32), len(ids) - 1


def test_peak_seeded_growth_matches_plain_version():
    """Touching crowns of random sizes (a canopy), crowns cut by the window's edges, flat-topped cores whose
    plateaus give several equal peaks (ties in the nearest-seed growth) and peaks next to the edge: the same
    labels, pixel for pixel, as the plain version."""
    from rasterio.features import rasterize
    from scipy import ndimage

    rng = np.random.default_rng(7)
    shape_ = (150, 190)
    centres = rng.uniform([-5, -5], [shape_[1] + 5, shape_[0] + 5], (120, 2))
    discs = [Point(x, y).buffer(r) for (x, y), r in zip(centres, rng.uniform(3, 11, len(centres)), strict=True)]
    ids = rasterize(((g, i + 1) for i, g in enumerate(discs)), out_shape=shape_, dtype="int32")
    fg = (ids > 0).astype(np.float32)
    for flat in (False, True):
        core = core_target(ids, 0.45)
        if flat:  # quantized: plateaus of equal maxima
            core = np.round(core * 4) / 4
        else:
            core = ndimage.gaussian_filter(core, 1.5) + rng.uniform(0, 0.02, shape_).astype(np.float32)
        probs = np.stack([1 - fg, fg, core.astype(np.float32) * fg])
        for radius in (2.0, 4.0, 7.0):
            recipe = Recipe(seed_radius_px=radius, vote_seeds=False)
            labels, n = instance_labels(probs, "count", recipe)
            ref, n_ref = _reference_peak_labels(probs, recipe)
            assert n == n_ref > 20 and np.array_equal(labels, ref)


def test_keep_filter_matches_find_objects_and_point_on_surface():
    """The keep filter's shortcuts give what they replace: instances whose pixels' box meets ``keep``'s box
    (``find_objects``), and representative points inside ``keep`` (rectangles, ones with fractional or
    outside bounds, a non-rectangular ``keep``), for polygons inside, across and along its edges."""
    import shapely
    from rasterio.features import rasterize
    from scipy import ndimage
    from shapely.geometry import box

    from workers.ml.postprocess import _boxes_meet, points_on_surface_in

    rng = np.random.default_rng(5)
    shape_ = (60, 80)
    geoms = [box(x, y, x + w, y + h) for x, y, w, h in rng.integers([-4, -4, 1, 1], [80, 60, 9, 9], (70, 4))]
    values = rng.integers(1, 40, len(geoms))  # repeated values: instances in several parts
    labels = rasterize(list(zip(geoms, values.tolist(), strict=True)), out_shape=shape_, dtype="int32")
    counts = np.bincount(labels.ravel())
    keeps = [box(8, 8, 72, 52), box(7.5, 3.2, 40.7, 59.9), box(-10, -10, 20, 90), box(100, 0, 120, 10),
             Polygon([(5, 5), (75, 10), (30, 55)])]  # fmt: skip
    for x, y in rng.uniform([-5, -5], [85, 65], (30, 2)):  # edges on and between pixel edges
        w, h = rng.uniform(1, 50, 2)
        keeps.append(box(round(x), round(y), x + w, y + h) if rng.random() < 0.5 else box(x, y, round(x + w), y + h))
    parts = np.asarray(geoms + [box(8, 20, 12, 24), box(20, 8, 24, 12), box(71, 20, 72, 24)], dtype=object)
    for keep in keeps:
        x0, y0, x1, y1 = keep.bounds
        expected = np.zeros(counts.size, bool)
        for v, sl in enumerate(ndimage.find_objects(labels), 1):
            if sl is not None:
                expected[v] = sl[1].start < x1 and sl[1].stop > x0 and sl[0].start < y1 and sl[0].stop > y0
        assert np.array_equal(_boxes_meet(labels, counts, keep.bounds), expected)
        direct = shapely.contains(keep, shapely.point_on_surface(parts))
        assert np.array_equal(points_on_surface_in(parts, keep), direct)


def _reference_vote_labels(fg, weight, boxes, recipe):
    """Vote grouping written plainly: ``ndimage.center_of_mass`` of the peaks' plateaus and an unbounded
    nearest-centre query for every vote (what ``vote_labels`` did before it bounded the search)."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    h, w = fg.shape
    ys, xs = np.nonzero(fg)
    bw, bh = np.exp(boxes[0][ys, xs]), np.exp(boxes[1][ys, xs])
    vx, vy = xs + 0.5 + boxes[2][ys, xs] * bw, ys + 0.5 + boxes[3][ys, xs] * bh
    at = np.clip(vy.astype(np.intp), 0, h - 1) * w + np.clip(vx.astype(np.intp), 0, w - 1)
    sigma = max(1.0, recipe.seed_radius_px / 3)
    heat = ndimage.gaussian_filter(np.bincount(at, weights=weight[ys, xs], minlength=h * w).reshape(h, w), sigma)
    size = 2 * int(round(recipe.seed_radius_px)) + 1
    floor = recipe.peak_threshold * max(recipe.min_area_px, 1.0) / (2 * np.pi * sigma**2)
    plateaus, n = ndimage.label((heat == ndimage.maximum_filter(heat, size=size)) & (heat > floor))
    centres = np.asarray(ndimage.center_of_mass(plateaus > 0, plateaus, range(1, n + 1)))
    dist, nearest = cKDTree(centres[:, ::-1] + 0.5).query(np.column_stack([vx, vy]))
    near = dist <= np.maximum(bw, bh) / 2
    labels = np.zeros(fg.shape, np.int64)
    labels[ys[near], xs[near]] = nearest[near] + 1
    ids = np.unique(labels)
    return np.searchsorted(ids, labels).astype(np.int32), len(ids) - 1


def test_vote_grouping_matches_plain_version():
    """Touching objects of varied sizes, cut by the window's edges, whose pixels vote for their centre with
    noise (some votes far off, some sizes tiny): the same labels as the plain version."""
    from rasterio.features import rasterize

    from workers.ml.postprocess import vote_labels

    rng = np.random.default_rng(11)
    shape_ = (140, 180)
    centres = rng.uniform([-4, -4], [shape_[1] + 4, shape_[0] + 4], (90, 2))
    radii = rng.uniform(3, 12, len(centres))
    ids = rasterize(((Point(x, y).buffer(r), i + 1) for i, ((x, y), r) in enumerate(zip(centres, radii, strict=True))),
                    out_shape=shape_, dtype="int32")  # fmt: skip
    yy, xx = np.mgrid[: shape_[0], : shape_[1]] + 0.5
    side = np.where(ids > 0, 2 * np.r_[1, radii][ids], 4.0) * np.exp(rng.normal(0, 0.3, shape_))
    boxes = np.stack([np.log(side), np.log(side * rng.uniform(0.7, 1.3, shape_)),
                      (np.r_[0, centres[:, 0]][ids] - xx) / side + rng.normal(0, 0.15, shape_),
                      (np.r_[0, centres[:, 1]][ids] - yy) / side + rng.normal(0, 0.15, shape_)]).astype(np.float32)
    fg = ids > 0
    weight = np.where(fg, rng.uniform(0.55, 1.0, shape_), 0.2).astype(np.float32)
    for radius in (3.0, 6.0):
        recipe = Recipe(seed_radius_px=radius, min_area_px=8.0)
        labels, n = vote_labels(fg, weight, boxes, recipe)
        ref, n_ref = _reference_vote_labels(fg, weight, boxes, recipe)
        assert n == n_ref > 30 and np.array_equal(labels, ref)
