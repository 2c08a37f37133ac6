"""Settings come from the environment only, fail loudly, and docker-compose speaks the same names."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml
from django.core.exceptions import ImproperlyConfigured

from picterra.env import env_bool, env_int, env_list, env_str
from tests.conftest import REPO

SETTINGS_READ = re.compile(r'env_(?:str|bool|int|list)\(\s*"([A-Z_]+)"')


def settings_variables() -> set[str]:
    return set(SETTINGS_READ.findall((REPO / "picterra" / "settings.py").read_text()))


def env_example_variables() -> set[str]:
    lines = (REPO / ".env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}


def test_env_example_lists_exactly_the_variables_settings_read():
    assert settings_variables() == env_example_variables()


def test_docker_compose_services_and_variables_match_settings():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"db", "redis", "web", "tiles", "worker", "worker-gpu", "beat"} <= set(services)
    known = settings_variables()
    for name in ("web", "tiles", "worker", "worker-gpu", "beat"):
        env = services[name]["environment"]
        unknown = set(env) - known - {"NVIDIA_VISIBLE_DEVICES"}
        assert not unknown, f"{name} sets variables settings never read: {unknown}"
        assert env["DATABASE_URL"].startswith("postgis://") and "@db:5432/" in env["DATABASE_URL"]
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
    assert "imagery.tile_wsgi" in services["tiles"]["command"]
    assert services["tiles"]["environment"]["TILE_BASE_URL"]
    assert services["worker"]["environment"]["CELERY_WORKER_QUEUES"] == "default"
    assert services["worker-gpu"]["environment"]["CELERY_WORKER_QUEUES"] == "gpu"
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    db = services["db"]
    assert db["image"].startswith("postgis/postgis")
    assert db["environment"]["POSTGRES_DB"] == "picterra"


def test_embedded_run_starts_a_separate_tile_server():
    procfile = dict(line.split(": ", 1) for line in (REPO / "Procfile").read_text().splitlines() if line.strip())
    assert "imagery.tile_wsgi" in procfile["tiles"] and "${TILE_PORT}" in procfile["tiles"]
    run = (REPO / "scripts" / "run.sh").read_text()
    assert "export TILE_PORT=" in run and "export TILE_BASE_URL=" in run


def test_typed_helpers_fail_loudly(monkeypatch):
    monkeypatch.setenv("X_INT", "twelve")
    with pytest.raises(ImproperlyConfigured, match="X_INT='twelve' is not an integer"):
        env_int("X_INT", 1)
    monkeypatch.setenv("X_INT", "0")
    with pytest.raises(ImproperlyConfigured, match="below its minimum 1"):
        env_int("X_INT", 1, minimum=1)
    monkeypatch.setenv("X_BOOL", "maybe")
    with pytest.raises(ImproperlyConfigured, match="not a boolean"):
        env_bool("X_BOOL", False)
    monkeypatch.delenv("X_REQUIRED", raising=False)
    with pytest.raises(ImproperlyConfigured, match="X_REQUIRED is required"):
        env_str("X_REQUIRED")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert env_list("X_LIST", []) == ["a", "b", "c"]
    monkeypatch.setenv("X_BOOL", "Yes")
    assert env_bool("X_BOOL", False) is True


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DATABASE_URL", "mysql://root@localhost/db", "DATABASE_URL scheme 'mysql' is not supported"),
        ("CELERY_WORKER_CONCURRENCY", "0", "CELERY_WORKER_CONCURRENCY=0 is below its minimum 1"),
        ("DEBUG", "perhaps", "DEBUG='perhaps' is not a boolean"),
        ("GPU_TTA", "3", "GPU_TTA=3 must be 1, 2, 4 or 8"),
        ("GPU_TRAINING_SLOTS", "0", "GPU_TRAINING_SLOTS=0 is below its minimum 1"),
        ("WORKER_KEEP_FREED_MB", "4096", "WORKER_KEEP_FREED_MB=4096 is above its maximum 2047"),
    ],
)
def test_bad_configuration_stops_start_up_with_the_variable_named(variable, value, message, tmp_path):
    env = {**os.environ, variable: value, "VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert message in result.stderr
