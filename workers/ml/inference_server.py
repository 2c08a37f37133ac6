"""One process owns the network on the device and serves batched tile inference to several CPU processes.

Why: on a GPU a cell's network time is a small part of its work (reading, blending, instances, polygons and
database writes stay on the CPU, ~1.65 MP per CPU second measured), so one process per GPU that does
everything in turn leaves the GPU idle most of the time. Here the CPU worker processes (Celery's pool, or the
bench's processes) cut their windows into tiles and send them to this server, which runs the tiles of
several windows (cells) together in batches of up to ``max_batch`` tiles, waiting at most ``max_wait_s`` for
company, under bf16 autocast on CUDA; while one process waits for its tiles, the others read and
post-process. On a CPU-only machine the same code runs the network on the CPU (tests and the bench run it
so).

Transport: a Unix socket (``multiprocessing.connection``) for small messages; a window's tiles and their
probabilities travel through a shared-memory block the client owns and reuses, so nothing large is pickled.
The server loads a model once per key from a directory the client wrote with ``save_model``.

Failure: every client call has a deadline (``timeout_s``): an unreachable, dead or silent server raises
``InferenceUnavailable`` within it, never a hang; the job that called it fails like any other error and is
retried by its row's policy (a detection cell's attempts). ``ServerSupervisor`` restarts a server process
that exits.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Client, Connection, Listener
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .dihedral import TTA_TRANSFORMS
from .model_card import load_model, save_model
from .predict import _tta_probs, probability_stride
from .trained import TrainedModel

logger = logging.getLogger(__name__)

#: Tiles per network call on a GPU when not told otherwise: 16 x 512^2 (or 4 x 1024^2 in pixels) keeps an
#: H100-class device's kernels large while a window's tiles (9-25) fill a batch on their own.
GPU_BATCH_TILES = 16


class InferenceUnavailable(RuntimeError):
    """The inference server could not be reached, died, refused the request or did not answer in time."""


@dataclass(eq=False)  # identity: queued requests are found and removed by identity
class _Request:
    """One window's tiles waiting on the server (views into the client's shared memory)."""

    key: str
    tiles: np.ndarray  # (n, channels, h, w) uint8
    out: np.ndarray  # (n, n_out, h / stride, w / stride) float32
    arrived: float
    stride: int = 1  # the maps' (``predict.probability_stride``)
    taken: int = 0  # tiles given to a batch
    finished: int = 0  # tiles whose probabilities are written
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def shape(self) -> tuple[int, ...]:
        """What requests batched together share: the tiles' shape and the maps' stride."""
        return (*self.tiles.shape[1:], self.stride)


@dataclass
class ServerStats:
    """What the server did: each batch's (tiles, requests it took tiles from), the seconds the device was
    busy with batches, the seconds since the first request (and, in ``as_dict``, the process's CPU seconds)."""

    batches: list[tuple[int, int]] = field(default_factory=list)
    busy_s: float = 0.0
    first_request: float | None = None

    def as_dict(self) -> dict[str, Any]:
        up = 0.0 if self.first_request is None else time.monotonic() - self.first_request
        return {"batches": list(self.batches), "tiles": sum(t for t, _ in self.batches), "busy_s": self.busy_s,
                "up_s": up, "cpu_s": time.process_time()}


class InferenceServer:
    """The device side: models by key, a queue of requests, one thread running batches on the device."""

    def __init__(self, device: str, max_batch: int | None = None, max_wait_s: float = 0.02,
                 tile: int | None = None, max_models: int = 4) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = str(torch.device(device))
        self.max_models = max_models
        cuda = torch.device(device).type == "cuda"
        self.max_batch = max_batch or (GPU_BATCH_TILES if cuda else 1)
        self.max_wait_s = max_wait_s
        self.tile = tile
        self.models: dict[str, TrainedModel] = {}
        self.stats = ServerStats()
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._load_lock = threading.Lock()

    # --- the device loop ------------------------------------------------------------------------------------------

    def _next_batch(self) -> list[tuple[_Request, int, int]]:
        """Up to ``max_batch`` tiles of one (model, tile shape), oldest first, once the batch is full or its
        oldest request has waited ``max_wait_s``: [(request, first tile, count)]."""
        with self._cond:
            while True:
                while not self._queue:
                    self._cond.wait()
                first = self._queue[0]
                same = [r for r in self._queue if r.key == first.key and r.shape == first.shape]
                waiting = sum(r.tiles.shape[0] - r.taken for r in same)
                left = first.arrived + self.max_wait_s - time.monotonic()
                if waiting >= self.max_batch or left <= 0:
                    break
                self._cond.wait(left)
            parts, need = [], self.max_batch
            for r in same:
                k = min(need, r.tiles.shape[0] - r.taken)
                parts.append((r, r.taken, k))
                r.taken += k
                need -= k
                if r.taken == r.tiles.shape[0]:
                    self._queue.remove(r)
                if need == 0:
                    break
            return parts

    @torch.inference_mode()
    def _run(self, parts: list[tuple[_Request, int, int]]) -> None:
        model = self.models[parts[0][0].key]
        dev = torch.device(self.device)
        cuda = dev.type == "cuda"
        batch = torch.from_numpy(np.concatenate([r.tiles[s : s + k] for r, s, k in parts]))
        if cuda:
            batch = batch.pin_memory().to(dev, non_blocking=True)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
        scale = model.recipe.scale if model.recipe.scale > 0 else 1.0
        with amp:
            probs = _tta_probs(model.network, batch, scale, TTA_TRANSFORMS[model.recipe.tta], together=cuda,
                               stride=parts[0][0].stride)
        probs = probs.cpu().numpy()
        at = 0
        for r, s, k in parts:
            r.out[s : s + k] = probs[at : at + k]
            at += k

    def device_loop(self) -> None:
        """Run batches forever (the server process's main work)."""
        while True:
            parts = self._next_batch()
            started = time.monotonic()
            try:
                self._run(parts)
            except Exception as exc:  # one bad batch fails its requests, not the server
                logger.exception("inference batch failed")
                for r, _, _ in parts:
                    r.error = f"{type(exc).__name__}: {exc}"
            self.stats.busy_s += time.monotonic() - started
            self.stats.batches.append((sum(k for _, _, k in parts), len({id(r) for r, _, _ in parts})))
            for r, _, k in parts:
                r.finished += k
                if r.error:
                    with self._cond:  # its other tiles are not run: the client has its answer
                        if r in self._queue:
                            self._queue.remove(r)
                    r.done.set()
                elif r.finished == r.tiles.shape[0]:
                    r.done.set()

    # --- the clients' side ----------------------------------------------------------------------------------------

    def _load(self, key: str, directory: str) -> None:
        with self._load_lock:
            if key not in self.models:
                self.models[key] = load_model(directory, device=self.device)
            with self._cond:  # bounded device memory: the oldest models no queued tiles need are dropped
                busy = {r.key for r in self._queue}
                for old in [k for k in self.models if k != key and k not in busy][: len(self.models) - self.max_models]:
                    del self.models[old]

    def _predict(self, key: str, shm: SharedMemory, shape: tuple[int, int, int, int], n_out: int,
                 stride: int = 1) -> None:
        model = self.models.get(key)
        if model is None:
            raise InferenceUnavailable(f"model {key!r} is not loaded")
        expected = model.network.n_classes + 2 + model.network.box_channels
        if n_out != expected:
            raise InferenceUnavailable(f"model {key!r} has {expected} output channels, the client expects {n_out}")
        if stride not in (1, probability_stride(model.config, model.recipe)) or shape[2] % stride or shape[3] % stride:
            raise InferenceUnavailable(f"model {key!r} has no maps at stride {stride} for tiles of {shape[2:]}")
        n = shape[0]
        tiles = np.ndarray(shape, np.uint8, buffer=shm.buf)
        out = np.ndarray((n, n_out, shape[2] // stride, shape[3] // stride), np.float32, buffer=shm.buf,
                         offset=_output_offset(shape))
        request = _Request(key, tiles, out, time.monotonic(), stride=stride)
        with self._cond:
            if self.stats.first_request is None:
                self.stats.first_request = request.arrived
            self._queue.append(request)
            self._cond.notify()
        request.done.wait()
        if request.error:
            raise InferenceUnavailable(request.error)

    def serve_connection(self, conn: Connection) -> None:
        """Answer one client's messages until it hangs up."""
        attached: dict[str, SharedMemory] = {}
        try:
            while True:
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    return
                kind, args = message[0], message[1:]
                try:
                    if kind == "hello":
                        reply: tuple = ("ok", {"device": self.device, "tile": self.tile, "max_batch": self.max_batch,
                                              "pid": os.getpid()})
                    elif kind == "has_model":
                        reply = ("ok", args[0] in self.models)
                    elif kind == "load":
                        self._load(*args)
                        reply = ("ok", None)
                    elif kind == "predict":
                        key, name, shape, n_out, stride = args
                        if name not in attached:  # a client's new (larger) block: its old one is unused now
                            for stale in attached.values():
                                with contextlib.suppress(BufferError):  # else closed when collected
                                    stale.close()
                            attached = {name: _attach(name)}
                        self._predict(key, attached[name], tuple(shape), n_out, stride)
                        reply = ("ok", None)
                    elif kind == "stats":
                        with self._cond:
                            queued = sum(r.tiles.shape[0] - r.taken for r in self._queue)
                        reply = ("ok", {**self.stats.as_dict(), "queued": queued})
                    else:
                        reply = ("error", f"unknown message {kind!r}")
                except Exception as exc:
                    logger.exception("inference request %s failed", kind)
                    reply = ("error", f"{type(exc).__name__}: {exc}")
                try:
                    conn.send(reply)
                except OSError:
                    return
        finally:
            for shm in attached.values():
                with contextlib.suppress(BufferError):
                    shm.close()
            conn.close()

    def serve(self, address: str, ready: Any = None) -> None:
        """Listen on the Unix socket ``address`` and run the device loop; returns never."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)
        Path(address).parent.mkdir(parents=True, exist_ok=True)
        listener = Listener(address, family="AF_UNIX")
        os.chmod(address, 0o600)  # this machine's worker processes, run as the same user, and no one else

        def accept() -> None:
            while True:
                conn = listener.accept()
                threading.Thread(target=self.serve_connection, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, name="inference-accept", daemon=True).start()
        logger.info("inference server on %s: device %s, batches of %d tiles, waiting %.3f s at most",
                    address, self.device, self.max_batch, self.max_wait_s)
        if ready is not None:
            ready.set()
        self.device_loop()


def _output_offset(shape: tuple[int, ...]) -> int:
    """Where the probabilities start in a request's shared memory: after the tiles, 64-byte aligned."""
    return -(-int(np.prod(shape)) // 64) * 64


def _attach(name: str) -> SharedMemory:
    """Open a client's block (the client unlinks it, and ignores finding it already gone: a server with a
    resource tracker of its own unlinks the blocks it opened when it exits)."""
    return SharedMemory(name=name)


def run_server(address: str, device: str, max_batch: int | None = None, max_wait_s: float = 0.02,
               tile: int | None = None, threads: int | None = None, ready: Any = None) -> None:
    """A server process's entry point (picklable for the ``spawn`` start method); ``device`` "auto": CUDA
    when this process sees it (decided here, so the process that starts it never touches CUDA before
    forking its pool)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s inference %(levelname)s %(message)s")
    if threads:
        torch.set_num_threads(threads)
    InferenceServer(device, max_batch, max_wait_s, tile).serve(address, ready)


# --- the CPU processes' side ------------------------------------------------------------------------------------------


class InferenceClient:
    """One CPU process's connection to the server (not shared between threads). Every call answers within
    ``timeout_s`` or raises ``InferenceUnavailable``; after a failure the next call connects again."""

    def __init__(self, address: str, timeout_s: float = 120.0, connect_timeout_s: float = 5.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._conn: Connection | None = None
        self._info: dict[str, Any] | None = None
        self._shm: SharedMemory | None = None

    def _connect(self) -> Connection:
        if self._conn is None:
            deadline = time.monotonic() + self.connect_timeout_s
            while True:
                try:
                    self._conn = Client(self.address, family="AF_UNIX")
                    break
                except (FileNotFoundError, ConnectionRefusedError) as exc:
                    if time.monotonic() >= deadline:
                        raise InferenceUnavailable(
                            f"no inference server at {self.address} ({type(exc).__name__}) after "
                            f"{self.connect_timeout_s:g} s") from exc
                    time.sleep(0.1)
            self._info = None
            self._info = self._call("hello", timeout_s=self.connect_timeout_s + self.timeout_s)
        return self._conn

    def _call(self, *message: Any, timeout_s: float | None = None) -> Any:
        conn = self._connect()
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            conn.send(message)
            if not conn.poll(timeout):
                raise InferenceUnavailable(f"the inference server did not answer {message[0]!r} within {timeout:g} s")
            status, value = conn.recv()
        except InferenceUnavailable:
            self._abandon()
            raise
        except (EOFError, OSError) as exc:
            self._abandon()
            raise InferenceUnavailable(f"the inference server went away during {message[0]!r}: "
                                       f"{type(exc).__name__}") from exc
        if status != "ok":
            raise InferenceUnavailable(f"the inference server refused {message[0]!r}: {value}")
        return value

    @property
    def info(self) -> dict[str, Any]:
        """The server's device (``cuda:0``, ``cpu``), tile side (None: the recipe's) and batch size."""
        self._connect()
        assert self._info is not None
        return self._info

    def ensure_model(self, key: str, model: TrainedModel) -> None:
        """Make the server hold ``model`` under ``key`` (written to a temporary directory it loads from)."""
        if self._call("has_model", key):
            return
        folder = tempfile.mkdtemp(prefix="inference-model-")
        try:
            save_model(model, folder)
            self._call("load", key, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def tile_probs(self, key: str, tiles: np.ndarray, n_out: int, stride: int = 1) -> np.ndarray:
        """(n, c, h, w) uint8 tiles -> (n, n_out, h / stride, w / stride) float32 probabilities of the model
        held as ``key``."""
        shape = tuple(int(s) for s in tiles.shape)
        maps = (shape[0], n_out, shape[2] // stride, shape[3] // stride)
        offset = _output_offset(shape)
        size = offset + int(np.prod(maps)) * 4
        if self._shm is None or self._shm.size < size:
            self._release_shm()
            self._shm = SharedMemory(create=True, size=size)
        np.ndarray(shape, np.uint8, buffer=self._shm.buf)[...] = tiles
        self._call("predict", key, self._shm.name, shape, n_out, stride)
        out = np.ndarray(maps, np.float32, buffer=self._shm.buf, offset=offset)
        return out.copy()

    def stats(self) -> dict[str, Any]:
        """The server's ``ServerStats`` as a dict (batches, tiles, busy_s, up_s)."""
        return self._call("stats")

    def _abandon(self) -> None:
        """After a failed call: a new connection, and a new shared block, since the server may still write
        the abandoned request's probabilities into the old one."""
        self.close_connection()
        self._release_shm()

    def close_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        self._conn = None

    def _release_shm(self) -> None:
        if self._shm is not None:
            self._shm.close()
            with contextlib.suppress(FileNotFoundError):
                self._shm.unlink()
            self._shm = None

    def close(self) -> None:
        self.close_connection()
        self._release_shm()


@dataclass
class ServerTiles:
    """A model's tiles predicted by the server (``predict.predict_array``'s ``tiles`` argument)."""

    client: InferenceClient
    key: str

    @property
    def device_type(self) -> str:
        return torch.device(self.client.info["device"]).type

    @property
    def tile(self) -> int | None:
        return self.client.info["tile"]

    def prepare(self, model: TrainedModel) -> None:
        self.client.ensure_model(self.key, model)

    def tile_probs(self, model: TrainedModel, tiles: np.ndarray, stride: int = 1) -> np.ndarray:
        n_out = model.network.n_classes + 2 + model.network.box_channels
        return self.client.tile_probs(self.key, tiles, n_out, stride)


# --- keeping a server process running -----------------------------------------------------------------------------


class ServerSupervisor:
    """Starts the server in its own process (``spawn``: no state inherited from the worker) and starts it
    again, after ``restart_after_s``, whenever it exits, until ``stop``."""

    def __init__(self, address: str, device: str, max_batch: int | None = None, max_wait_s: float = 0.02,
                 tile: int | None = None, threads: int | None = None, restart_after_s: float = 1.0) -> None:
        self.args = (address, device, max_batch, max_wait_s, tile, threads)
        self.restart_after_s = restart_after_s
        self.process: mp.process.BaseProcess | None = None
        self.starts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ctx = mp.get_context("spawn")
        self._ready: Any = None

    def start(self, wait_ready_s: float | None = 120.0) -> None:
        """Start the first server process (waiting until it listens) and the thread that restarts it."""
        self._spawn(wait_ready_s)
        self._thread = threading.Thread(target=self._watch, name="inference-supervisor", daemon=True)
        self._thread.start()

    def _spawn(self, wait_ready_s: float | None) -> None:
        # kept until the next start: a child still unpickling it must find its semaphore
        self._ready = ready = self._ctx.Event()
        self.process = self._ctx.Process(target=run_server, args=(*self.args, ready), name="inference-server",
                                         daemon=True)
        self.process.start()
        self.starts += 1
        if wait_ready_s is None:
            return
        deadline = time.monotonic() + wait_ready_s
        while not ready.wait(0.1):
            if not self.process.is_alive() or time.monotonic() > deadline:
                logger.warning("the inference server did not start listening (exit code %s)", self.process.exitcode)
                return

    def _watch(self) -> None:
        while not self._stop.is_set():
            assert self.process is not None
            self.process.join(timeout=0.5)
            if self.process.exitcode is not None and not self._stop.is_set():
                logger.error("the inference server exited (%s); starting it again", self.process.exitcode)
                if self._stop.wait(self.restart_after_s):
                    return
                self._spawn(wait_ready_s=None)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.process is not None and self.process.is_alive():
            self.process.terminate()
            self.process.join(10)


def main(argv: list[str] | None = None) -> None:
    """``python -m workers.ml.inference_server --socket PATH``: a server on its own (a container beside the
    workers, or a bench)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-tiles", type=int, default=None)
    parser.add_argument("--wait-ms", type=float, default=20.0)
    parser.add_argument("--tile", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    a = parser.parse_args(argv)
    run_server(a.socket, a.device, a.batch_tiles, a.wait_ms / 1000, a.tile, a.threads)


if __name__ == "__main__":
    main()
