"""What a detector's card shows (the web app's project page): where its training stands, the version Detect uses
and that version's score, read from the detector list in one query whatever the number of detectors."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from detectors.models import Detector, RunStatus, TrainingRun

pytestmark = pytest.mark.django_db


def cards(client, **params) -> dict[str, dict]:
    response = client.get(reverse("v1:detector-list"), params)
    assert response.status_code == 200, response.json()
    return {d["name"]: d["training"] for d in response.json()["results"]}


def test_a_card_says_untrained_then_the_latest_status_the_version_detect_uses_and_its_score(personas, client_for):
    detector = Detector.objects.create(organization=personas.organization, name="Trees")
    client = client_for(personas.member)
    assert cards(client)["Trees"] == {"status": "untrained", "latest_version": None, "version": None, "score": None}

    first = TrainingRun.objects.create(
        detector=detector, version=1, status=RunStatus.SUCCEEDED, metrics={"score": 81.0}
    )
    TrainingRun.objects.create(detector=detector, version=2, status=RunStatus.SUCCEEDED, metrics={"score": 64.0})
    TrainingRun.objects.create(detector=detector, version=3, status=RunStatus.RUNNING)
    # Without a chosen version, Detect uses the latest that succeeded (2); the latest run (3) is still running.
    assert cards(client)["Trees"] == {"status": "running", "latest_version": 3, "version": 2, "score": 64.0}

    # The chosen version wins, as in detection; its own score is shown.
    response = client.patch(
        reverse("v1:detector-detail", args=[detector.pk]), {"active_training_run": str(first.pk)}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["training"] == {"status": "running", "latest_version": 3, "version": 1, "score": 81.0}
    TrainingRun.objects.filter(version=3).update(status=RunStatus.FAILED)
    assert cards(client)["Trees"] == {"status": "failed", "latest_version": 3, "version": 1, "score": 81.0}
    detail = client.get(reverse("v1:detector-detail", args=[detector.pk])).json()
    assert detail["training"] == cards(client)["Trees"]


def test_a_version_without_a_score_has_none_and_a_new_detector_answers_its_card(personas, client_for):
    client = client_for(personas.owner)
    response = client.post(
        reverse("v1:detector-list"), {"organization": str(personas.organization.pk), "name": "Roofs"}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["training"]["status"] == "untrained"
    detector = Detector.objects.get(pk=response.json()["id"])
    TrainingRun.objects.create(detector=detector, version=1, status=RunStatus.SUCCEEDED, metrics={"note": "no areas"})
    assert cards(client)["Roofs"] == {"status": "succeeded", "latest_version": 1, "version": 1, "score": None}


def test_cards_show_only_the_callers_organizations_detectors(personas, client_for):
    mine = Detector.objects.create(organization=personas.organization, name="Mine")
    theirs = Detector.objects.create(organization=personas.outsider_organization, name="Theirs")
    TrainingRun.objects.create(detector=theirs, version=1, status=RunStatus.SUCCEEDED, metrics={"score": 90.0})
    assert set(cards(client_for(personas.member))) == {"Mine"}
    assert set(cards(client_for(personas.outsider))) == {"Theirs"}
    outsider = client_for(personas.outsider)
    assert outsider.get(reverse("v1:detector-detail", args=[mine.pk])).status_code == 404


def test_the_card_facts_cost_no_query_per_detector(personas, client_for):
    client = client_for(personas.member)

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse("v1:detector-list")).status_code == 200
        return len(ctx.captured_queries)

    def trained_detector(i: int) -> None:
        detector = Detector.objects.create(organization=personas.organization, name=f"d{i}")
        run = TrainingRun.objects.create(
            detector=detector, version=1, status=RunStatus.SUCCEEDED, metrics={"score": 50.0}
        )
        TrainingRun.objects.create(detector=detector, version=2, status=RunStatus.FAILED)
        if i % 2:
            Detector.objects.filter(pk=detector.pk).update(active_training_run=run)

    trained_detector(0)
    baseline = count_queries()
    for i in range(1, 8):
        trained_detector(i)
    assert count_queries() == baseline
    assert {c["version"] for c in cards(client).values()} == {1}
