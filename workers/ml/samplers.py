"""Where to sample: training chips inside training areas, and an overlapping grid for prediction.

Windows are ``rasterio.windows.Window`` in the pixel grid of the image; they may extend past the image
edge (reads are boundless and padding is ignored in the loss).
"""

from __future__ import annotations

import math

import numpy as np
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry


def area_chip_windows(area_px: BaseGeometry, tile: int, rng: np.random.Generator, stride_frac: float = 0.75,
                      jitter: bool = True) -> list[Window]:
    """Chips of ``tile`` pixels covering one training area (pixel coordinates).

    An area smaller than a chip gets one chip placed at a random offset that still contains it; a larger
    one a grid with ``stride_frac`` overlap whose origin is jittered, so repeated calls see new framings.
    """
    minx, miny, maxx, maxy = area_px.bounds
    out: list[Window] = []
    spans = []
    for lo, hi in ((minx, maxx), (miny, maxy)):
        size = hi - lo
        if size <= tile:
            slack = tile - size
            start = lo - (rng.uniform(0, slack) if jitter else slack / 2)
            spans.append([start])
        else:
            stride = tile * stride_frac
            n = math.ceil((size - tile) / stride) + 1
            step = (size - tile) / (n - 1) if n > 1 else 0
            off = rng.uniform(-stride / 4, stride / 4) if jitter else 0.0
            spans.append([lo + i * step + off for i in range(n)])
    for y in spans[1]:
        for x in spans[0]:
            out.append(Window(int(round(x)), int(round(y)), tile, tile))
    return out


def select_chips(has_object: list[bool], background_ratio: float, max_chips: int,
                 rng: np.random.Generator) -> list[int]:
    """Indices of chips to keep: every chip with objects (up to ``max_chips``) plus background-only chips
    making up at most ``background_ratio`` of the result (at least one if there is no positive chip)."""
    pos = [i for i, h in enumerate(has_object) if h]
    neg = [i for i, h in enumerate(has_object) if not h]
    rng.shuffle(pos)
    rng.shuffle(neg)
    if not pos:
        return sorted(neg[:max_chips])
    n_pos = min(len(pos), max_chips)
    allowed = len(neg) if background_ratio >= 1.0 else int(background_ratio * n_pos / (1.0 - background_ratio))
    n_neg = min(len(neg), allowed)
    if n_pos + n_neg > max_chips:
        n_neg = min(len(neg), int(round(max_chips * background_ratio)))
        n_pos = min(len(pos), max_chips - n_neg)
    return sorted(pos[:n_pos] + neg[:n_neg])


def grid_windows(window: Window, tile: int, overlap: int) -> list[Window]:
    """Tiles of ``tile`` pixels with ``overlap`` pixels shared between neighbours, covering ``window``.

    The last row/column is shifted back inside the window (when it is larger than a tile) instead of
    padding, so no model time is spent on pixels outside it.
    """
    stride = tile - overlap
    def starts(off: int, length: int) -> list[int]:
        if length <= tile:
            return [off]
        n = math.ceil((length - tile) / stride) + 1
        s = [off + i * stride for i in range(n)]
        s[-1] = off + length - tile
        return s
    c0, r0, w, h = int(window.col_off), int(window.row_off), int(window.width), int(window.height)
    return [Window(c, r, tile, tile) for r in starts(r0, h) for c in starts(c0, w)]
