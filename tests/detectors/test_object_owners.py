"""Detected objects keep their owners without foreign-key constraints (migration 0013): ``insert_objects`` locks and
checks the runs, images and classes its rows name, and on PostgreSQL a trigger deletes a deleted owner's objects.

The two orders of a deletion racing an insert are played with two real connections: each side holds its
transaction open until the test has seen (in ``pg_stat_activity``) the other side waiting for its lock, so the
outcome never depends on when a thread happens to run.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction
from shapely.geometry import box

from detectors.models import (
    DetectedObject,
    DetectionCell,
    DetectionRun,
    Detector,
    DetectorClass,
    RunStatus,
    TrainingRun,
)
from detectors.results import NewObject, ObjectOwnerGone, insert_objects, lonlat_geometry
from detectors.runs import DETECTION_CELL, CellObjects
from imagery.models import Image
from imagery.purge import delete_with_blobs
from picterra.jobs import run_row_job
from tests.conftest import wait_for

postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks and triggers: PostgreSQL's")


def _owners(organization):
    detector = Detector.objects.create(organization=organization, name="trees")
    tree = DetectorClass.objects.create(detector=detector, name="tree")
    shrub = DetectorClass.objects.create(detector=detector, name="shrub")
    version = TrainingRun.objects.create(detector=detector, version=1, status=RunStatus.SUCCEEDED)
    run = DetectionRun.objects.create(detector=detector, training_run=version)
    return run, tree, shrub


def _rows(run, image, detector_class, count=3):
    rows = []
    for i in range(count):
        geometry, area = lonlat_geometry(box(6.1 + i * 1e-5, 46.2, 6.1 + i * 1e-5 + 7e-6, 46.2 + 3e-6))
        rows.append(NewObject(None, run.pk, image.pk, detector_class.pk, "r0c0", geometry.hexewkb.decode(), 0.9, area))
    return rows


@pytest.mark.django_db
@pytest.mark.parametrize("gone", ["detection_run", "image", "detector_class"])
def test_objects_naming_an_owner_that_is_gone_are_refused_whole(personas, ready_image, gone):
    run, tree, _ = _owners(personas.organization)
    rows = _rows(run, ready_image, tree)
    {"detection_run": run, "image": ready_image, "detector_class": tree}[gone].delete()

    with pytest.raises(ObjectOwnerGone, match="was deleted while they were being saved"):
        with transaction.atomic():
            insert_objects(rows)
    assert DetectedObject.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_objects_are_only_inserted_in_a_transaction(personas, ready_image):
    """The owners' locks last until the transaction ends: outside one they would be gone before the rows."""
    run, tree, _ = _owners(personas.organization)
    with pytest.raises(RuntimeError, match="in a transaction"):
        insert_objects(_rows(run, ready_image, tree))
    assert DetectedObject.objects.count() == 0


@pytest.mark.django_db
def test_the_object_table_has_no_foreign_key_constraints_left():
    """The point of migration 0013: no per-row key check on the millions of inserts (the keys and indexes stay)."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, DetectedObject._meta.db_table)
    assert [name for name, c in constraints.items() if c["foreign_key"]] == []


@postgresql_only
@pytest.mark.django_db
@pytest.mark.parametrize("owner", ["training_run", "detection_run", "image", "detector_class"])
def test_deleting_an_owner_in_sql_deletes_its_objects_and_only_them(personas, ready_image, owner):
    """The trigger, not Django's cascade: a row deleted by SQL alone takes its objects with it."""
    run, tree, shrub = _owners(personas.organization)
    other = Image.objects.create(project=ready_image.project, name="other.tif", status=Image.Status.READY)
    with transaction.atomic():
        insert_objects(_rows(run, ready_image, tree) + _rows(run, other, shrub, count=2))
        # a version no detection ran with: deleting its row alone leaves no other table's key dangling
        version = TrainingRun.objects.create(detector=run.detector, version=2, status=RunStatus.SUCCEEDED)
        predicted = _rows(run, ready_image, tree, count=4)
        insert_objects([row._replace(training_run_id=version.pk, detection_run_id=None) for row in predicted])
    target = {"training_run": version, "detection_run": run, "image": ready_image, "detector_class": tree}[owner]
    kept = {"training_run": 5, "detection_run": 4, "image": 2, "detector_class": 2}[owner]
    with connection.cursor() as cursor:
        cursor.execute(f'DELETE FROM "{type(target)._meta.db_table}" WHERE id = %s', [target.pk])
    assert DetectedObject.objects.count() == kept
    assert not DetectedObject.objects.filter(**{f"{owner}_id": target.pk}).exists()


def _waiting_for_a_lock() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


class _Side(threading.Thread):
    """One transaction on its own connection: runs ``work``, says so, holds the transaction open until released."""

    def __init__(self, work, hold: bool):
        super().__init__(daemon=True)
        self.work, self.hold = work, hold
        self.done_work, self.release = threading.Event(), threading.Event()
        self.error: Exception | None = None

    def run(self):
        try:
            with transaction.atomic():
                self.work()
                self.done_work.set()
                if self.hold:
                    assert self.release.wait(60), "never released"
        except Exception as error:  # the test reads it
            self.error = error
        finally:
            self.done_work.set()
            connection.close()


def _race(first_work, second_work) -> tuple[_Side, _Side]:
    """``first_work`` done and held open; ``second_work`` started and seen waiting for a lock; then both ended."""
    first = _Side(first_work, hold=True)
    first.start()
    assert first.done_work.wait(60) and first.error is None
    second = _Side(second_work, hold=False)
    second.start()
    wait_for(lambda: _waiting_for_a_lock() >= 1, timeout=60, interval=0.05)
    assert not second.done_work.is_set()  # it waits for the first one's lock
    first.release.set()
    first.join(60)
    second.join(60)
    return first, second


@postgresql_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("owner", ["image", "detector_class"])
def test_a_deletion_waits_for_the_insert_that_locked_its_row_then_deletes_what_it_wrote(personas, ready_image, owner):
    run, tree, _ = _owners(personas.organization)
    target = {"image": ready_image, "detector_class": tree}[owner]
    insert, deletion = _race(
        lambda: insert_objects(_rows(run, ready_image, tree)),
        lambda: delete_with_blobs(type(target).objects.get(pk=target.pk)),
    )
    assert insert.error is None and deletion.error is None
    assert not type(target).objects.filter(pk=target.pk).exists()
    assert DetectedObject.objects.count() == 0  # the rows committed while the deletion waited went with it


@postgresql_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("owner", ["image", "detector_class"])
def test_an_insert_after_a_deletion_waits_for_it_then_inserts_nothing(personas, ready_image, owner):
    run, tree, _ = _owners(personas.organization)
    target = {"image": ready_image, "detector_class": tree}[owner]
    deletion, insert = _race(
        lambda: delete_with_blobs(type(target).objects.get(pk=target.pk)),
        lambda: insert_objects(_rows(run, ready_image, tree)),
    )
    assert deletion.error is None
    assert isinstance(insert.error, ObjectOwnerGone)
    assert DetectedObject.objects.count() == 0

@pytest.mark.django_db
def test_a_cell_whose_class_was_deleted_while_it_worked_fails_in_plain_words(personas, ready_image):
    """No retry brings a class back: the cell fails at once with the reason, and stores nothing."""
    run, tree, _ = _owners(personas.organization)
    cell = DetectionCell.objects.create(run=run, image=ready_image, key="r0c0", window=[0, 0, 256, 256], margin=16)

    def work(cell_id):
        rows = _rows(run, ready_image, tree)
        tree.delete()  # the user deletes the class while the cell detects
        return CellObjects(rows, 0.1)

    assert run_row_job(DETECTION_CELL, str(cell.pk), work) == "failed"
    cell.refresh_from_db()
    assert cell.status == DetectionCell.Status.FAILED and cell.attempts == 1
    assert cell.error == "The detector class these objects belong to was deleted while they were being saved."
    assert DetectedObject.objects.count() == 0
