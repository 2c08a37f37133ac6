"""A real Celery worker process, over real Redis, runs a job end to end."""

from __future__ import annotations

import pytest
from django.urls import reverse

from imagery.models import Image
from imagery.sample import write_sample_geotiff
from tests.conftest import wait_for


@pytest.mark.django_db(transaction=True)
def test_uploaded_image_is_ingested_by_a_separate_worker_process(
    celery_worker_process, personas, project, client_for, tmp_path
):
    sample = write_sample_geotiff(tmp_path / "ortho.tif", size=300, trees=4)
    with sample.path.open("rb") as fh:
        response = client_for(personas.owner).post(
            reverse("v1:image-list"), {"project": str(project.pk), "file": fh}, format="multipart"
        )
    assert response.status_code == 201
    image_id = response.json()["id"]

    def finished():
        image = Image.objects.get(pk=image_id)
        return image if image.status in Image.TERMINAL_STATUSES else None

    image = wait_for(finished, timeout=90)
    assert image.status == Image.Status.READY, image.error
    assert (image.width, image.height) == (300, 300)
    assert celery_worker_process.poll() is None
