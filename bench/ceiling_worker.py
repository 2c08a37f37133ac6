"""The Celery application of the ceiling bench's worker: the platform's own (``picterra.celery``), with the
detector's network replaced by the recorded stand-in (``bench/standin.py``) in each pool process, and the
detection's phases timed there.

Only ``bench/bench_ceiling.py`` starts it (``celery -A bench.ceiling_worker worker ...``), with
BENCH_STANDIN_OUTPUTS (the recorded logits), BENCH_STANDIN_SIZE (the large image's side) and
BENCH_CEILING_PHASES (a folder where each pool process writes its phase times after each task).
Everything else is the platform's code, unchanged: tasks, claims, COG reads, prediction around the network,
post-processing, polygons, database writes, merge and exports.
"""

from __future__ import annotations

import functools
import gc
import importlib
import json
import os
import time
from pathlib import Path

from celery.signals import task_postrun, worker_process_init

from picterra.celery import app  # noqa: F401  (the application `celery -A bench.ceiling_worker` runs)

# phase: (module or module:Class, function). Nested: a cell's time includes detect_in_cell's, which includes the
# read, the probabilities (stand-in, softmax, blending), the instances and the polygons.
PHASES = {
    "cell": ("workers.pipelines", "run_detection_cell"),
    "detect_in_cell": ("workers.pipelines", "detect_in_cell"),
    "read": ("workers.ml.predict", "_read_padded"),
    "probabilities": ("workers.ml.predict", "predict_array"),
    "instances": ("workers.ml.predict", "instance_labels"),
    "polygons": ("workers.ml.predict", "labels_to_detections"),
    "lonlat": ("workers.pipelines", "lonlat_geometries"),
    "lonlat_wkb": ("workers.pipelines", "stored_geometries"),
    "border_flags": ("workers.pipelines", "near_cell_borders"),
    "db_writes": ("detectors.runs:DetectionCellState", "succeed"),
    "export_parts": ("detectors.runs", "write_cell_part"),
    "finish": ("workers.pipelines", "finish_detection"),
    "merge": ("workers.pipelines", "merge_border_objects"),
    "exports": ("workers.pipelines", "write_detection_exports"),
}

spent: dict[str, list[float]] = {}  # phase: [seconds, calls, CPU seconds of this process] in this process
_networks: list = []


def time_phases() -> None:
    """Wrap each function of ``PHASES`` where its callers look it up, adding its time to ``spent``."""
    for phase, (owner_name, name) in PHASES.items():
        module_name, _, class_name = owner_name.partition(":")
        module = importlib.import_module(module_name)
        owner = getattr(module, class_name) if class_name else module
        function = getattr(owner, name)

        @functools.wraps(function)
        def timed(*args, _function=function, _phase=phase, **kwargs):
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return _function(*args, **kwargs)
            finally:
                total = spent.setdefault(_phase, [0.0, 0, 0.0])
                total[0] += time.perf_counter() - start
                total[1] += 1
                total[2] += time.process_time() - cpu

        setattr(owner, name, timed)


@worker_process_init.connect
def use_recorded_network(**_) -> None:
    """In each pool process: every model the cells load predicts with the stand-in; phases are timed."""
    from bench.standin import RecordedOutputs, install_window_positions
    from bench.standin import use_recorded_network as replace_network
    from workers import pipelines

    outputs = RecordedOutputs(Path(os.environ["BENCH_STANDIN_OUTPUTS"]), int(os.environ["BENCH_STANDIN_SIZE"]))
    load = pipelines.load_trained_model

    def load_trained_model(training_run):
        model = replace_network(load(training_run), outputs)
        if model.network not in _networks:
            _networks.append(model.network)
        return model

    pipelines.load_trained_model = load_trained_model
    install_window_positions()
    time_phases()
    gc.callbacks.append(time_collections)


_collecting = [0.0, 0.0]


def time_collections(phase: str, info: dict) -> None:
    """The garbage collector's passes, counted apart (``gc`` phase): they run inside whatever phase made the
    objects that set them off."""
    if phase == "start":
        _collecting[:] = [time.perf_counter(), time.process_time()]
        return
    total = spent.setdefault("gc", [0.0, 0, 0.0])
    total[0] += time.perf_counter() - _collecting[0]
    total[1] += 1
    total[2] += time.process_time() - _collecting[1]


@task_postrun.connect
def write_phases(**_) -> None:
    folder = os.environ.get("BENCH_CEILING_PHASES")
    if not folder:
        return
    phases = {**spent, "stand_in": [sum(n.seconds for n in _networks), 0, sum(n.seconds for n in _networks)]}
    (Path(folder) / f"{os.getpid()}.json").write_text(json.dumps(phases))
