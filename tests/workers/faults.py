"""Fault injection for real worker processes, loaded with `celery worker --include tests.workers.faults`.

The rules live in a JSON file named by PICTERRA_TEST_FAULTS, which the test rewrites while the worker
runs (remove a fault, then retry):
    {"delay_s": 0.5, "fail": {"<col>,<row>,<width>,<height>": <times to raise, or -1 for always>}}
Keys are the exact window predict_window is asked for (a grid cell grown by its margin).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import workers.ml.predict as predict_module

_real_predict_window = predict_module.predict_window
RULES = Path(os.environ["PICTERRA_TEST_FAULTS"])


class InjectedFault(RuntimeError):
    pass


def window_key(window) -> str:
    return ",".join(str(int(v)) for v in (window.col_off, window.row_off, window.width, window.height))


def predict_window_with_faults(model, src, window, *args, **kwargs):
    rules = json.loads(RULES.read_text()) if RULES.exists() else {}
    if rules.get("delay_s"):
        time.sleep(float(rules["delay_s"]))
        rules = json.loads(RULES.read_text())
    key = window_key(window)
    if rules.get("fail", {}).get(key, 0) != 0:
        if rules["fail"][key] > 0:
            rules["fail"][key] -= 1
            RULES.write_text(json.dumps(rules))
        raise InjectedFault(f"injected fault in the cell at {key}")
    return _real_predict_window(model, src, window, *args, **kwargs)


predict_module.predict_window = predict_window_with_faults
