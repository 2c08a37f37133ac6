import json

from workers.experiments.runner import compare, format_rows, seed_means


def _row(dataset, seed, f1, train_s=30.0):
    return {"dataset": dataset, "seed": seed, "labels": 40, "train_s": train_s, "steps": 500, "predict_s": 1.0,
            "precision": f1, "recall": f1, "f1": f1, "f1_iou40": f1, "count_error": 0.1}


def test_several_seeds_are_averaged_per_dataset_with_their_spread():
    rows = [_row("neon/osbs", 0, 0.3), _row("neon/osbs", 1, 0.5), _row("neon/osbs", 2, 0.4), _row("neon/yell", 0, 0.6)]
    means = seed_means(rows)
    assert len(means) == 1  # one seed only: nothing to average
    m = means[0]
    assert m["dataset"] == "neon/osbs (mean of 3)" and m["f1"] == 0.4 and m["seed"] == "F1 0.3-0.5"
    assert "neon/osbs (mean of 3)" in format_rows(rows + means, ("dataset", "seed", "f1"))


def test_compare_uses_the_mean_over_seeds(tmp_path):
    a = [_row("neon/osbs", 0, 0.35)]
    b = [_row("neon/osbs", 0, 0.4, 55.0), _row("neon/osbs", 1, 0.6, 55.0)]
    for tag, rows in (("default", a), ("scratch", b)):
        (tmp_path / f"{tag}.json").write_text(json.dumps({"rows": rows}))
    table = compare("default", "scratch", out_dir=tmp_path).splitlines()
    assert len(table) == 3
    cells = [c.strip() for c in table[2].split("|")]
    assert cells[:4] == ["neon/osbs", "0.35", "0.5", "0.15"] and cells[5] == "55.0"
