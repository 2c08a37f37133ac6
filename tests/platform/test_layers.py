"""The import graph runs one way: workers -> entry points -> detectors -> imagery -> picterra core.

Read from the source (ast), so an import hidden in a function counts like any other: a cycle cannot be
dodged by moving an import into a function body. The Django-free ML core (workers.ml, workers.experiments)
is a library any layer may call, and imports none of them (tests/ml/test_import.py checks it loads without
Django).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from picterra.jobs import Job

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("picterra", "imagery", "detectors", "workers")

#: Layers, lowest first. A module may import its own layer and those below it. The entry points compose
#: the apps (URL confs, the Picterra-compatible API, the organization views and admin that delete across
#: apps); they live in picterra/ because the project layout is fixed, but sit above the apps.
LIBRARY = ("workers.ml", "workers.experiments")
ENTRY = (
    "picterra.urls",
    "picterra.views",
    "picterra.public_api",
    "picterra.organizations.api",
    "picterra.organizations.admin",
)
LAYERS = {"library": 0, "picterra": 1, "imagery": 2, "detectors": 3, "entry": 4, "workers": 5}


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def layer_of(module: str) -> str:
    if _under(module, LIBRARY):
        return "library"
    if _under(module, ENTRY):
        return "entry"
    return module.split(".")[0]


def project_imports() -> list[tuple[str, str, int, bool]]:
    """(importing module, imported module, line, inside a function) for every import of a project module."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            tree = ast.parse(path.read_text(), str(path))
            in_function = {
                id(node)
                for fn in ast.walk(tree)
                if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
                for node in ast.walk(fn)
            }
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] in PACKAGES:
                        found.append((module, name, node.lineno, id(node) in in_function))
    return found


def test_every_import_points_down_the_layers():
    upward = [
        f"{importer}:{line} imports {imported} ({layer_of(importer)} -> {layer_of(imported)})"
        for importer, imported, line, _ in project_imports()
        if LAYERS[layer_of(imported)] > LAYERS[layer_of(importer)]
    ]
    assert upward == []


def test_the_ml_core_imports_no_app():
    leaks = [
        f"{importer}:{line} imports {imported}"
        for importer, imported, line, _ in project_imports()
        if layer_of(importer) == "library" and layer_of(imported) != "library"
    ]
    assert leaks == []


def test_no_project_import_is_hidden_in_a_function():
    """Except Django's documented place for wiring signals, ``AppConfig.ready``."""
    hidden = [
        f"{importer}:{line} imports {imported}"
        for importer, imported, line, in_function in project_imports()
        if in_function and layer_of(importer) != "library" and not importer.endswith(".apps")
    ]
    assert hidden == []


def test_the_checks_catch_what_they_claim():
    """The rules above are not vacuous: an upward import and a hidden one are seen for what they are."""
    assert LAYERS[layer_of("workers.tasks")] > LAYERS[layer_of("imagery.ingest")]
    assert LAYERS[layer_of("detectors.models")] > LAYERS[layer_of("picterra.organizations.models")]
    assert layer_of("workers.ml.grid") == "library" and layer_of("picterra.public_api.views") == "entry"
    found = project_imports()
    assert ("workers.pipelines", "detectors.runs") in {(a, b) for a, b, _, _ in found}
    assert len(found) > 100


@pytest.mark.django_db
def test_every_job_is_a_registered_task_routed_to_a_queue():
    """Apps queue by name (picterra.jobs.Job): each name must be a task the worker registers."""
    import workers.tasks  # noqa: F401  (registers the tasks, as the worker's autodiscovery does)
    from picterra.celery import app

    registered = {name for name in app.tasks if name.startswith("workers.")}
    assert registered == {job.value for job in Job}
    assert app.amqp.router.route({}, Job.TRAIN_DETECTOR.value)["queue"].name == "gpu"
    assert app.amqp.router.route({}, Job.INGEST_IMAGE.value)["queue"].name == "default"


def test_the_detector_configuration_is_declared_once():
    """The model's CONFIGURATION_FIELDS is what the ML core's DetectorConfig takes (besides the classes),
    what the API serializer lists and what Picterra's API returns."""
    from dataclasses import fields

    from detectors.api.serializers import DetectorSerializer
    from detectors.models import Detector
    from picterra.public_api.serializers import ConfigurationSerializer
    from workers.ml.config import DetectorConfig

    assert {f.name for f in fields(DetectorConfig)} - {"classes"} == set(Detector.CONFIGURATION_FIELDS)
    assert set(Detector.CONFIGURATION_FIELDS) <= set(DetectorSerializer.Meta.fields)
    assert set(ConfigurationSerializer().fields) == set(Detector.CONFIGURATION_FIELDS)
    assert Detector().configuration() == {key: getattr(Detector(), key) for key in Detector.CONFIGURATION_FIELDS}


def test_the_web_server_does_not_load_pytorch():
    """The apps call the light parts of the ML core (the grid, raster I/O) at module level; PyTorch and the
    networks (~0.9 GB per process, seconds to import) must stay in the workers (workers/ml/__init__.py loads
    its public names lazily)."""
    code = (
        "import sys, django\n"
        "django.setup()\n"
        "import picterra.urls, detectors.detection, detectors.results, detectors.api.views\n"
        "print(sorted(m for m in sys.modules if m == 'torch'))\n"
        "sys.exit(1 if 'torch' in sys.modules else 0)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "picterra.settings", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
