"""Does "where to label next" help? A simulated user, with the suggestions against randomly placed areas.

The user starts with one small training area (a square of ``side`` pixels holding at least one object) and
its outlines, trains, then for each of ``rounds`` rounds adds one square of the same size with every outline
inside it, and trains again: either the top square ``workers.ml.recommend.suggest_areas`` proposes for the
model just trained (with the review of the accuracy areas, as the platform computes it), or a square drawn
at random from the same candidates. F1 on the dataset's accuracy areas after each training, as the
platform scores it (``runner.evaluate_on_dataset``).

Where the user may label: where the dataset knows every object. A synthetic dataset knows them all, so the
whole image outside the accuracy areas; a real one only inside its own training areas. Squares reaching
past that (by more than ``recommend.OVERLAP_ALLOWED``) are never candidates for either strategy.
Trainings run a fixed number of steps without a time budget, so the figures do not depend on the load.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from workers.ml.config import DetectorConfig, Recipe
from workers.ml.datasets import LabelledImage
from workers.ml.evaluation import evaluate_image, evaluation_metrics
from workers.ml.raster_io import geometry_to_pixels, open_image, pixels_to_geometry, window_geometry
from workers.ml.recommend import candidate_windows, suggest_areas
from workers.ml.train import train_detector
from workers.ml.trained import TrainedModel

from . import repository
from .repository import ExperimentDataset
from .runner import RESULTS, format_rows

STRATEGIES = ("suggested", "random")


def labelling_pool(ds: ExperimentDataset, width: int, height: int, transform) -> tuple[BaseGeometry, list]:
    """Where the simulated user may label (image CRS) and the outlines it knows there."""
    if ds.name.startswith("synthetic/"):
        whole = pixels_to_geometry(box(0, 0, width, height), transform)
        return whole.difference(unary_union(ds.item.accuracy_areas)), list(ds.truth)
    return unary_union(ds.item.training_areas), list(ds.item.outlines)


def _outlines_in(square: BaseGeometry, outlines: list) -> list:
    return [(g, c) for g, c in outlines if g.intersection(square).area > 0]


def canonical_labels(areas: list[BaseGeometry], known: list) -> tuple[list[BaseGeometry], list]:
    """The areas in reading order and the known outlines touching them in the dataset's order: what a training
    learns from then depends on the labels drawn, not on the order they were drawn in. Without it two users who
    end with the same squares in another order trained on chips drawn in another order, and their F1 differed
    by up to 0.2 (seventh session): noise as large as the gain being measured."""
    ordered = sorted(areas, key=lambda a: (a.bounds[1], a.bounds[0], a.bounds[3], a.bounds[2]))
    return ordered, [(g, c) for g, c in known if any(g.intersection(a).area > 0 for a in ordered)]


def simulate(ds: ExperimentDataset, seed: int = 0, rounds: int = 3, side: int = 128, max_steps: int = 150,
             echo: bool = True, unit: str = "pixels", rank_by: str = "uncertainty",
             strategies: tuple[str, ...] = STRATEGIES) -> dict[str, Any]:
    """One dataset, one seed: F1 after the first training and after each round, per strategy; ``unit`` and
    ``rank_by``: how the suggestions are ranked (``recommend.suggest_areas``). Runs are deterministic for a
    seed (and torch thread count), so ``strategies=("suggested",)`` compares another ranking with the random
    user of an earlier run without training that user again."""
    recipe = Recipe(max_steps=max_steps)
    config = DetectorConfig(classes=ds.classes, detection_type=ds.detection_type, output_type=ds.output_type)
    with open_image(ds.item.source) as src:
        width, height, transform = src.width, src.height, src.transform
    pool, known = labelling_pool(ds, width, height, transform)
    outside_px = box(0, 0, width, height).difference(geometry_to_pixels(pool, transform))
    rng = np.random.default_rng(seed)
    squares = [window_geometry(w, transform) for w in candidate_windows(width, height, side, [outside_px], 10**6)]
    first = [s for s in squares if _outlines_in(s, known)]
    start = first[int(rng.integers(len(first)))]

    def train(areas: list[BaseGeometry]) -> TrainedModel:
        item = LabelledImage(ds.item.source, *canonical_labels(areas, known), ds.item.accuracy_areas)
        return train_detector([item], config, recipe=recipe, time_budget_s=None, seed=seed)

    def score(model: TrainedModel):
        with open_image(ds.item.source) as src:
            ev = evaluate_image(model, src, classes=ds.classes, detection_type=ds.detection_type,
                                accuracy_areas=ds.item.accuracy_areas, truth=ds.truth)
        return float(evaluation_metrics([ev], ds.classes, ds.detection_type)["overall"]["f1"]), ev.review

    t0 = time.monotonic()
    model0 = train([start])
    f1_0, review0 = score(model0)
    out: dict[str, Any] = {"dataset": ds.name, "seed": seed, "side": side, "steps": max_steps, "unit": unit,
                           "rank_by": rank_by, "f1_start": f1_0}
    for strategy in strategies:
        areas, model, review, f1s, fallbacks = [start], model0, review0, [], 0
        pick_rng = np.random.default_rng(1000 + seed)
        for _ in range(rounds):
            if strategy == "suggested":
                with open_image(ds.item.source) as src:
                    found = suggest_areas(model, src, training_areas=areas,
                                          accuracy_areas=[*ds.item.accuracy_areas, pixels_to_geometry(outside_px,
                                                                                                      transform)],
                                          review=review, side=side, max_suggestions=1, seed=seed, unit=unit,
                                          rank_by=rank_by)
                square = found[0].geometry if found else None
                fallbacks += square is None
            else:
                square = None
            if square is None:  # random, or nothing to suggest (counted)
                drawn = [geometry_to_pixels(a, transform) for a in areas] + [outside_px]
                free = candidate_windows(width, height, side, drawn, 10**6)
                if not free:
                    break
                square = window_geometry(free[int(pick_rng.integers(len(free)))], transform)
            areas = [*areas, square]
            model = train(areas)
            f1, review = score(model)
            f1s.append(f1)
        out[strategy] = f1s
        if strategy == "suggested":
            out["nothing_suggested"] = fallbacks
        out[f"outlines_{strategy}"] = len({id(g) for a in areas for g, _ in _outlines_in(a, known)})
    out["seconds"] = round(time.monotonic() - t0, 1)
    if echo:
        print(json.dumps(out), flush=True)
    return out


def gain_table(results: list[dict[str, Any]]) -> str:
    """Per dataset (mean over seeds): F1 at the start, after the last round with suggestions and with random
    areas, the gain (and after each round), the outlines each user drew; then the mean gain."""
    rows: list[dict[str, Any]] = []
    by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault(r["dataset"], []).append(r)
    for name, rs in by.items():
        sug = [r["suggested"][-1] for r in rs if r["suggested"]]
        ran = [r["random"][-1] for r in rs if r["random"]]
        rounds = min(min(len(r["suggested"]), len(r["random"])) for r in rs)
        by_round = "/".join(f"{np.mean([r['suggested'][i] - r['random'][i] for r in rs]):+.3f}" for i in range(rounds))
        rows.append({"dataset": name, "seeds": len(rs), "f1 start": round(np.mean([r["f1_start"] for r in rs]), 3),
                     "f1 suggested": round(float(np.mean(sug)), 3), "f1 random": round(float(np.mean(ran)), 3),
                     "gain": round(float(np.mean(sug) - np.mean(ran)), 3), "gain by round": by_round,
                     "outlines sug/rand": f"{np.mean([r['outlines_suggested'] for r in rs]):.0f}/"
                                          f"{np.mean([r['outlines_random'] for r in rs]):.0f}"})
    rows.append({"dataset": "mean", "gain": round(float(np.mean([r["gain"] for r in rows])), 3) if rows else None})
    return format_rows(rows, ("dataset", "seeds", "f1 start", "f1 suggested", "f1 random", "gain", "gain by round",
                              "outlines sug/rand"))


def recommendation_gain(results: list[dict[str, Any]]) -> float:
    """The bench figure: mean over datasets and seeds of F1 after the last round, suggested minus random."""
    return float(np.mean([r["suggested"][-1] - r["random"][-1] for r in results if r["suggested"] and r["random"]]))


def run_recommendation(pattern: str | None, seeds: int = 3, rounds: int = 3, side: int = 128,
                       max_steps: int = 150, unit: str = "pixels", rank_by: str = "uncertainty"
                       ) -> list[dict[str, Any]]:
    """Every matching dataset (single images: change datasets are left out) under seeds 0..``seeds``-1."""
    names = [n for n in repository.select(pattern) if not n.startswith("change/")]
    results = []
    for seed in range(seeds):  # seed by seed, so a run cut short still covers every dataset
        for name in names:
            results.append(simulate(repository.load(name), seed, rounds, side, max_steps, unit=unit,
                                    rank_by=rank_by))
    RESULTS.mkdir(parents=True, exist_ok=True)
    ranking = unit if rank_by == "uncertainty" else rank_by
    (RESULTS / f"recommendation-{ranking}.json").write_text(json.dumps(results, indent=2))
    ranked = f"signals counting {unit}" if rank_by == "uncertainty" else f"ranked by {rank_by}"
    print(f"\nrecommendation: {rounds} rounds, {side}-px squares, {max_steps} steps, seeds {seeds}, {ranked}\n"
          f"{gain_table(results)}\nrecommendation_gain = {recommendation_gain(results):.3f}", flush=True)
    return results

