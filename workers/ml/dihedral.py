"""The dihedral group of the square (quarter turns and a mirror) on image-shaped tensors: training's
augmentation and prediction's test-time augmentation use the same transforms.

``dihedral(t, k, flip)`` mirrors left-right (when ``flip``) then turns ``k`` quarter turns counter-clockwise
over the last two axes; ``undo_dihedral`` takes a map computed on the transformed image back to the original
image's pixels. A (…, 2, H, W) map of box widths and heights also swaps its two channels on a quarter turn:
an object's width in a turned image is its height in the original.
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


def dihedral_sizes(t: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """``dihedral`` of a (…, 2, H, W) width/height map: a quarter turn swaps width and height."""
    t = dihedral(t, k, flip)
    return t.flip(-3) if k % 2 else t


def undo_dihedral(t: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """The inverse of ``dihedral(·, k, flip)``."""
    if k % 4:
        t = torch.rot90(t, -k, dims=(-2, -1))
    return t.flip(-1) if flip else t


def undo_dihedral_sizes(t: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """The inverse of ``dihedral_sizes(·, k, flip)``."""
    t = undo_dihedral(t, k, flip)
    return t.flip(-3) if k % 2 else t
