"""Stale jobs end: lost messages are re-queued, rows whose attempts are spent are failed with a reason."""

from __future__ import annotations

import io
from datetime import timedelta

from django.utils import timezone

from detectors.models import DetectionCell, DetectionRun, Detector, RunStatus, TrainingRun
from detectors.sweep import WORKER_LOST
from imagery.models import BlobPurge, Image
from imagery.storage import get_blob_store
from imagery.sweep import UPLOAD_ABANDONED
from workers.sweeper import sweep_stale_jobs, sweep_storage


def test_sweeper_requeues_fails_and_leaves_fresh_work_alone(
    personas, project, settings, django_capture_on_commit_callbacks
):
    later = timezone.now() + timedelta(seconds=settings.STALE_JOB_TIMEOUT_S + 1)
    queued = Image.objects.create(project=project, name="q", status=Image.Status.UPLOADED)
    stuck = Image.objects.create(project=project, name="s", status=Image.Status.INGESTING)
    detector = Detector.objects.create(organization=personas.organization, name="d")
    dead_run = TrainingRun.objects.create(
        detector=detector, version=1, status=RunStatus.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    spent = Image.objects.create(
        project=project, name="x", status=Image.Status.INGESTING, ingest_attempts=settings.INGEST_MAX_ATTEMPTS
    )
    spent_run = TrainingRun.objects.create(
        detector=detector,
        version=2,
        status=RunStatus.RUNNING,
        heartbeat_at=timezone.now(),
        attempts=settings.TRAINING_MAX_ATTEMPTS,
    )
    with django_capture_on_commit_callbacks() as callbacks:
        result = sweep_stale_jobs(now=later)
    assert result == {
        "detections_finished": 0,
        "detection_cells_requeued": 0,
        "images_requeued": 2,
        "images_failed": 1,
        "uploads_abandoned": 0,
        "training_runs_requeued": 1,
        "runs_failed": 1,
    }
    # Ingest of `queued` and `stuck` and training of `dead_run` are asked for again (attempts remain).
    assert len(callbacks) == 3
    for row in (queued, stuck, dead_run, spent, spent_run):
        row.refresh_from_db()
    assert queued.status == Image.Status.UPLOADED and stuck.status == Image.Status.INGESTING
    assert dead_run.status == RunStatus.RUNNING and dead_run.queued_at == later
    assert spent.status == Image.Status.FAILED and "stopped the worker 3 times" in spent.error
    assert (spent_run.status, spent_run.error) == (RunStatus.FAILED, WORKER_LOST)
    assert spent_run.finished_at == later

    fresh = sweep_stale_jobs(now=timezone.now())
    assert not any(fresh.values())


def test_sweeper_gives_up_on_uploads_never_committed(personas, project):
    image = Image.objects.create(
        project=project, name="half", status=Image.Status.UPLOADING, original_key="images/x/original/half.tif"
    )
    store = get_blob_store()
    store.put_stream(f"images/{image.pk}/original/half.tif", io.BytesIO(b"partial bytes"))
    assert sweep_stale_jobs(now=timezone.now() + timedelta(hours=47))["uploads_abandoned"] == 0
    assert sweep_stale_jobs(now=timezone.now() + timedelta(hours=49))["uploads_abandoned"] == 1
    image.refresh_from_db()
    assert (image.status, image.error) == (Image.Status.FAILED, UPLOAD_ABANDONED)
    assert list(store.list(f"images/{image.pk}/")) == []


def test_sweeper_finishes_a_detection_whose_cells_all_ended(
    personas, ready_image, settings, django_capture_on_commit_callbacks
):
    """The last cell's "finish" message was lost: the work is done, so finish it rather than fail it."""
    later = timezone.now() + timedelta(seconds=settings.STALE_JOB_TIMEOUT_S + 1)
    detector = Detector.objects.create(organization=personas.organization, name="d")
    version = TrainingRun.objects.create(detector=detector, version=1, status=RunStatus.SUCCEEDED)
    runs = {}
    for name, cell_statuses in {"ended": ["done", "failed"], "busy": ["done", "running"]}.items():
        run = DetectionRun.objects.create(
            detector=detector, training_run=version, status=RunStatus.RUNNING, heartbeat_at=timezone.now()
        )
        for i, status in enumerate(cell_statuses):
            DetectionCell.objects.create(
                run=run, image=ready_image, key=f"r0c{i}", window=[0, 0, 1, 1], margin=0, status=status
            )
        runs[name] = run
    with django_capture_on_commit_callbacks() as callbacks:
        result = sweep_stale_jobs(now=later)
    # The busy run's running cell stopped moving too (its worker died): it is queued again.
    assert result["detections_finished"] == 1 and result["detection_cells_requeued"] == 1
    assert len(callbacks) == 2  # finish_detection of the ended run, detect_cell of the busy one
    runs["ended"].refresh_from_db()
    runs["busy"].refresh_from_db()
    assert runs["ended"].status == RunStatus.RUNNING and runs["ended"].queued_at == later
    assert runs["busy"].status == RunStatus.RUNNING and runs["busy"].queued_at == later
    assert not any(sweep_stale_jobs(now=later).values()), "asked for at most once per STALE_JOB_TIMEOUT_S"


def test_storage_sweep_carries_out_purges_whose_message_was_lost(db):
    """A purge recorded by a delete whose task never ran is carried out by the periodic storage sweep."""
    store = get_blob_store()
    store.put_stream("images/00000000-0000-0000-0000-00000000dead/cog-1.tif", io.BytesIO(b"x"))
    store.put_stream("images/00000000-0000-0000-0000-00000000beef/cog-1.tif", io.BytesIO(b"y"))
    BlobPurge.objects.create(prefix="images/00000000-0000-0000-0000-00000000dead/")

    result = sweep_storage()

    assert result["blob_prefixes_purged"] == 1 and result["blob_purges_failed"] == 0
    assert not BlobPurge.objects.exists()
    assert not store.exists("images/00000000-0000-0000-0000-00000000dead/cog-1.tif")
    assert store.exists("images/00000000-0000-0000-0000-00000000beef/cog-1.tif")
