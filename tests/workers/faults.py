"""Fault injection for real worker processes, loaded with `celery worker --include tests.workers.faults`.

The rules live in a JSON file named by PICTERRA_TEST_FAULTS, which the test rewrites while the worker
runs (remove a fault, then retry):
    {"delay_s": 0.5,
     "fail": {"<col>,<row>,<width>,<height>": <times to raise, or -1 for always>},
     "exit": {"<point>": <times, or -1 for always>},
     "hang": {"<point>": true}}
`fail` keys are the exact window predict_window is asked for (a grid cell grown by its margin).
`exit` and `hang` name a point in a job, reached after the job claimed its row:
    ingest              converting an upload to a COG (imagery.ingest)
    train               the training loop (workers.ml.train.train_detector)
    cell                predicting any detection cell; `cell:<window>` one cell
    finish              writing a finished detection's exports (detectors.exports.write_exports)
`exit` ends the pool process there with os._exit (a worker killed at exactly that point, as by the
kernel's OOM killer); `hang` parks it there while the rule is set (the test may SIGKILL it meanwhile).
Every time a point is reached it is counted under "reached", so a test waits on that, never on a clock.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import detectors.exports as exports_module
import imagery.ingest as ingest_module
import workers.ml.predict as predict_module
import workers.ml.train as train_module

_real_predict_window = predict_module.predict_window
_real_convert_to_cog = ingest_module.convert_to_cog
_real_train_detector = train_module.train_detector
_real_write_exports = exports_module.write_exports
RULES = Path(os.environ["PICTERRA_TEST_FAULTS"])


class InjectedFault(RuntimeError):
    pass


def read_rules() -> dict:
    return json.loads(RULES.read_text()) if RULES.exists() else {}


def write_rules(rules: dict) -> None:
    """Atomically, so the test (or this worker) never reads half a file."""
    partial = RULES.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(rules))
    partial.replace(RULES)


def window_key(window) -> str:
    return ",".join(str(int(v)) for v in (window.col_off, window.row_off, window.width, window.height))


def reach(*points: str) -> None:
    """Count the visit, then exit or hang here if a rule says so."""
    rules = read_rules()
    reached = rules.setdefault("reached", {})
    for point in points:
        reached[point] = reached.get(point, 0) + 1
    exit_at = next((p for p in points if rules.get("exit", {}).get(p, 0) != 0), None)
    if exit_at is not None and rules["exit"][exit_at] > 0:
        rules["exit"][exit_at] -= 1
    write_rules(rules)
    if exit_at is not None:
        os._exit(17)
    while any(read_rules().get("hang", {}).get(p) for p in points):
        time.sleep(0.1)


def predict_window_with_faults(model, src, window, *args, **kwargs):
    rules = read_rules()
    if rules.get("delay_s"):
        time.sleep(float(rules["delay_s"]))
        rules = read_rules()
    key = window_key(window)
    reach("cell", f"cell:{key}")
    rules = read_rules()
    if rules.get("fail", {}).get(key, 0) != 0:
        if rules["fail"][key] > 0:
            rules["fail"][key] -= 1
            write_rules(rules)
        raise InjectedFault(f"injected fault in the cell at {key}")
    return _real_predict_window(model, src, window, *args, **kwargs)


def convert_to_cog_with_faults(*args, **kwargs):
    reach("ingest")
    return _real_convert_to_cog(*args, **kwargs)


def train_detector_with_faults(*args, **kwargs):
    reach("train")
    return _real_train_detector(*args, **kwargs)


def write_exports_with_faults(*args, **kwargs):
    reach("finish")
    return _real_write_exports(*args, **kwargs)


predict_module.predict_window = predict_window_with_faults
ingest_module.convert_to_cog = convert_to_cog_with_faults
train_module.train_detector = train_detector_with_faults
exports_module.write_exports = write_exports_with_faults
