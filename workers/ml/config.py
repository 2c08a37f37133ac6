"""Detector configuration (what users choose) and recipe (how we train it; the experiment framework's knob).

How the user-facing settings map onto what is implemented:

- ``detection_type``: ``count`` predicts per-class interiors plus an object *core* map (pixels far from any
  object edge) so that touching objects are split by seeded growth; ``segmentation`` predicts per-class
  areas only and returns the connected regions.
- ``output_type``: ``polygon`` returns the traced outline of each object; ``bbox`` its axis-aligned box in
  the image CRS (both always shapely ``Polygon``s).
- ``training_steps``: an upper bound on optimiser steps (500-40000); training also stops at the wall-clock
  budget or when the loss has converged.
- ``backbone``: no ImageNet ResNet weights can be obtained offline, so the ResNet names select the capacity
  of our network over the shared ImageNet EfficientNet-Lite0 encoder (see ``BACKBONES``): ``resnet18`` -> a
  narrow decoder on stride-2..16 features, ``resnet34`` -> the default decoder, ``resnet50`` -> a wider
  decoder that also taps the stride-32 features.
- ``tile_size``: side of training chips in pixels (multiple of 32, the encoder's total stride).
- ``background_sample_ratio``: the largest share of training chips that hold no object.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

DetectionType = Literal["count", "segmentation"]
OutputType = Literal["polygon", "bbox"]

# backbone name -> (decoder width, deepest encoder stride used)
BACKBONES: dict[str, tuple[int, int]] = {"resnet18": (24, 16), "resnet34": (32, 16), "resnet50": (48, 32)}


@dataclass
class DetectorConfig:
    """The settings a user picks for a detector (mirrors the platform's detector form)."""

    classes: list[str] = field(default_factory=lambda: ["object"])
    detection_type: DetectionType = "count"
    output_type: OutputType = "polygon"
    training_steps: int = 500
    backbone: str = "resnet34"
    tile_size: int = 256
    background_sample_ratio: float = 0.25

    def __post_init__(self) -> None:
        if self.detection_type not in ("count", "segmentation"):
            raise ValueError(f"detection_type must be count or segmentation, not {self.detection_type!r}")
        if self.output_type not in ("polygon", "bbox"):
            raise ValueError(f"output_type must be polygon or bbox, not {self.output_type!r}")
        if not 500 <= self.training_steps <= 40000:
            raise ValueError("training_steps must be within 500-40000")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}")
        if self.tile_size % 32 or not 64 <= self.tile_size <= 1024:
            raise ValueError("tile_size must be a multiple of 32 within 64-1024")
        if not 0.0 <= self.background_sample_ratio <= 1.0:
            raise ValueError("background_sample_ratio must be within 0-1")
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must be a non-empty list of distinct names")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Recipe:
    """Model + training recipe + post-processing: one *methodology* of the experiment framework.

    The default values are the ones the experiment framework measured best under the 60 s CPU budget.
    """

    name: str = "default"
    encoder: Literal[
        "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "efficientnet-lite0+stem", "scratch"
    ] = "efficientnet-lite0"
    # training
    lr: float = 1e-2
    weight_decay: float = 1e-4
    batch_size: int = 16
    train_crop: int = 128  # side of the random crops a step trains on (image pixels, multiple of 32)
    max_chips: int = 40  # chips read and encoded once (features cached when the encoder is frozen)
    feature_variants: int = 2  # augmented copies per chip encoded up front (frozen encoder only)
    core_weight: float = 1.0  # weight of the core (instance separation) loss
    core_threshold: float = 0.45  # normalised distance-to-edge above which a pixel is "core" (target)
    max_steps: int | None = None  # caps config.training_steps (tests, quick experiments)
    min_steps: int = 60  # the time budget cannot stop training before this (a 1-step model is useless)
    early_stop_patience: int = 150  # steps without loss improvement before stopping
    # prediction
    predict_tile: int = 512
    overlap: int = 32
    batch_tiles: int = 4
    # test-time augmentation: each tile is predicted this many times, mirrored and turned (1: once; 2: with
    # its mirror; 4: both mirrors and the half turn; 8: every quarter turn and mirror, workers/ml/dihedral.py),
    # and the maps, taken back to the tile's pixels, averaged before post-processing. Costs that many times
    # the network's work
    tta: int = 1
    # post-processing
    fg_threshold: float = 0.5
    seed_threshold: float = 0.5
    # count detectors' seeds: with ``seed_radius_px`` > 0 they are the core map's local maxima over
    # ``peak_threshold`` at least that far apart (touching objects whose core regions merge still get one
    # seed each); 0 keeps the connected regions of the core map over ``seed_threshold``. Training sets the
    # radius to ``peak_spacing`` x the median outline's width (0: off), and post-processing calibration
    # keeps the peaks only where they do better in the training areas
    peak_spacing: float = 0.5
    peak_threshold: float = 0.3
    seed_radius_px: float = 0.0
    # with a centre head and a fitted ``seed_radius_px``: seeds are the peaks of the map of the centres the
    # pixels vote for, and each foreground pixel joins the seed nearest its vote (Panoptic-DeepLab's grouping):
    # touching crowns whose cores merge still vote for two centres. Calibration then fits only the threshold
    vote_seeds: bool = True
    min_area_px: float = 12.0
    simplify_px: float = 0.75
    # count detectors' instances and outlines found on the maps averaged over ``postprocess_stride`` squared
    # pixel blocks (the decoder's head is at stride 2 anyway): a quarter of the pixels to label, grow and
    # trace at 2, for F1 within the seeds' noise (docs/experiments.md, "post-processing at stride 2").
    # Training sets 2 when the smallest outline covers ``min_outline_px_for_stride`` pixels (0: never); the
    # pixel sizes above are in the image's pixels whatever the stride
    postprocess_stride: int = 1
    min_outline_px_for_stride: float = 64.0
    # objects scoring under ``min_score`` (mean foreground probability) are dropped. With
    # ``fit_post_processing`` training chooses it and the seeds (connected core regions or core peaks, see
    # below) from the user's own outlines: what does best in the training areas (count detectors;
    # workers/ml/calibration.py)
    min_score: float = 0.0
    fit_post_processing: bool = True
    # size prior: predictions under this fraction of the smallest training outline's area are fragments,
    # not objects; training raises ``min_area_px`` to it (0: off)
    size_prior: float = 0.5
    # the other side of the prior: predictions over this multiple of the largest outline's area are merged
    # objects; training sets ``max_area_px`` from it (0: off, no upper limit)
    size_prior_max: float = 0.0
    max_area_px: float = 0.0
    # scale matching: chips and prediction tiles are resampled by ``scale`` (2.0: twice the pixels across).
    # With ``target_object_px`` > 0 training picks the scale that gives the median outline that many pixels
    # across (sqrt of its area), within ``min_scale``-``max_scale`` in quarter steps, and writes it here
    scale: float = 1.0
    target_object_px: float = 0.0
    min_scale: float = 1.0
    max_scale: float = 2.0
    # encoder adaptation: the last ``train_blocks`` blocks of the ImageNet encoder (and their batch norms)
    # train at ``encoder_lr_scale`` x the decoder's learning rate, on cached features of the blocks before
    train_blocks: int = 0
    encoder_lr_scale: float = 0.1
    # domain adaptation of the frozen encoder at no training cost (AdaBN): its batch norms' statistics are
    # measured again on the training chips (aerial imagery, not ImageNet photos) before the features are
    # cached; saved with the weights, so prediction normalises the same way
    adapt_bn: bool = False
    # an ensemble of decoders over the same frozen features, each trained from its own start on its own loss,
    # their outputs averaged: steadier maps (as test-time augmentation gives) for the decoders' cost only
    decoders: int = 1
    # box-size head (count detectors with ``bbox`` output; CenterNet-style): the network also regresses, at
    # each object pixel, the log width and height of the box the user drew, weighted by ``box_weight`` in
    # the loss. ``regress_boxes`` makes each object's box the one the head predicts about the object's
    # centre instead of the box around its grown region (calibration turns it on when there is a head)
    box_head: bool = True
    box_weight: float = 1.0
    regress_boxes: bool = False
    # a head box's sides blended (geometrically) with those of the box around the object's region: 0 the
    # head's size alone, 0.5 their geometric mean, which did better than either on real crowns
    box_region_share: float = 0.5
    # centre head (with the box-size head): the network also regresses, at each object pixel, the offset to
    # the centre of the box the user drew (in box sides); a regressed box is then centred on the mean of its
    # pixels' votes rather than on the centre of its region (crowns found but boxed off-centre: the near
    # misses of docs/experiments.md). Weighted by ``centre_weight`` in the loss
    centre_head: bool = True
    centre_weight: float = 1.0
    # the images one prediction reads: 1, one image; 2, a change detector's pair of two dates of the same place
    # (``raster_io.ImagePair``), encoded each by the same frozen encoder and decoded from both dates' features
    # and their difference (workers/ml/change.py). Set from the training images, kept in the saved recipe
    dates: int = 1

    def __post_init__(self) -> None:
        if self.tta not in (1, 2, 4, 8):
            raise ValueError(f"tta must be 1, 2, 4 or 8, not {self.tta!r}")
        if not 1 <= self.decoders <= 4:
            raise ValueError(f"decoders must be 1-4, not {self.decoders!r}")
        if self.postprocess_stride not in (1, 2):
            raise ValueError(f"postprocess_stride must be 1 or 2, not {self.postprocess_stride!r}")
        if self.dates not in (1, 2):
            raise ValueError(f"dates must be 1 (one image) or 2 (a change detector's pair), not {self.dates!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def default_recipe(device_type: str, gpu_tta: int = 8) -> Recipe:
    """The platform's recipe where it trains (``torch.device.type``): the default, and on a GPU also test-time
    augmentation over ``gpu_tta`` turned and mirrored views (8: every quarter turn and mirror).

    tta 8 gained +0.031 F1 on the real datasets (3 seeds each, 11 of 15 runs ahead; docs/experiments.md, twelfth
    session) for eight times the network's work at calibration and detection: a GPU absorbs that, the CPU
    workers' detection would run ~7 times slower. A model keeps the recipe it was trained with (its card), so a
    GPU-trained detector predicts with its tta wherever it runs."""
    return Recipe(tta=gpu_tta) if device_type == "cuda" else Recipe()
