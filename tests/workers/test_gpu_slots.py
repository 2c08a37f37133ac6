"""Training slots of a GPU machine (workers/gpu_slots.py): at most N trainings on the device, the others wait.

Another training is a real second process holding a slot's lock; it lets go when the test closes its input
or kills it, and the test waits for it to end before looking, so nothing depends on when anything lands.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from detectors.models import RunStatus, TrainingRun
from detectors.runs import WAITING_FOR_GPU
from picterra.jobs import RowMoved
from workers import gpu_slots, pipelines
from workers.gpu_slots import training_slot, try_slot

HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("holding", flush=True)
sys.stdin.read()
"""


class OtherTraining:
    """A process holding training slot ``index`` until ``release`` (or ``kill``)."""

    def __init__(self, directory: Path, index: int = 0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory / f"slot-{index}.lock")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "holding"

    def release(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc.stdin.close()


@pytest.fixture
def slots_dir(tmp_path) -> Path:
    return tmp_path / "slots"


def slot_free(slots: int, directory: Path) -> bool:
    """Whether a slot could be taken now (one taken here is given back at once)."""
    fd = try_slot(slots, directory)
    if fd is None:
        return False
    os.close(fd)
    return True


def test_a_slot_is_taken_only_while_free_and_freed_by_its_holder(slots_dir):
    other = OtherTraining(slots_dir)
    try:
        assert not slot_free(1, slots_dir)  # the only slot is the other training's
        second = try_slot(2, slots_dir)  # a machine with two slots has one left
        assert second is not None
        assert not slot_free(2, slots_dir)
        os.close(second)
    finally:
        other.release()
    assert slot_free(1, slots_dir)


def test_a_training_killed_with_its_worker_never_keeps_its_slot(slots_dir):
    other = OtherTraining(slots_dir)
    assert not slot_free(1, slots_dir)
    other.kill()
    assert slot_free(1, slots_dir)


def test_a_gpu_training_waits_telling_the_user_until_a_slot_frees(slots_dir):
    other = OtherTraining(slots_dir)
    calls = []

    def waiting() -> None:
        calls.append("waiting")
        if len(calls) == 2:  # told the user twice; then the other training ends
            other.release()

    with training_slot("cuda", 1, waiting, poll_s=0, directory=slots_dir):
        assert not slot_free(1, slots_dir)  # held by this training now
    assert calls == ["waiting", "waiting"]
    assert slot_free(1, slots_dir)  # and given back after the block


def test_a_training_cancelled_while_waiting_stops_waiting_without_a_slot(slots_dir):
    other = OtherTraining(slots_dir)
    entered = []

    def cancelled() -> None:
        raise RowMoved("cancelled")

    try:
        with pytest.raises(RowMoved), training_slot("cuda", 1, cancelled, poll_s=0, directory=slots_dir):
            entered.append(True)
    finally:
        other.release()
    assert entered == []


def test_cpu_trainings_take_no_slot(slots_dir):
    other = OtherTraining(slots_dir)
    try:

        def never() -> None:
            raise AssertionError("a CPU training waited for a GPU slot")

        with training_slot("cpu", 1, never, poll_s=0, directory=slots_dir):
            assert not slot_free(1, slots_dir)  # the GPU's slot stays the other training's
    finally:
        other.release()


@pytest.fixture
def one_gpu_slot(monkeypatch, slots_dir):
    """The training pipeline as on a GPU machine with one slot in ``slots_dir`` (the training itself runs on
    this machine's CPU: only the slot is the GPU's), polling without pause."""
    monkeypatch.setattr(pipelines, "training_slot", lambda _device, slots, waiting: gpu_slots.training_slot(
        "cuda", slots, waiting, poll_s=0, directory=slots_dir))
    return slots_dir


@pytest.mark.django_db(transaction=True)
def test_a_queued_training_waits_for_the_gpu_says_so_then_trains(trainable, settings, one_gpu_slot, monkeypatch):
    client, detector, _ = trainable
    settings.TRAINING_TIME_BUDGET_S = 5
    run_id = client.post(reverse("v1:detector-train", args=[detector["id"]])).json()["id"]
    other = OtherTraining(one_gpu_slot)
    seen = []
    report = pipelines.report_training_waiting

    def waiting(rid: str) -> None:
        report(rid)  # what the user sees now
        seen.append(client.get(reverse("v1:trainingrun-detail", args=[rid])).json()["progress"])
        other.release()

    monkeypatch.setattr(pipelines, "report_training_waiting", waiting)
    assert pipelines.run_training(run_id) == RunStatus.SUCCEEDED
    assert seen == [{"step": 0, "waiting": WAITING_FOR_GPU}]
    run = TrainingRun.objects.get(pk=run_id)
    assert "waiting" not in run.progress and run.progress["step"] > 0


@pytest.mark.django_db(transaction=True)
def test_a_training_cancelled_while_it_waits_for_the_gpu_ends_cancelled_untrained(trainable, one_gpu_slot, monkeypatch):
    client, detector, _ = trainable
    run_id = client.post(reverse("v1:detector-train", args=[detector["id"]])).json()["id"]
    other = OtherTraining(one_gpu_slot)
    report = pipelines.report_training_waiting
    trained = []
    monkeypatch.setattr(pipelines.ml_train, "train_detector", lambda *a, **k: trained.append(True))

    def waiting(rid: str) -> None:
        report(rid)  # raises once the run is cancelled
        assert client.post(reverse("v1:trainingrun-cancel", args=[rid])).status_code == 200

    monkeypatch.setattr(pipelines, "report_training_waiting", waiting)
    try:
        assert pipelines.run_training(run_id) == RunStatus.CANCELLED
    finally:
        other.release()
    assert trained == []
    assert TrainingRun.objects.get(pk=run_id).status == RunStatus.CANCELLED
