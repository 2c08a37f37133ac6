"""Train and score one methodology on datasets; tables as text, CSV and JSON."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from workers.ml.config import DetectorConfig, Recipe
from workers.ml.evaluation import evaluate_image, evaluation_metrics
from workers.ml.raster_io import open_image
from workers.ml.train import train_detector
from workers.ml.trained import TrainedModel

from . import repository
from .methodologies import get
from .repository import VAR, ExperimentDataset

RESULTS = VAR / "results"
COLUMNS = ("dataset", "labels", "train_s", "steps", "predict_s", "precision", "recall", "f1", "f1_iou40",
           "count_error")


def evaluate_on_dataset(model: TrainedModel, ds: ExperimentDataset) -> tuple[dict[str, Any], float]:
    """A trained model's metrics on the dataset's accuracy areas, computed as a training run computes them
    (``workers.ml.evaluation``), and the seconds spent predicting there."""
    if not ds.item.accuracy_areas:
        raise ValueError(f"{ds.name} has no accuracy area: there is nothing to score")
    with open_image(ds.item.source) as src:  # one image, or a change dataset's pair
        evaluation = evaluate_image(model, src, classes=ds.classes, detection_type=ds.detection_type,
                                    accuracy_areas=ds.item.accuracy_areas, truth=ds.truth)
    return evaluation_metrics([evaluation], ds.classes, ds.detection_type), evaluation.predict_s


def run_one(ds: ExperimentDataset, recipe: Recipe, time_budget_s: float | None = 55.0, seed: int = 0,
            device: str | None = None, training_steps: int = 500) -> dict[str, Any]:
    """Train on the dataset's training areas, predict its accuracy areas, score there. ``training_steps`` is
    the user's setting of that name (500 by default, as a new detector has)."""
    config = DetectorConfig(classes=ds.classes, detection_type=ds.detection_type, output_type=ds.output_type,
                            training_steps=training_steps)
    t0 = time.monotonic()
    model = train_detector([ds.item], config, recipe=recipe, time_budget_s=time_budget_s, seed=seed, device=device)
    train_s = time.monotonic() - t0
    metrics, predict_s = evaluate_on_dataset(model, ds)
    s = metrics["overall"]
    return {
        "dataset": ds.name, "labels": len(ds.item.outlines), "train_s": round(train_s, 1),
        "steps": model.card["training"]["steps"], "predict_s": round(predict_s, 1),
        "precision": round(s["precision"], 3), "recall": round(s["recall"], 3), "f1": round(s["f1"], 3),
        "f1_iou40": round(s.get("f1_iou40", s.get("iou", 0.0)), 3),
        "count_error": round(s["count_error"], 3) if "count_error" in s else None,
        "detection_type": ds.detection_type, "stop": model.card["training"]["stop_reason"],
    }


def format_rows(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    cells = [columns] + [tuple("" if r.get(c) is None else str(r.get(c)) for c in columns) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str, prefix: str) -> float | None:
        vals = [r[key] for r in rows if r["dataset"].startswith(prefix) and r.get(key) is not None]
        return round(sum(vals) / len(vals), 3) if vals else None

    return {"dataset": "mean synthetic", "f1": mean("f1", "synthetic/"), "train_s": mean("train_s", "synthetic/"),
            "precision": mean("precision", "synthetic/"), "recall": mean("recall", "synthetic/")}


def seed_means(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per dataset run under several seeds: the mean of each score and the spread of F1, because
    one seed's F1 on a few dozen labels moves by several points."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["dataset"], []).append(r)
    out = []
    for name, rs in groups.items():
        if len(rs) < 2:
            continue
        row: dict[str, Any] = {"dataset": f"{name} (mean of {len(rs)})", "labels": rs[0]["labels"]}
        for key in ("train_s", "steps", "predict_s", "precision", "recall", "f1", "f1_iou40", "count_error"):
            vals = [r[key] for r in rs if r.get(key) is not None]
            row[key] = round(sum(vals) / len(vals), 3) if vals else None
        f1s = [r["f1"] for r in rs]
        row["seed"] = f"F1 {min(f1s)}-{max(f1s)}"
        out.append(row)
    return out


def run(methodology: str, pattern: str | None = None, time_budget_s: float | None = 55.0, out_dir: Path = RESULTS,
        device: str | None = None, echo: bool = True, seeds: int = 1, training_steps: int = 500
        ) -> list[dict[str, Any]]:
    """Every matching dataset under seeds 0..``seeds``-1; the table and the saved JSON/CSV hold one row per
    dataset and seed (and, with several seeds, each dataset's mean)."""
    recipe = replace(get(methodology), name=methodology)
    tag = methodology if time_budget_s else f"{methodology}-nobudget"
    if training_steps != 500:
        tag += f"-steps{training_steps}"
    rows = []
    for name in repository.select(pattern):
        ds = repository.load(name)
        for seed in range(seeds):
            row = {"seed": seed, **run_one(ds, recipe, time_budget_s, seed=seed, device=device,
                                                training_steps=training_steps)}
            rows.append(row)
            if echo:
                print(json.dumps(row), flush=True)
    shown = rows + seed_means(rows) if seeds > 1 else rows
    columns = COLUMNS[:1] + ("seed",) + COLUMNS[1:] if seeds > 1 else COLUMNS
    table = format_rows(shown + ([summary(rows)] if any(r["dataset"].startswith("synthetic/") for r in rows) else []),
                        columns)
    if echo:
        print(f"\nmethodology: {tag} (time budget {time_budget_s} s, seeds {seeds})\n{table}", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{tag}.json").write_text(json.dumps({"methodology": methodology, "recipe": recipe.to_dict(),
                                                     "time_budget_s": time_budget_s, "seeds": seeds,
                                                     "training_steps": training_steps,
                                                     "rows": rows}, indent=2))
    with (out_dir / f"{tag}.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else list(COLUMNS))
        w.writeheader()
        w.writerows(rows)
    return rows


def compare(a: str, b: str, out_dir: Path = RESULTS) -> str:
    """Two saved runs side by side, per dataset (the mean over seeds where a run used several)."""

    def by_dataset(tag: str) -> dict[str, dict[str, Any]]:
        rows = json.loads((out_dir / f"{tag}.json").read_text())["rows"]
        means = {r["dataset"].split(" (mean")[0]: r for r in seed_means(rows)}
        return {r["dataset"]: means.get(r["dataset"], r) for r in rows}

    ra, rb = by_dataset(a), by_dataset(b)
    rows = []
    for name in sorted(set(ra) | set(rb)):
        x, y = ra.get(name, {}), rb.get(name, {})
        rows.append({"dataset": name, f"f1 {a}": x.get("f1"), f"f1 {b}": y.get("f1"),
                     "delta f1": None if x.get("f1") is None or y.get("f1") is None else round(y["f1"] - x["f1"], 3),
                     f"train_s {a}": x.get("train_s"), f"train_s {b}": y.get("train_s"),
                     f"count_err {a}": x.get("count_error"), f"count_err {b}": y.get("count_error")})
    cols = tuple(rows[0]) if rows else ("dataset",)
    return format_rows(rows, cols)
