"""A pool process starting (its ``worker_process_init`` handlers) freezes what exists then, so the garbage
collector's full passes no longer walk the modules, Django and PyTorch; what is made afterwards is still
collected. Each case runs in a fresh interpreter: freezing is per process and lasting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import gc, json, sys, weakref
import django
django.setup()
from celery.signals import worker_process_init
import workers.tasks  # noqa: F401  (connects the handlers)

tracked = len(gc.get_objects())
if sys.argv[1] == "start":
    worker_process_init.send(sender=None)

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a  # a cycle made after the start: only the cyclic collector frees it
gone = weakref.ref(a)
del a, b
gc.collect()
print(json.dumps({"tracked": tracked, "frozen": gc.get_freeze_count(), "left": len(gc.get_objects()),
                  "cycle_collected": gone() is None}))
"""


def _probe(mode: str, tmp_path: Path) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "picterra.settings", "VAR_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_starting_pool_process_freezes_what_exists_and_still_collects_what_follows(tmp_path) -> None:
    found = _probe("start", tmp_path)
    assert found["tracked"] > 50_000  # Django, Celery, PyTorch and the platform's modules
    assert found["frozen"] >= found["tracked"] * 0.9  # a young collection may free a little garbage first
    assert found["left"] < found["tracked"] // 10  # a full pass walks these only
    assert found["cycle_collected"]


def test_without_the_start_nothing_is_frozen(tmp_path) -> None:
    found = _probe("plain", tmp_path)
    assert found["frozen"] == 0
    assert found["left"] > found["tracked"] // 2  # every full pass walks them all
    assert found["cycle_collected"]
