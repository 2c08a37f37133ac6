"""What the worker tests share: fault rules a real worker obeys, a trained version, a private broker."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rasterio.windows import Window

from detectors.models import DetectionCell, RunStatus
from tests.conftest import stop_process, wait_for
from tests.detectors import conftest as detector_fixtures
from workers.ml.grid import GridCell

# The detectors' fixtures, for the tests here: a detector ready to train, and a trained version of it.
trainable = detector_fixtures.trainable
trained_version = detector_fixtures.trained_version

FINAL = (RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.CANCELLED)


def finished(model, pk):
    return lambda: model.objects.filter(pk=pk, status__in=FINAL).first()


def cell_window_key(cell: DetectionCell, width: int, height: int) -> str:
    """The window predict_window is asked for a cell (the cell grown by its margin), as faults.py names it."""
    col, row, w, h = cell.window
    padded = GridCell(0, 0, Window(col, row, w, h)).padded(cell.margin, width, height)
    return ",".join(str(int(v)) for v in (padded.col_off, padded.row_off, padded.width, padded.height))


class Faults:
    """The rules file of tests/workers/faults.py: set with ``faults(...)``, read back with ``reached``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, **rules) -> dict[str, str]:
        partial = self.path.with_suffix(".test.tmp")
        partial.write_text(json.dumps(rules))
        partial.replace(self.path)  # atomic: the worker never reads half a file
        return {"PICTERRA_TEST_FAULTS": str(self.path)}

    def reached(self, point: str) -> int:
        """How many times a worker arrived at a fault point since the rules were last set."""
        rules = json.loads(self.path.read_text()) if self.path.exists() else {}
        return rules.get("reached", {}).get(point, 0)


@pytest.fixture
def faults(tmp_path) -> Faults:
    """The fault rules a worker started with `include=("tests.workers.faults",)` obeys; editable live."""
    rules = Faults(tmp_path / "faults.json")
    rules()
    return rules


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateBroker:
    """A redis-server of the test's own, without persistence: stopping it loses every message."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self._answers(), timeout=20)
        _forget_broker_connections()  # those of this process went with the previous server

    def stop(self) -> None:
        assert self.process is not None
        stop_process(self.process)
        self.process = None

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5).ping())
        except redis.exceptions.ConnectionError:
            return False

    def messages(self) -> int:
        return broker_messages(self.url)


def broker_messages(url: str | None = None) -> int:
    """Messages waiting in the queues plus those a worker holds unacknowledged (0: every job was handled)."""
    from picterra.celery import app

    client = redis.Redis.from_url(url or app.conf.broker_url)
    prefix = os.environ.get("CELERY_BROKER_KEY_PREFIX", "")
    waiting = sum(client.llen(f"{prefix}{queue}") for queue in ("default", "gpu"))
    return waiting + client.zcard(f"{prefix}unacked_index")


def _forget_broker_connections() -> None:
    """Drop this process's pooled broker connections: the next send or ping opens fresh ones."""
    from kombu import pools

    from picterra.celery import app

    pools.reset()  # kombu's registry would hand back the closed pool for the same address
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def private_broker(tmp_path, monkeypatch) -> Iterator[PrivateBroker]:
    """Points this process's Celery app (and workers started with ``broker.env``) at a private Redis."""
    from picterra.celery import app

    if not os.path.exists("/usr/bin/redis-server") and subprocess.run(["which", "redis-server"]).returncode:
        pytest.skip("redis-server is not installed")
    broker = PrivateBroker(tmp_path)
    broker.start()
    original = app.conf.broker_url

    def point_at(url: str) -> None:
        app.conf.broker_url = url
        _forget_broker_connections()

    point_at(broker.url)
    monkeypatch.setenv("CELERY_BROKER_URL", broker.url)  # for the workers this test starts
    try:
        yield broker
    finally:
        point_at(original)
        if broker.process is not None:
            broker.stop()
