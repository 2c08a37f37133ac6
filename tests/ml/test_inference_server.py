"""The GPU worker's inference server (``workers.ml.inference_server``), run on the CPU: one real server
process (``spawn``, as the Celery worker starts it) shared by the module's tests.

It must predict what the model predicts in-process, combine tiles of concurrent clients into one batch, and
never leave a client waiting: a dead, silent or missing server is an ``InferenceUnavailable`` within the
client's timeout, and the supervisor starts a killed server again (the server is started while the first test
predicts in-process, so its start costs little of the tests' time)."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace
from multiprocessing.connection import Listener

import pytest
import rasterio
import torch
from rasterio.windows import Window

from workers.ml.config import DetectorConfig, Recipe
from workers.ml.grid import GridCell
from workers.ml.inference_server import InferenceClient, InferenceUnavailable, ServerSupervisor, ServerTiles
from workers.ml.predict import detect_in_cell, probability_stride
from workers.ml.synthetic import tiny_scene
from workers.ml.train import build_network
from workers.ml.trained import TrainedModel

SIZE = 256
# each cell's window (the cell, its 16 px margin, the 16 px context around it: 192 px) is 2 x 2 tiles of
# 128 px: a full batch of 8 tiles needs the tiles of both clients, and the server waits up to MAX_WAIT_S for them
MAX_BATCH = 8
MAX_WAIT_S = 60.0


@pytest.fixture(scope="module")
def scene_model(tmp_path_factory):
    """A scene and an untrained detector (seeded): its blobs are noise, but many, and deterministic."""
    path = tiny_scene(seed=3, size=SIZE, n=14, radius=8).write(tmp_path_factory.mktemp("inference") / "scene.tif")
    torch.manual_seed(0)
    config, recipe = DetectorConfig(classes=["disc"], tile_size=64), Recipe(predict_tile=128, overlap=16)
    return path, TrainedModel(build_network(config, recipe).eval(), config, recipe, {"format": "picterra-detector/1"})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    address = str(tmp_path_factory.mktemp("sock") / "inference.sock")
    supervisor = ServerSupervisor(address, "cpu", max_batch=MAX_BATCH, max_wait_s=MAX_WAIT_S, threads=1,
                                  restart_after_s=0.2)
    supervisor.start(wait_ready_s=None)  # it imports while the first test predicts in-process; clients wait for it
    yield supervisor
    supervisor.stop()


def _cells() -> list[GridCell]:
    return [GridCell(0, 0, Window(32, 32, 128, 128)), GridCell(1, 1, Window(112, 112, 128, 128))]


@pytest.mark.parametrize("stride", [1, 2])  # 2: post-processed at stride 2, the server's maps at the head's stride
def test_two_clients_get_the_in_process_detections_from_one_shared_batch(scene_model, server, stride):
    path, model = scene_model
    model = TrainedModel(model.network, model.config, replace(model.recipe, postprocess_stride=stride), model.card)
    assert probability_stride(model.config, model.recipe) == stride
    with rasterio.open(path) as src:
        local = [detect_in_cell(model, src, cell, 16) for cell in _cells()]
    assert sum(map(len, local)) > 0

    found: dict[int, list] = {}
    stats: dict[str, object] = {}
    first = InferenceClient(server.args[0], timeout_s=MAX_WAIT_S, connect_timeout_s=60)
    try:
        before = first.stats()["batches"]  # the server's batches so far (it serves every test of this module)
    finally:
        first.close()

    def client(i: int) -> None:
        c = InferenceClient(server.args[0], timeout_s=MAX_WAIT_S, connect_timeout_s=60)
        try:
            with rasterio.open(path) as src:
                found[i] = detect_in_cell(model, src, _cells()[i], 16, tiles=ServerTiles(c, f"model-{stride}"))
            stats.update(c.stats())
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(MAX_WAIT_S + 30)
    assert sorted(found) == [0, 1]
    for mine, theirs in zip(local, (found[0], found[1]), strict=True):
        assert [(d.class_name, round(d.score, 4)) for d in mine] == [(d.class_name, round(d.score, 4)) for d in theirs]
        assert all(a.geometry.equals_exact(b.geometry, 1e-6) for a, b in zip(mine, theirs, strict=True))
    # the two windows' 4 + 4 tiles ran as one batch (the server waits up to a minute for a full one, so two
    # batches of 4 would have meant a minute's wait and a failed join above)
    assert stats["batches"] == before + [(8, 2)]


def test_a_missing_or_silent_server_fails_within_the_timeout(tmp_path):
    client = InferenceClient(str(tmp_path / "nobody.sock"), timeout_s=1.0, connect_timeout_s=0.3)
    with pytest.raises(InferenceUnavailable, match="no inference server"):
        client.info  # noqa: B018
    silent = Listener(str(tmp_path / "silent.sock"), family="AF_UNIX")  # accepts, never answers
    held: list = []
    threading.Thread(target=lambda: held.append(silent.accept()), daemon=True).start()
    client = InferenceClient(str(tmp_path / "silent.sock"), timeout_s=0.5, connect_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(InferenceUnavailable, match="did not answer 'hello'"):
        client.info  # noqa: B018
    assert time.monotonic() - started < 5
    silent.close()


def test_a_server_killed_mid_request_fails_the_request_and_is_started_again(scene_model, server):
    path, model = scene_model
    with rasterio.open(path) as src:
        tiles = src.read()[None, :, :96, :96].repeat(3, 0)  # 3 tiles: the server waits for a batch of 8
    client = InferenceClient(server.args[0], timeout_s=MAX_WAIT_S)
    runner = ServerTiles(client, "model-a")
    runner.prepare(model)
    pid = client.info["pid"]
    errors: list[Exception] = []

    def ask() -> None:
        try:
            runner.tile_probs(model, tiles)
        except InferenceUnavailable as exc:
            errors.append(exc)

    asking = threading.Thread(target=ask)
    started = time.monotonic()
    asking.start()
    watcher = InferenceClient(server.args[0], timeout_s=MAX_WAIT_S)
    _wait_for(lambda: watcher.stats()["queued"] == 3)  # the request waits on the server for company
    watcher.close()
    os.kill(pid, signal.SIGKILL)
    asking.join(MAX_WAIT_S)
    assert not asking.is_alive() and time.monotonic() - started < MAX_WAIT_S / 2
    assert len(errors) == 1 and "went away" in str(errors[0])
    client.close()
    # the supervisor starts a new server process (the same start as the first one, which served above)
    _wait_for(lambda: server.starts == 2 and server.process.is_alive() and server.process.pid != pid)


def _wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)

