"""Change detectors: the network over two dates of the same place, and the checks that a model and its
input agree (a change model needs a pair, a single-image model one image).

A pair is read as one six-band raster on the first date's grid (``raster_io.ImagePair``: the first date's
RGB, then the second date's resampled onto the same pixels), so chips, training, prediction, the grid of
cells, post-processing, scoring and evaluation are the single-image code unchanged. Only the network differs:
the shared frozen ImageNet encoder runs on each date (one batch of both, so features are cached per chip as
training does for one image), and the decoder reads, at every level, the first date's features, the second
date's and their difference (second minus first: the sign tells what appeared from what went away). Its
outputs are the usual heads (classes, core, box sizes) over *what changed*, so the objects, polygons, boxes
and scores come out of the same post-processing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .models import Detector
from .raster_io import ImagePairError, ImagePairSource

NEEDS_PAIR = ("This is a change detector: it compares two images of the same place (before and after), so it "
              "needs a pair of images, not one.")
NEEDS_ONE = ("This detector finds objects in one image; comparing two dates needs a change detector trained on "
             "pairs of images.")


def input_dates(sources: Sequence[object]) -> int:
    """How many dates the training images hold: 2 when every one is an ``ImagePairSource``, 1 when none is;
    a mix is refused (one detector learns either objects or changes)."""
    pairs = sum(isinstance(s, ImagePairSource) for s in sources)
    if pairs and pairs != len(sources):
        raise ImagePairError("Some training images are pairs of two dates and some are single images: a change "
                             "detector trains on pairs only, any other detector on single images only.")
    return 2 if pairs else 1


def check_channels(dates: int, channels: int) -> None:
    """Refuse, in plain words, an input whose band count (3 per date) does not fit a model of ``dates`` dates."""
    if channels != 3 * dates:
        raise ImagePairError(NEEDS_PAIR if dates == 2 else NEEDS_ONE)


class PairEncoder(nn.Module):
    """One encoder applied to both dates: (N, 6, H, W) normalised input -> at each tapped level the two dates'
    features side by side, (N, 2C, h, w). Both dates go through as one batch of 2N (the same weights, one
    pass); a frozen encoder keeps its batch norms in eval mode, so the two halves do not mix."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.channels = tuple(2 * c for c in inner.channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_channels(2, x.shape[1])
        n = x.shape[0]
        feats = self.inner(torch.cat([x[:, :3], x[:, 3:]]))
        return [torch.cat([f[:n], f[n:]], 1) for f in feats]


class ChangeDetector(Detector):
    """``Detector`` over a pair: the shared encoder on each date, the decoder on [before, after, after -
    before] at each level. Its input is (N, 6, H, W) uint8 (``raster_io.ImagePair``'s windows); outputs as
    ``Detector``'s, over what changed."""

    def __init__(self, n_classes: int, encoder: str = "efficientnet-lite0", width: int = 32, depth: int = 4,
                 pretrained: bool = True, train_blocks: int = 0, box_head: bool = False,
                 centre_head: bool = False, decoders: int = 1) -> None:
        if encoder.endswith("+stem") or train_blocks:
            raise ValueError("a change detector uses the encoder without a trainable stem or trained blocks")
        super().__init__(n_classes, encoder, width, depth, pretrained, train_blocks, box_head, centre_head, decoders)
        self.encoder = PairEncoder(self.encoder)

    def decoder_inputs(self, channels: tuple[int, ...]) -> tuple[int, ...]:
        """Each level fused as [before, after, after - before]: three times one date's channels."""
        return tuple(3 * c for c in channels)

    def decode_members(self, feats: list[torch.Tensor], size: tuple[int, int] | None) -> list[torch.Tensor]:
        """Feature levels of both dates side by side (``PairEncoder``, or the cached crops training passes)
        -> the heads' logits: each level fused as [before, after, after - before] first."""
        fused = []
        for f in feats:
            before, after = f.chunk(2, 1)
            fused.append(torch.cat([before, after, after - before], 1))
        return super().decode_members(fused, size)
