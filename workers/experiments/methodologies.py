"""Named methodologies: a recipe (model + training + post-processing) and config overrides.

``default`` is what the platform uses; the others exist to answer design questions by measurement.
"""

from __future__ import annotations

from dataclasses import replace

from workers.ml.config import Recipe

BASE = Recipe()

METHODOLOGIES: dict[str, Recipe] = {
    # frozen ImageNet EfficientNet-Lite0 encoder, cached features, decoder with class + core heads
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
}


def get(name: str) -> Recipe:
    try:
        return METHODOLOGIES[name]
    except KeyError:
        raise SystemExit(f"unknown methodology {name!r}; known: {', '.join(METHODOLOGIES)}") from None
