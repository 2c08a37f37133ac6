"""Per-pixel probabilities -> object instances -> polygons (one shapely ``Polygon`` per object, never a
MultiPolygon), in the image CRS and as lon/lat GeoJSON.

Count detectors grow *seeds* (connected regions of the predicted core map, or its local maxima a fitted
distance apart) over the predicted foreground, each foreground pixel going to its nearest seed: touching
objects whose cores are apart come out separate.
Segmentation detectors return the connected regions of each class.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import shapely
from affine import Affine
from scipy import ndimage
from scipy.spatial import cKDTree
from shapely import make_valid
from shapely.geometry import Polygon, mapping
from shapely.geometry.base import BaseGeometry

from .config import DetectorConfig, Recipe
from .raster_io import image_crs_to_lonlat
from .tracing import largest_parts


@dataclass
class Detection:
    """One object: a Polygon in the image CRS, its class name and a score in [0, 1]."""

    geometry: Polygon
    class_name: str
    score: float


def at_stride(maps: np.ndarray, n_probs: int, recipe: Recipe, stride: int) -> tuple[np.ndarray, Recipe]:
    """``predict_array``'s maps (``n_probs`` probabilities, then any box channels) averaged over ``stride`` x
    ``stride`` pixel blocks, and ``recipe`` with its pixel sizes (areas, seed spacing) in those blocks: instances
    and outlines found on these, traced back through the transform scaled by ``stride``, cost about 1/stride² as
    much. The decoder's head is at stride 2, so at 2 little is lost. Log box sizes become the
    blocks' (minus log stride); centre offsets, in box sides, are unchanged. ``simplify_px`` stays as it is: it
    is what removes the traced grid's staircase, whatever that grid's pixel. Sides not divisible by ``stride``
    are padded with background."""
    if stride == 1:
        return maps, recipe
    c, h, w = maps.shape
    ph, pw = -h % stride, -w % stride
    if ph or pw:
        padded = np.zeros((c, h + ph, w + pw), maps.dtype)
        padded[0] = 1.0
        padded[:, :h, :w] = maps
        maps = padded
    # the blocks' pixels added in the same order as from zero (0 + x is x exactly), without the zeroed array
    blocks = [maps[:, dy::stride, dx::stride] for dy in range(stride) for dx in range(stride)]
    out = np.add(blocks[0], blocks[1], dtype=np.float32)
    for block in blocks[2:]:
        out += block
    out /= stride * stride
    out[n_probs : n_probs + 2] -= np.float32(np.log(stride))
    return out, recipe_at_stride(recipe, stride)


def recipe_at_stride(recipe: Recipe, stride: int) -> Recipe:
    """``recipe`` with its pixel sizes (areas, seed spacing) in ``stride`` x ``stride`` blocks, for maps at that
    stride (``at_stride``'s, or the network's own at its head's stride)."""
    if stride == 1:
        return recipe
    return replace(recipe, postprocess_stride=1, min_area_px=recipe.min_area_px / stride**2,
                   max_area_px=recipe.max_area_px / stride**2, seed_radius_px=recipe.seed_radius_px / stride)


def instance_labels(probs: np.ndarray, detection_type: str, recipe: Recipe,
                    boxes: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """(n_classes + 2, H, W) probabilities (background, classes..., core) -> int32 instance labels, count.

    Count detectors: each foreground pixel of a seeded blob takes its nearest seed when that seed is in the
    same blob (else it is dropped); blobs without a seed are one object each. Ids are compact (seeds, then
    seedless blobs) and are assigned through lookup tables: one pass per step, no sort, no ``np.isin``.
    With ``recipe.vote_seeds`` and a box map with centre offsets (``boxes``, (4, H, W)), objects are grouped
    by the centres their pixels vote for instead (``vote_labels``).
    """
    n_classes = probs.shape[0] - 2
    fg = (1.0 - probs[0]) > recipe.fg_threshold
    if detection_type == "segmentation":
        cls = probs[1 : n_classes + 1].argmax(0)
        labels = np.zeros(fg.shape, np.int32)
        total = 0
        for k in range(n_classes):
            lab, n = ndimage.label(fg & (cls == k))
            on = lab > 0
            labels[on] = lab[on] + total
            total += n
        return labels, total
    if recipe.vote_seeds and boxes is not None and boxes.shape[0] >= 4 and recipe.seed_radius_px >= 1:
        return vote_labels(fg, 1.0 - probs[0], boxes, recipe)
    comps, n_comps = ndimage.label(fg)
    if n_comps == 0:
        return np.zeros(fg.shape, np.int32), 0
    seeds, n_seeds = ndimage.label(_seed_mask(probs[-1], fg, recipe))
    # seed pixels are few: the size and the blob of each seed from them alone
    at = np.flatnonzero(seeds)
    sid = seeds.ravel()[at]
    seed_comp = np.zeros(n_seeds + 1, np.int32)
    seed_comp[sid] = comps.ravel()[at]
    # connected-region seeds under 3 pixels are noise; a peak is one pixel grown by one (up to 5)
    kept = np.bincount(sid, minlength=n_seeds + 1) >= (1 if recipe.seed_radius_px >= 1 else 3)
    kept[0] = False
    n_kept = int(kept.sum())
    seed_id = (np.cumsum(kept) * kept).astype(np.int32)  # kept seeds -> 1..n_kept, others -> 0
    per_comp = np.bincount(seed_comp[kept], minlength=n_comps + 1)
    orphan = np.flatnonzero(per_comp == 0)[1:]
    comp_id = np.zeros(n_comps + 1, np.int32)
    comp_id[orphan] = np.arange(n_kept + 1, n_kept + 1 + orphan.size, dtype=np.int32)
    labels = comp_id[comps]  # seedless blobs done; seeded blobs still 0
    if n_kept:
        kseeds = seed_id[seeds]
        # nearest kept seed of every pixel (indices only: the distances are not needed)
        iy, ix = ndimage.distance_transform_edt(kseeds == 0, return_distances=False, return_indices=True)
        id_comp = np.zeros(n_kept + 1, np.int32)
        id_comp[seed_id[kept]] = seed_comp[kept]
        # only the seeded blobs' pixels (under half the window) take a seed: background and seedless blobs
        # never match a seed's blob
        seeded = per_comp > 0
        seeded[0] = False
        px = np.flatnonzero(seeded[comps])
        grown = kseeds.ravel()[iy.ravel()[px].astype(np.intp) * fg.shape[1] + ix.ravel()[px]]
        # growth must not jump across background into another blob: such pixels stay 0 (dropped)
        mine = id_comp[grown] == comps.ravel()[px]
        labels.ravel()[px[mine]] = grown[mine]
    # every kept seed holds at least its own pixels, so ids 1..n_kept + orphans are all present
    return labels, n_kept + int(orphan.size)


def vote_labels(fg: np.ndarray, weight: np.ndarray, boxes: np.ndarray, recipe: Recipe) -> tuple[np.ndarray, int]:
    """Instances grouped by voted centres: every foreground pixel votes for its box's centre (its offset times
    its predicted side), the votes (weighted by the foreground probability) are summed into a map smoothed
    over a third of ``seed_radius_px``, its local maxima ``seed_radius_px`` apart holding at least
    ``peak_threshold`` x ``min_area_px`` pixels' worth of votes are the objects, and each pixel joins the
    object nearest its vote if that is within half its predicted box's longer side (else it is dropped)."""
    h, w = fg.shape
    ys, xs = np.nonzero(fg)
    if ys.size == 0:
        return np.zeros(fg.shape, np.int32), 0
    bw, bh = np.exp(boxes[0][ys, xs]), np.exp(boxes[1][ys, xs])
    vx = xs + 0.5 + boxes[2][ys, xs] * bw
    vy = ys + 0.5 + boxes[3][ys, xs] * bh
    at = np.clip(vy.astype(np.intp), 0, h - 1) * w + np.clip(vx.astype(np.intp), 0, w - 1)
    heat = np.bincount(at, weights=weight[ys, xs], minlength=h * w).reshape(h, w)
    sigma = max(1.0, recipe.seed_radius_px / 3)
    heat = ndimage.gaussian_filter(heat, sigma)
    size = 2 * int(round(recipe.seed_radius_px)) + 1
    floor = recipe.peak_threshold * max(recipe.min_area_px, 1.0) / (2 * np.pi * sigma**2)
    # a plateau of equal maxima (votes split between neighbouring pixels) is one peak, at its centroid
    plateaus, n_peaks = ndimage.label((heat == ndimage.maximum_filter(heat, size=size)) & (heat > floor))
    labels = np.zeros(fg.shape, np.int32)
    if n_peaks == 0:
        return labels, 0
    py, px = _plateau_centres(plateaus, n_peaks)
    reach = np.maximum(bw, bh) / 2
    dist, nearest = _nearest_within(cKDTree(np.column_stack([px + 0.5, py + 0.5])), np.column_stack([vx, vy]), reach)
    near = dist <= reach
    labels[ys[near], xs[near]] = nearest[near].astype(np.int32) + 1
    # compact ids: a peak no pixel joined is no object
    used = np.zeros(py.size + 1, bool)
    used[labels.ravel()] = True
    used[0] = False
    ids = (np.cumsum(used) * used).astype(np.int32)
    return ids[labels], int(used.sum())


def _plateau_centres(plateaus: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the centroids of labels 1..n, ``ndimage.center_of_mass`` of ``plateaus > 0`` from
    the labelled pixels alone (the same sums of whole numbers, so the same floats; it scanned the window)."""
    at = np.flatnonzero(plateaus)
    ids = plateaus.ravel()[at]
    ys, xs = np.divmod(at, plateaus.shape[1])
    count = np.bincount(ids, minlength=n + 1)[1:].astype(np.float64)
    return (np.bincount(ids, weights=ys, minlength=n + 1)[1:] / count,
            np.bincount(ids, weights=xs, minlength=n + 1)[1:] / count)


def _nearest_within(tree: cKDTree, points: np.ndarray, reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``tree.query(points)`` where it matters: the nearest tree point of each point whose distance is within
    its ``reach``; the others get an infinite distance. Points are queried in groups of similar reach, each
    with that as the search's bound, which prunes the search (a third of ``vote_labels``' time unbounded);
    a bound never changes the nearest point found within it."""
    dist = np.full(len(points), np.inf)
    nearest = np.zeros(len(points), np.intp)
    group = np.ceil(np.log2(np.maximum(reach, 1e-3)) * 4)  # reaches within a factor 2^(1/4)
    for g in np.unique(group):
        sel = np.flatnonzero(group == g)
        bound = float(reach[sel].max()) * (1 + 1e-9) + 1e-9
        dist[sel], nearest[sel] = tree.query(points[sel], distance_upper_bound=bound)
    return dist, nearest


def _seed_mask(core: np.ndarray, fg: np.ndarray, recipe: Recipe) -> np.ndarray:
    """Where seeds are: the core map's local maxima ``recipe.seed_radius_px`` apart (grown by a pixel so a
    peak on a plateau's edge still joins it), or, without a radius, the core map over its threshold."""
    if recipe.seed_radius_px < 1:
        return (core > recipe.seed_threshold) & fg
    size = 2 * int(round(recipe.seed_radius_px)) + 1
    peaks = (core == ndimage.maximum_filter(core, size=size)) & (core > recipe.peak_threshold) & fg
    # ``ndimage.binary_dilation`` (4-neighbours) written for a few thousand pixels: it scanned the window
    ys, xs = np.nonzero(peaks)
    h, w = peaks.shape
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        peaks[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)] = True
    return peaks & fg


def labels_to_detections(labels: np.ndarray, probs: np.ndarray, transform: Affine, config: DetectorConfig,
                         recipe: Recipe, keep: Polygon | None = None,
                         box_sizes: np.ndarray | None = None) -> list[Detection]:
    """Trace each instance, keep its largest part, simplify, filter by area and score and (optionally) keep
    only objects whose representative point falls in ``keep`` (pixel coordinates) so adjacent windows do not
    report the same object twice. Geometries are returned in the CRS of ``transform``.

    With ``box_sizes`` (the box-size head's (2, H, W) log width / height in pixels, then with a centre head
    the offsets to the box's centre in box sides) and ``bbox`` output, an object's box is the predicted size
    about the object's centre (both averaged over its pixels, weighted by the core probability; the centre
    voted by the offsets when there are any) rather than the box around its region: the head learns how the
    user draws boxes.

    Instances that cannot pass (fewer pixels than ``min_area_px``, a score under ``min_score``, or a bounding
    box off ``keep``) are masked out before tracing: tracing and building polygons is most of the cost."""
    # sums over the instances' pixels only (the background is most of the window), in the same order
    at = np.flatnonzero(labels)
    ids = labels.ravel()[at]
    counts = np.bincount(ids)
    n = counts.size - 1
    if n <= 0:
        return []
    nz = np.maximum(counts, 1)
    scores = np.bincount(ids, weights=1.0 - probs[0].ravel()[at], minlength=n + 1) / nz
    n_classes = probs.shape[0] - 2
    if n_classes > 1:
        means = np.stack([np.bincount(ids, weights=probs[1 + k].ravel()[at], minlength=n + 1) / nz
                          for k in range(n_classes)])
        cls = means.argmax(0)
    else:
        cls = np.zeros(n + 1, np.intp)
    # a part's area is at most its instance's pixel count; the representative point lies in its pixels' box
    cand = (counts >= recipe.min_area_px) & (scores >= recipe.min_score)
    if recipe.max_area_px > 0:  # far larger than any outline: merged objects, not one
        cand &= counts <= recipe.max_area_px
    cand[0] = False
    if keep is not None:
        cand &= _boxes_meet(labels, counts, keep.bounds)
    if not cand.any():
        return []
    values, polys, _ = largest_parts(np.where(cand[labels], labels, 0), recipe.min_area_px)
    if keep is not None and polys.size:
        inside = points_on_surface_in(polys, keep)
        values, polys = values[inside], polys[inside]
    if recipe.simplify_px > 0 and polys.size:
        # plain Douglas-Peucker is ~10x faster than the topology-preserving variant; the few shapes it
        # breaks (small ones collapse to empty or cross themselves) are redone with the careful one
        fast = shapely.simplify(polys, recipe.simplify_px, preserve_topology=False)
        fine = _valid_polygons(fast)
        if not fine.all():  # only the redone shapes need checking again
            bad = ~fine
            fast[bad] = shapely.simplify(polys[bad], recipe.simplify_px, preserve_topology=True)
            fine[bad] = _valid_polygons(fast[bad])
        polys = fast
    else:
        fine = _valid_polygons(polys)
    out_polys: list[Polygon] = []
    out_values: list[int] = []
    for value, poly, ok in zip(values.tolist(), polys, fine, strict=True):
        single = poly if ok else _single_polygon(poly)
        if single is not None:
            out_polys.append(single)
            out_values.append(value)
    if box_sizes is not None and config.output_type == "bbox":
        regions = shapely.bounds(np.asarray(out_polys, dtype=object)) if out_polys else np.empty((0, 4))
        geoms = _pixels_to_crs(_regressed_boxes(labels, probs[-1], box_sizes, out_values, regions,
                                                recipe.box_region_share), transform)
    else:
        geoms = _pixels_to_crs(out_polys, transform, bbox=config.output_type == "bbox")
    return [Detection(g, config.classes[int(cls[v])], float(scores[v]))
            for g, v in zip(geoms, out_values, strict=True)]


def _valid_polygons(geoms: np.ndarray) -> np.ndarray:
    """Per geometry: a valid, non-empty Polygon (what an object's outline must be as it is)."""
    return shapely.is_valid(geoms) & ~shapely.is_empty(geoms) & (shapely.get_type_id(geoms) == 3)


def points_on_surface_in(polys: np.ndarray, keep: BaseGeometry) -> np.ndarray:
    """``shapely.contains(keep, shapely.point_on_surface(polys))``, computing the point only where the answer is
    not already known: a polygon's point lies in its bounding box, so when ``keep`` is a rectangle a polygon
    whose box is strictly inside it is in (on the unsimplified pixel outlines ``point_on_surface`` was a third
    of the polygons' time, and only the objects on the window's edges need it). A cell's ownership test asks the
    same of its final polygons."""
    inside = np.zeros(polys.size, bool)
    x0, y0, x1, y1 = keep.bounds
    if shapely.equals(keep, shapely.box(x0, y0, x1, y1)):
        b = shapely.bounds(polys)
        inside = (b[:, 0] > x0) & (b[:, 1] > y0) & (b[:, 2] < x1) & (b[:, 3] < y1)
    rest = ~inside
    inside[rest] = shapely.contains(keep, shapely.point_on_surface(polys[rest]))
    return inside


def _boxes_meet(labels: np.ndarray, counts: np.ndarray, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """Per instance id: whether its pixels' bounding box (pixel edges) meets the open box ``bounds`` (xmin,
    ymin, xmax, ymax, pixel coordinates). A box meets it when the instance has a pixel left of xmax, one right
    of xmin, one above ymax and one below ymin: each is its pixel count minus its count in the strip beyond
    that edge, and the strips are the window's thin margins (``ndimage.find_objects`` over the whole window
    cost a fifth of the polygons' time)."""
    h, w = labels.shape
    x0, y0, x1, y1 = bounds
    # a pixel's column x has x < xmax when x < ceil(xmax), and x + 1 > xmin when x >= floor(xmin)
    left, right = min(max(int(np.ceil(x1)), 0), w), min(max(int(np.floor(x0)), 0), w)
    top, bottom = min(max(int(np.ceil(y1)), 0), h), min(max(int(np.floor(y0)), 0), h)
    meets = counts > 0
    meets[0] = False  # the background
    for strip in (labels[:, left:], labels[:, :right], labels[top:], labels[:bottom]):
        meets &= counts > np.bincount(strip.ravel(), minlength=counts.size)
    return meets


def _regressed_boxes(labels: np.ndarray, core: np.ndarray, box_sizes: np.ndarray, values: list[int],
                     regions: np.ndarray, region_share: float = 0.0) -> list[Polygon]:
    """Per instance in ``values``: a box of the core-weighted mean predicted size about the core-weighted
    centre of its pixels (pixel coordinates; a pixel's centre is at +0.5) or, with offsets in ``box_sizes``
    (channels 2 and 3), the core-weighted mean of the centres its pixels vote for. With ``region_share`` > 0 each
    side is the geometric blend head^(1 - share) x region^share with the side of the instance's own region
    box (``regions``: xmin, ymin, xmax, ymax per value): two noisy estimates of the box a person draws,
    averaged (docs/experiments.md, "blended boxes")."""
    if not values:
        return []
    at = np.flatnonzero(labels)  # object pixels only
    ids = labels.ravel()[at]
    n = int(ids.max()) + 1
    weight = core.ravel()[at].astype(np.float64) + 1e-3  # an instance with no core still has a centre
    wsum = np.bincount(ids, weights=weight, minlength=n).clip(1e-9)
    ys, xs = np.divmod(at, labels.shape[1])

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(ids, weights=weight * values, minlength=n) / wsum

    px_lw, px_lh = box_sizes[0].ravel()[at], box_sizes[1].ravel()[at]
    if box_sizes.shape[0] >= 4:  # each pixel votes for its box's centre: offset x its own predicted side
        cx = mean(xs + 0.5 + box_sizes[2].ravel()[at] * np.exp(px_lw))
        cy = mean(ys + 0.5 + box_sizes[3].ravel()[at] * np.exp(px_lh))
    else:
        cx, cy = mean(xs + 0.5), mean(ys + 0.5)
    lw, lh = mean(px_lw), mean(px_lh)
    v = np.asarray(values, np.intp)
    lw, lh = lw[v], lh[v]
    if region_share > 0:
        rw = np.log(np.maximum(regions[:, 2] - regions[:, 0], 1.0))
        rh = np.log(np.maximum(regions[:, 3] - regions[:, 1], 1.0))
        lw, lh = (1 - region_share) * lw + region_share * rw, (1 - region_share) * lh + region_share * rh
    half_w, half_h = np.exp(lw) / 2, np.exp(lh) / 2
    return list(shapely.box(cx[v] - half_w, cy[v] - half_h, cx[v] + half_w, cy[v] + half_h))


def _pixels_to_crs(polys: list[Polygon], transform: Affine, bbox: bool = False) -> list[Polygon]:
    """``pixels_to_geometry`` for many polygons in one call (same arithmetic, same coordinates); ``bbox``
    replaces each by its bounding box first."""
    if not polys:
        return []
    arr = np.empty(len(polys), object)
    arr[:] = polys
    if bbox:
        arr = shapely.box(*shapely.bounds(arr).T)
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f

    def affine(xy: np.ndarray) -> np.ndarray:
        x, y = xy.T
        return np.column_stack([a * x + b * y + c, d * x + e * y + f])

    return list(shapely.transform(arr, affine))


def _single_polygon(geom: Any) -> Polygon | None:
    if not geom.is_valid:
        geom = make_valid(geom)
    if geom.geom_type == "Polygon":
        return geom if not geom.is_empty else None
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type == "Polygon" and not g.is_empty]
    nested = [p for g in getattr(geom, "geoms", []) if g.geom_type == "MultiPolygon" for p in g.geoms]
    parts += nested
    return max(parts, key=lambda p: p.area) if parts else None


def detections_to_geojson(detections: list[Detection], crs: Any) -> dict[str, Any]:
    """A lon/lat (EPSG:4326) GeoJSON FeatureCollection with ``class`` and ``score`` properties."""
    feats = []
    for d in detections:
        geom = image_crs_to_lonlat(d.geometry, crs)
        feats.append({"type": "Feature", "geometry": mapping(geom),
                      "properties": {"class": d.class_name, "score": round(d.score, 4)}})
    return {"type": "FeatureCollection", "features": feats}
