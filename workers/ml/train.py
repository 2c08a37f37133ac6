"""The training loop: seeded, CPU or CUDA (bf16 autocast on GPU), bounded by steps and wall-clock time,
reporting progress through a callback and stopping early once the loss has converged.

With the frozen pretrained encoder (the default recipe), each chip and a few augmented copies are encoded
once up front and the features cached; every step then trains only the decoder on cached features plus
feature-space flips/rotations. A scratch encoder is trained end to end with on-the-fly augmentation.
"""

from __future__ import annotations

import contextlib
import io
import math
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .calibration import calibrate_post_processing
from .change import ChangeDetector, input_dates
from .config import BACKBONES, DetectorConfig, Recipe, default_recipe
from .datasets import IGNORE, LabelledImage, build_samples
from .dihedral import dihedral as _dihedral
from .dihedral import dihedral_sizes as _dihedral_sizes
from .models import Detector, normalise
from .raster_io import BAND_ORDER, open_image
from .trained import TrainedModel

ProgressFn = Callable[[int, int, float], None]


def pick_device(device: str | None = None) -> torch.device:
    """CUDA when available unless told otherwise; CPU always works."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_network(config: DetectorConfig, recipe: Recipe, pretrained: bool = True) -> Detector:
    width, deepest = BACKBONES[config.backbone]
    depth = 5 if deepest == 32 else 4
    network = ChangeDetector if recipe.dates == 2 else Detector
    with contextlib.redirect_stdout(io.StringIO()):  # the weights loader prints a line
        box_head = has_box_head(config, recipe)
        return network(len(config.classes), recipe.encoder, width, depth, pretrained, recipe.train_blocks,
                       box_head=box_head, centre_head=box_head and recipe.centre_head, decoders=recipe.decoders)


def has_box_head(config: DetectorConfig, recipe: Recipe) -> bool:
    """Whether the network regresses box sizes: asked for by the recipe, and meaningful (count, ``bbox``)."""
    return recipe.box_head and config.detection_type == "count" and config.output_type == "bbox"


def outline_sizes_px(images: Sequence[LabelledImage]) -> np.ndarray:
    """Each training outline's area in image pixels (the unit chips are read in)."""
    out = []
    for item in images:
        with open_image(item.source) as src:
            px_area = abs(src.transform.a * src.transform.e - src.transform.b * src.transform.d) or 1.0
        out += [g.area / px_area for g, _ in item.outlines if not g.is_empty]
    return np.asarray(out, np.float64)


def fit_recipe_to_outlines(images: Sequence[LabelledImage], recipe: Recipe, count: bool = True) -> Recipe:
    """The imagery-dependent choices, made from the outlines and written into the recipe the model keeps
    (so a saved model predicts as it was trained): the resampling scale that gives the median object
    ``recipe.target_object_px`` pixels across, the object sizes kept (the size prior) and how far apart two
    objects' seeds must be (count detectors only: a segmentation region cut by a window or an area edge is
    legitimately small, and has no seeds)."""
    areas = outline_sizes_px(images)
    if not areas.size:
        return recipe
    changes: dict[str, float] = {}
    if recipe.target_object_px > 0:
        across = float(np.sqrt(np.median(areas)))
        s = float(np.clip(recipe.target_object_px / max(across, 1.0), recipe.min_scale, recipe.max_scale))
        changes["scale"] = round(s * 4) / 4
    if recipe.size_prior > 0 and count:
        changes["min_area_px"] = max(recipe.min_area_px, recipe.size_prior * float(areas.min()))
    if recipe.size_prior_max > 0 and count:
        changes["max_area_px"] = recipe.size_prior_max * float(areas.max())
    if recipe.peak_spacing > 0 and count:
        changes["seed_radius_px"] = round(recipe.peak_spacing * float(np.sqrt(np.median(areas))), 1)
    if 0 < recipe.min_outline_px_for_stride <= float(areas.min()) and count:
        changes["postprocess_stride"] = 2
    return replace(recipe, **changes) if changes else recipe


def summary_line(card: dict[str, Any]) -> str:
    """One sentence for people who are not ML practitioners: what was trained, for how long, and the choices
    made from their outlines (scale, smallest object kept, how far apart touching objects are told)."""
    t, r = card["training"], card["recipe"]
    parts = [f"Trained {t['steps']} steps in {t['seconds']:.0f} s on {t['outlines']} outlines"]
    if r.get("dates", 1) == 2:
        parts.append("comparing the two dates of each place")
    scale = float(r.get("scale", 1.0))
    if abs(scale - 1.0) > 1e-6:
        parts.append(f"looking at the image enlarged {scale:g} times")
    pretrained = r.get("encoder", "").startswith("efficientnet")
    if r.get("train_blocks", 0) and pretrained:
        parts.append(f"adapting the last {r['train_blocks']} layers of a network pretrained on everyday photos")
    else:
        parts.append("on top of a network pretrained on everyday photos" if pretrained else "from scratch")
    if r.get("adapt_bn") and pretrained:
        parts.append("its brightness and contrast statistics measured again on your image")
    if r.get("decoders", 1) > 1:
        parts.append(f"averaging {r['decoders']} separately trained models of what it sees")
    if r.get("tta", 1) > 1:
        parts.append(f"looking at every part of the image {r['tta']} ways (turned and mirrored) and averaging")
    if r.get("min_area_px", 0) > Recipe().min_area_px:
        parts.append(f"ignoring anything smaller than {r['min_area_px']:.0f} pixels")
    if r.get("min_score", 0) > 0:
        parts.append(f"keeping objects it is at least {r['min_score']:.0%} sure of (the level that worked best "
                     "on your training areas)")
    if r.get("regress_boxes") and r.get("box_region_share", 0) > 0:
        parts.append("drawing each box between the size it learnt from your boxes and the object's visible extent")
    elif r.get("regress_boxes"):
        parts.append("drawing each box at the size it learnt from your boxes")
    if r.get("regress_boxes") and r.get("centre_head"):
        parts.append("centred where it learnt your boxes are centred")
    if r.get("vote_seeds") and r.get("seed_radius_px", 0) >= 1:
        parts.append("telling touching objects apart by the centres their pixels point to")
    elif r.get("seed_radius_px", 0) >= 1:
        parts.append(f"splitting touching objects whose centres are {r['seed_radius_px']:.0f} pixels apart or more "
                     "(this worked better on your training areas)")
    return ", ".join(parts) + f" (stopped: {t['stop_reason']})."


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def augment(image: torch.Tensor, mask: torch.Tensor, core: torch.Tensor, sizes: torch.Tensor,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Overhead-imagery augmentation on one batch (float 0-255 images): 90-degree rotations and flips, a small
    scale jitter (0.85-1.15, cropped/padded back, padding ignored) and colour jitter (gain, bias, contrast).
    ``sizes`` is the (N, 4, H, W) box target (log width/height, centre offsets), turned and rescaled with the
    image (offsets are in box sides: a rescale leaves them as they are)."""
    n, _, h, w = image.shape
    k = int(torch.randint(0, 4, (1,), generator=gen))
    flip = bool(torch.randint(0, 2, (1,), generator=gen))
    image, mask, core = _dihedral(image, k, flip), _dihedral(mask, k, flip), _dihedral(core, k, flip)
    sizes = _dihedral_sizes(sizes, k, flip)
    s = float(torch.empty(1).uniform_(0.85, 1.15, generator=gen))
    if abs(s - 1) > 0.02:
        nh, nw = int(round(h * s / 32) * 32) or 32, int(round(w * s / 32) * 32) or 32
        image = F.interpolate(image, size=(nh, nw), mode="bilinear", align_corners=False)
        mask = F.interpolate(mask[:, None].float(), size=(nh, nw), mode="nearest")[:, 0].long()
        core = F.interpolate(core[:, None], size=(nh, nw), mode="nearest")[:, 0]
        sizes = F.interpolate(sizes, size=(nh, nw), mode="nearest")
        shift = torch.zeros(sizes.shape[1], dtype=sizes.dtype)
        shift[:2] = torch.tensor([np.log(nw / w), np.log(nh / h)])
        sizes = sizes + shift.view(1, -1, 1, 1)
        if nh > h:  # crop back
            image, mask, core = image[..., :h, :w], mask[..., :h, :w], core[..., :h, :w]
            sizes = sizes[..., :h, :w]
        elif nh < h:  # pad back, padding ignored
            image = F.pad(image, (0, w - nw, 0, h - nh))
            mask = F.pad(mask, (0, w - nw, 0, h - nh), value=IGNORE)
            core = F.pad(core, (0, w - nw, 0, h - nh))
            sizes = F.pad(sizes, (0, w - nw, 0, h - nh))
    # per band: a pair's two dates (six bands) get different colour casts, as two captures do
    gain = torch.empty(n, image.shape[1], 1, 1).uniform_(0.9, 1.1, generator=gen)
    contrast = torch.empty(n, 1, 1, 1).uniform_(0.8, 1.2, generator=gen)
    bias = torch.empty(n, 1, 1, 1).uniform_(-15, 15, generator=gen)
    mean = image.mean(dim=(1, 2, 3), keepdim=True)
    image = ((image - mean) * contrast + mean) * gain + bias
    return image.clamp(0, 255), mask, core, sizes


def detector_loss(logits: torch.Tensor, mask: torch.Tensor, core: torch.Tensor, n_classes: int,
                  core_weight: float, count: bool, sizes: torch.Tensor | None = None,
                  box_weight: float = 1.0, centre_weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy over background/classes and BCE on the core map, both over training-area pixels only;
    with a box-size head (``logits`` has two more channels) and its ``sizes`` target, a smooth L1 on the
    log box sides over object pixels, weighted towards their cores (where prediction reads it); with a centre
    head (two more), the same on the offsets to the box's centre, weighted by ``centre_weight``."""
    logits = logits.float()
    valid = mask != IGNORE
    if not valid.any():
        return logits.sum() * 0.0
    loss = F.cross_entropy(logits[:, : n_classes + 1], mask, ignore_index=IGNORE)
    # soft dice on foreground keeps small/sparse objects from being drowned by background pixels
    prob_fg = 1.0 - logits[:, : n_classes + 1].softmax(1)[:, 0]
    tgt_fg = ((mask > 0) & valid).float()
    vf = valid.float()
    inter = (prob_fg * tgt_fg * vf).sum()
    dice = 1.0 - (2 * inter + 1.0) / ((prob_fg * vf).sum() + tgt_fg.sum() + 1.0)
    loss = loss + 0.5 * dice
    if count and core_weight > 0:
        core_logit = logits[:, n_classes + 1]
        bce = F.binary_cross_entropy_with_logits(core_logit, core, reduction="none")
        # cores are a few % of pixels: a dice term stops the head from settling on "no core anywhere"
        pc = core_logit.sigmoid() * vf
        core_dice = 1.0 - (2 * (pc * core).sum() + 1.0) / (pc.sum() + (core * vf).sum() + 1.0)
        loss = loss + core_weight * ((bce * vf).sum() / vf.sum() + 0.5 * core_dice)
    box_channels = logits.shape[1] - (n_classes + 2)
    if sizes is not None and box_channels in (2, 4) and box_weight > 0:
        weight = tgt_fg * (0.25 + core)  # zero without objects: the term vanishes (no host sync per step)
        err = F.smooth_l1_loss(logits[:, n_classes + 2 : n_classes + 4], sizes[:, :2].float(), reduction="none",
                               beta=0.1).sum(1)
        if box_channels == 4:
            off = F.smooth_l1_loss(logits[:, n_classes + 4 :], sizes[:, 2:4].float(), reduction="none",
                                   beta=0.1).sum(1)
            err = err + (centre_weight / box_weight) * off
        loss = loss + box_weight * (err * weight).sum() / weight.sum().clamp(min=1e-6)
    return loss


def adapt_batch_norms(encoder: torch.nn.Module, images: torch.Tensor, dev: torch.device, batch: int = 8) -> None:
    """AdaBN: replace the frozen encoder's ImageNet batch-norm statistics by those of ``images`` (uint8-range
    chips), averaged over every chip; the learnt scales and shifts stay. The features then describe aerial
    imagery on the scale the ImageNet weights after each norm expect."""
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch
        m.train()
    with torch.no_grad():
        for i in range(0, len(images), batch):
            encoder(normalise(images[i : i + batch].to(dev)))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum  # a trainable tail's norms then update as they would have
        m.eval()


def train_detector(
    images: Sequence[LabelledImage],
    config: DetectorConfig,
    *,
    recipe: Recipe | None = None,
    progress: ProgressFn | None = None,
    time_budget_s: float | None = 55.0,
    device: str | None = None,
    seed: int = 0,
    threads: int = 2,
) -> TrainedModel:
    """Train a detector from images with training areas and outlines (image CRS); return the model.

    ``time_budget_s`` bounds the whole call (reading, encoding and optimisation), so the platform can
    promise a training time, except that at least ``recipe.min_steps`` steps always run (on a starved
    machine a few steps give a useless model); ``config.training_steps`` bounds the optimiser steps;
    training also stops when the smoothed loss has not improved for ``recipe.early_stop_patience`` steps.
    """
    t_start = time.monotonic()
    dev = pick_device(device)
    recipe = recipe or default_recipe(dev.type)
    if dev.type == "cpu":
        torch.set_num_threads(threads)
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    count = config.detection_type == "count"
    recipe = replace(recipe, dates=input_dates([i.source for i in images]))  # pairs of two dates: a change model
    recipe = fit_recipe_to_outlines(images, recipe, count)
    samples = build_samples(images, config, recipe, rng)
    if not samples:
        raise ValueError("no training chips: draw at least one training area")
    n_obj = sum(len(i.outlines) for i in images)
    imgs = torch.from_numpy(np.stack([s["image"] for s in samples])).float()
    masks = torch.from_numpy(np.stack([s["mask"] for s in samples]))
    cores = torch.from_numpy(np.stack([s["core"] for s in samples]))
    sizes = torch.from_numpy(np.stack([s["box"] for s in samples]))
    net = build_network(config, recipe).to(dev)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()
    bs = recipe.batch_size
    tile = config.tile_size

    cache: list[torch.Tensor] | None = None
    stem_images: torch.Tensor | None = None
    tail = len(getattr(net.encoder, "tail", ())) > 0
    if net.frozen_encoder and recipe.adapt_bn:
        adapt_batch_norms(net.encoder, imgs, dev)
    if net.frozen_encoder:
        # encode each chip (plus augmented variants) once; steps then only run the decoder
        feats, cm, cc, cs, ci = [], [], [], [], []
        for v in range(max(1, recipe.feature_variants)):
            if v == 0:
                vi, vm, vc, vs = imgs, masks, cores, sizes
            else:
                vi, vm, vc, vs = augment(imgs, masks, cores, sizes, gen)
            with torch.no_grad(), amp:
                eb = 16 if dev.type == "cuda" else 2  # small CPU batches: bandwidth bound, measured faster
                for i in range(0, len(vi), eb):
                    x = normalise(vi[i : i + eb].to(dev))
                    # with a trainable tail: the frozen taps, then the tail's input as the last level
                    if tail:
                        head, mid = net.encoder.forward_head(x)
                        fs = [*head, mid]
                    else:
                        fs = net.encoder(x)
                    feats.append([f.float().cpu() for f in fs])
            cm.append(vm)
            cc.append(vc)
            cs.append(vs)
            ci.append(vi)
        cache = [torch.cat([f[lvl] for f in feats]) for lvl in range(len(feats[0]))]
        masks, cores, sizes = torch.cat(cm), torch.cat(cc), torch.cat(cs)
        # a trainable stem sees the very (augmented) pixels the cached features came from
        stem_images = torch.cat(ci) if net.stem is not None else None
        if dev.type == "cuda":
            cache = [c.to(dev) for c in cache]
            masks, cores, sizes = masks.to(dev), cores.to(dev), sizes.to(dev)
    t_prep = time.monotonic() - t_start

    enc_params = [p for p in net.encoder.parameters() if p.requires_grad] if net.frozen_encoder else []
    enc_ids = {id(p) for p in enc_params}
    groups = [{"params": [p for p in net.parameters() if p.requires_grad and id(p) not in enc_ids], "mult": 1.0}]
    if enc_params:
        groups.append({"params": enc_params, "mult": recipe.encoder_lr_scale})
    opt = torch.optim.AdamW(groups, lr=recipe.lr, weight_decay=recipe.weight_decay)
    planned = min(config.training_steps, recipe.max_steps or config.training_steps)
    n = masks.shape[0]
    net.train()
    ema, best, since_best, step, loss_v = None, math.inf, 0, 0, float("nan")
    t_loop = time.monotonic()
    loop_budget = None if time_budget_s is None else max(1.0, time_budget_s - (time.monotonic() - t_start))
    while True:
        # progress through the cosine schedule: by steps or by the wall-clock budget, whichever is further
        frac = step / planned
        if loop_budget is not None:
            frac = max(frac, (time.monotonic() - t_loop) / loop_budget)
            if step < min(recipe.min_steps, planned):  # on a starved machine, overrun rather than return noise
                frac = min(frac, step / min(recipe.min_steps, planned))
        if frac >= 1.0:
            stop_reason = "steps" if step >= planned else "time budget"
            break
        lr = recipe.lr * 0.5 * (1 + math.cos(math.pi * frac)) * min(1.0, (step + 1) / 20)
        for g in opt.param_groups:
            g["lr"] = lr * g["mult"]
        idx = torch.randint(0, n, (bs,), generator=gen)
        crop = min(recipe.train_crop or tile, tile)
        r0, c0 = (int(v) * 32 for v in torch.randint(0, (tile - crop) // 32 + 1, (2,), generator=gen))
        if cache is not None:
            # crops of cached features (aligned to the deepest stride) still carry the whole chip's context
            k = int(torch.randint(0, 4, (1,), generator=gen))
            flip = bool(torch.randint(0, 2, (1,), generator=gen))
            fb = []
            for c in cache:
                s = tile // c.shape[-1]
                fb.append(_dihedral(c[idx.to(c.device), :, r0 // s : (r0 + crop) // s, c0 // s : (c0 + crop) // s],
                                    k, flip))
            mb = _dihedral(masks[idx.to(masks.device), r0 : r0 + crop : 2, c0 : c0 + crop : 2], k, flip).to(dev)
            cb = _dihedral(cores[idx.to(cores.device), r0 : r0 + crop : 2, c0 : c0 + crop : 2], k, flip).to(dev)
            sb = _dihedral_sizes(sizes[idx.to(sizes.device), :, r0 : r0 + crop : 2, c0 : c0 + crop : 2],
                                 k, flip).to(dev)
            with amp:
                if stem_images is not None:
                    ib = _dihedral(stem_images[idx, :, r0 : r0 + crop, c0 : c0 + crop], k, flip).to(dev)
                    fb = net.with_stem(fb, normalise(ib))
                if tail:
                    fb = fb[:-1] + net.encoder.forward_tail(fb[-1])
                members = net.decode_members(fb, mb.shape[-2:])
        else:
            ib, mb, cb, sb = augment(imgs[idx], masks[idx], cores[idx], sizes[idx], gen)
            ib, mb, cb, sb = (t[..., r0 : r0 + crop, c0 : c0 + crop] for t in (ib, mb, cb, sb))
            ib, mb, cb = ib.to(dev, non_blocking=True), mb[..., ::2, ::2].to(dev), cb[..., ::2, ::2].to(dev)
            sb = sb[..., ::2, ::2].to(dev)
            with amp:
                members = net.decode_members(net.encode(ib), mb.shape[-2:])
        # an ensemble's decoders each learn on their own (the mean of their losses), so they stay diverse
        loss = sum(detector_loss(logits, mb, cb, len(config.classes), recipe.core_weight, count, sb,
                                 recipe.box_weight, recipe.centre_weight) for logits in members) / len(members)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        loss_v = float(loss.detach())
        ema = loss_v if ema is None else 0.95 * ema + 0.05 * loss_v
        if ema < best * 0.99:
            best, since_best = ema, 0
        else:
            since_best += 1
        if progress is not None:
            progress(step, planned, loss_v)
        if step >= 100 and since_best >= recipe.early_stop_patience:
            stop_reason = "converged"
            break
    net.eval()
    calibration: dict[str, Any] | None = None
    if recipe.fit_post_processing and config.detection_type == "count":
        recipe, calibration = calibrate_post_processing(TrainedModel(net, config, recipe, device=str(dev)), images)
    with open_image(images[0].source) as src:
        gsd = float(abs(src.transform.a)) if src.crs is not None else None
        crs = src.crs.to_string() if src.crs is not None else None
    card = {
        "format": "picterra-detector/1",
        "classes": list(config.classes),
        "tile_size": config.tile_size,
        "band_order": list(BAND_ORDER),
        # 2: a change detector, whose input is a pair of images of two dates (before, after) read on the first
        # one's grid (raster_io.ImagePair); 1: one image
        "input_images": recipe.dates,
        "normalisation": {"input": "uint8 RGB", "formula": "(x - 127) / 128"},
        "ground_sample_distance": gsd,
        "crs_trained": crs,
        "config": config.to_dict(),
        "recipe": recipe.to_dict(),
        "training": {
            "outlines": n_obj, "chips": len(samples), "steps": step, "stop_reason": stop_reason,
            "final_loss": loss_v, "smoothed_loss": ema, "prep_seconds": round(t_prep, 2),
            "seconds": round(time.monotonic() - t_start, 2), "device": dev.type, "seed": seed,
        },
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "scale": recipe.scale,
        "working_gsd": gsd / recipe.scale if gsd else None,
        "calibration": calibration,
    }
    card["summary"] = summary_line(card)
    return TrainedModel(net, config, recipe, card, str(dev))
