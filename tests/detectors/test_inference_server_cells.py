"""A detection cell with ``DETECT_INFERENCE=server`` (the GPU worker's design, run on the CPU): the same rows as
in-process, and a server that is gone fails the attempt within the timeout, which the cell's policy retries."""

from __future__ import annotations

import pytest
import torch
from django.urls import reverse

from detectors.models import DetectionCell
from workers import pipelines
from workers.ml.inference_server import InferenceUnavailable, ServerSupervisor


def _rows(cell_id: str) -> list[tuple[str, str, float]]:
    found = pipelines.detect_cell_objects(cell_id)
    return sorted((str(r.detector_class_id), r.geometry, round(r.score, 4)) for r in found.rows)


@pytest.mark.django_db
def test_a_cell_detected_through_the_server_finds_what_it_finds_in_process(trained_version, settings, tmp_path):
    client, detector_data, image_id, _ = trained_version
    settings.DETECTION_CELL_SIZE = 256  # 4 cells over the 512 px image
    response = client.post(reverse("v1:detector-detect", args=[detector_data["id"]]), {"images": [image_id]},
                           format="json")
    assert response.status_code == 201, response.json()
    cell = DetectionCell.objects.filter(run_id=response.json()["id"]).order_by("key").first()
    socket = str(tmp_path / "inference.sock")
    supervisor = ServerSupervisor(socket, "cpu", threads=torch.get_num_threads())  # the same float sums as here
    supervisor.start(wait_ready_s=None)  # it imports while the cell is detected in-process
    try:
        local = _rows(str(cell.pk))
        assert local

        settings.DETECT_INFERENCE = "server"
        settings.INFERENCE_SERVER_SOCKET = socket
        settings.INFERENCE_SERVER_TIMEOUT_S = 60
        pipelines._models.clear()  # loaded again on the CPU, as a pool process beside a server does
        pipelines.detection_tiles(cell.run.training_run).client.connect_timeout_s = 60
        assert _rows(str(cell.pk)) == local
        supervisor.stop()
        client_of_cell = pipelines._inference_clients[settings.INFERENCE_SERVER_SOCKET]
        client_of_cell.connect_timeout_s = 0.5
        with pytest.raises(InferenceUnavailable):  # run_row_job turns it into the cell's retry
            pipelines.detect_cell_objects(str(cell.pk))
    finally:
        supervisor.stop()
        for c in pipelines._inference_clients.values():
            c.close()
        pipelines._inference_clients.clear()
        pipelines._models.clear()
