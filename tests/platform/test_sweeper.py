"""Stale jobs end: lost ingest messages are re-queued, rows whose worker died are failed with a reason."""

from __future__ import annotations

import io
from datetime import timedelta

from django.utils import timezone

from detectors.models import DetectionCell, DetectionRun, Detector, RunStatus, TrainingRun
from imagery.models import Image
from imagery.storage import get_blob_store
from workers.sweeper import UPLOAD_ABANDONED, WORKER_LOST, sweep_stale_jobs


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
    with django_capture_on_commit_callbacks() as callbacks:
        result = sweep_stale_jobs(now=later)
    assert result == {
        "detections_finished": 0,
        "images_requeued": 1,
        "images_failed": 1,
        "uploads_abandoned": 0,
        "runs_failed": 1,
    }
    assert len(callbacks) == 1  # the ingest of `queued` is asked for again
    queued.refresh_from_db()
    stuck.refresh_from_db()
    dead_run.refresh_from_db()
    assert queued.status == Image.Status.UPLOADED
    assert (stuck.status, stuck.error) == (Image.Status.FAILED, WORKER_LOST)
    assert (dead_run.status, dead_run.error) == (RunStatus.FAILED, WORKER_LOST)
    assert dead_run.finished_at == later

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
    assert result["detections_finished"] == 1 and result["runs_failed"] == 1
    assert len(callbacks) == 1  # finish_detection of the ended run
    runs["ended"].refresh_from_db()
    runs["busy"].refresh_from_db()
    assert runs["ended"].status == RunStatus.RUNNING and runs["ended"].heartbeat_at == later
    assert (runs["busy"].status, runs["busy"].error) == (RunStatus.FAILED, WORKER_LOST)
