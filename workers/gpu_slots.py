"""Training slots on a GPU machine: at most a few trainings use the device at a time, whatever the pool's size.

A GPU worker runs many pool processes (``CELERY_WORKER_CONCURRENCY``, 14 in deploy/kubernetes) so that the CPU
side of detection keeps the inference server's device busy, and every one of them may take a training. Without
a bound, 14 trainings would share the GPU at once, each under its wall-clock budget
(``TRAINING_TIME_BUDGET_S``): each would get a share of the device and could stop early with a worse model (as
trainings starved of CPU did under their budget, docs/experiments.md 2026-11-30; on a GPU not measured). So on
CUDA a training first takes one of ``slots`` slots, each an exclusive ``flock`` on a file of this machine;
trainings beyond that wait for one, and their budget starts once they have it. The kernel releases a lock when
its process ends, so a worker that dies, or is killed, never keeps a slot. On a CPU nothing is taken: a CPU
worker's pool processes share its cores out (``WORKER_TORCH_THREADS``)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

#: Where the lock files live: this machine's (this container's) own temporary folder, never a volume that
#: other machines, with their own GPUs, might share.
LOCK_DIR = Path(tempfile.gettempdir()) / "picterra-gpu-training"


def try_slot(slots: int, directory: Path = LOCK_DIR) -> int | None:
    """An open descriptor holding one of ``slots`` training slots, or None when all are taken."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(slots):
        fd = os.open(directory / f"slot-{i}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another training holds it
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        return fd
    return None


@contextlib.contextmanager
def training_slot(device_type: str, slots: int, waiting: Callable[[], None], poll_s: float = 1.0,
                  directory: Path = LOCK_DIR) -> Iterator[None]:
    """Hold a training slot for the block when training on CUDA (nothing on a CPU). While every slot is taken,
    ``waiting()`` is called about every ``poll_s`` seconds (it tells the user, and raises to give up, e.g.
    when the run was cancelled meanwhile)."""
    if device_type != "cuda":
        yield
        return
    fd = try_slot(slots, directory)
    while fd is None:
        waiting()
        time.sleep(poll_s)
        fd = try_slot(slots, directory)
    try:
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
