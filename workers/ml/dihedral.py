"""The dihedral group of the square (quarter turns and a mirror) on image-shaped tensors: training's
augmentation and prediction's test-time augmentation use the same transforms.

``dihedral(t, k, flip)`` mirrors left-right (when ``flip``) then turns ``k`` quarter turns counter-clockwise
over the last two axes; ``undo_dihedral`` takes a map computed on the transformed image back to the original
image's pixels. A box map (…, 2 or 4, H, W): log box width and height, then (with a centre head) the offset
``(u, v)`` from the pixel to its box's centre in box widths and heights, also changes its channels: a quarter
turn swaps width and height (an object's width in a turned image is its height in the original) and turns the
offset with the pixels, a mirror reverses ``u``.
"""

from __future__ import annotations

import torch

# Test-time augmentation: the transforms (k, flip) averaged for each ``Recipe.tta``. 2: the image and its
# mirror; 4: the two mirrors and the half turn (no quarter turn, so tiles keep their shape and box sizes their
# channels); 8: the whole group.
TTA_TRANSFORMS: dict[int, tuple[tuple[int, bool], ...]] = {
    1: ((0, False),),
    2: ((0, False), (0, True)),
    4: ((0, False), (0, True), (2, False), (2, True)),
    8: tuple((k, flip) for k in range(4) for flip in (False, True)),
}


def dihedral(t: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    if flip:
        t = t.flip(-1)
    return torch.rot90(t, k, dims=(-2, -1)) if k % 4 else t


def _turn_offsets(t: torch.Tensor, k: int) -> torch.Tensor:
    """Offsets (u, v) (channels 2 and 3) of a box map turned ``k`` quarter turns counter-clockwise: with
    ``torch.rot90``'s convention a turn maps ``(u, v)`` to ``(v, -u)`` (u and v in the turned box's sides)."""
    if t.shape[-3] < 4 or k % 4 == 0:
        return t
    u, v = t[..., 2:3, :, :], t[..., 3:4, :, :]
    for _ in range(k % 4):
        u, v = v, -u
    return torch.cat([t[..., :2, :, :], u, v, t[..., 4:, :, :]], -3)


def _mirror_offsets(t: torch.Tensor) -> torch.Tensor:
    if t.shape[-3] < 4:
        return t
    return torch.cat([t[..., :2, :, :], -t[..., 2:3, :, :], t[..., 3:, :, :]], -3)


def _swap_sides(t: torch.Tensor) -> torch.Tensor:
    return torch.cat([t[..., 1:2, :, :], t[..., 0:1, :, :], t[..., 2:, :, :]], -3)


def dihedral_sizes(t: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """``dihedral`` of a (…, 2 or 4, H, W) box map: a quarter turn swaps width and height and turns the centre
    offsets, a mirror reverses the horizontal offset."""
    t = dihedral(t, k, flip)
    if flip:
        t = _mirror_offsets(t)
    t = _turn_offsets(t, k)
    return _swap_sides(t) if k % 2 else t


def undo_dihedral(t: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """The inverse of ``dihedral(·, k, flip)``."""
    if k % 4:
        t = torch.rot90(t, -k, dims=(-2, -1))
    return t.flip(-1) if flip else t


def undo_dihedral_sizes(t: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """The inverse of ``dihedral_sizes(·, k, flip)``."""
    t = undo_dihedral(t, k, flip)
    if k % 2:
        t = _swap_sides(t)
    t = _turn_offsets(t, -k % 4)
    return _mirror_offsets(t) if flip else t
