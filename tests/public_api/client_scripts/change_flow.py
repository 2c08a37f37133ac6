"""Runs in the official client's own virtualenv (never imports the platform): a change detector end to end.

Usage: python change_flow.py PLAN.json. The plan names the two dates, a raster elsewhere, the change detector
(created beforehand: the client has no way to choose a detector's kind) and the outlines and areas; the script
prints one JSON object (what it saw) on its last line for the test to check.
"""

import json
import sys
import tempfile
from pathlib import Path

from picterra.base_client import APIError

from picterra import APIClient


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    client = APIClient()
    seen = {}
    before = client.upload_raster(plan["before"], name="before.tif")
    after = client.upload_raster(plan["after"], name="after.tif")
    elsewhere = client.upload_raster(plan["elsewhere"], name="elsewhere.tif")
    detector_id = plan["detector_id"]
    seen["detector"] = client.get_detector(detector_id)

    # The training raster with its second date: the client has no method for it, so its own session posts
    # what add_raster_to_detector posts, with the second raster.
    response = client.sess.post(
        client._full_url(f"detectors/{detector_id}/training_rasters/"),
        json={"raster_id": before, "secondary_raster_id": elsewhere},
    )
    seen["bad_pair"] = {"status": response.status_code, "body": response.json()}
    response = client.sess.post(
        client._full_url(f"detectors/{detector_id}/training_rasters/"),
        json={"raster_id": before, "secondary_raster_id": after},
    )
    seen["pair"] = {"status": response.status_code, "body": response.json()}

    client.set_annotations(detector_id, before, "outline", _load(plan["outlines"]))
    client.set_annotations(detector_id, before, "training_area", _load(plan["training_area"]))
    client.set_annotations(detector_id, before, "validation_area", _load(plan["validation_area"]))
    training = client.train_detector(detector_id)
    seen["training"] = {"status": training["status"], "results": training["results"]}

    seen["errors"] = {}
    for name, second in (("no_second", None), ("elsewhere", elsewhere)):
        try:
            client.run_detector(detector_id, before, secondary_raster_id=second)
            seen["errors"][name] = None
        except APIError as exc:
            seen["errors"][name] = str(exc)

    operation_id = client.run_detector(detector_id, before, secondary_raster_id=after)
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.geojson"
        client.download_result_to_feature_collection(operation_id, str(result))
        seen["result"] = json.loads(result.read_text())
    seen["ids"] = {"before": before, "after": after, "elsewhere": elsewhere, "operation": operation_id}
    print(json.dumps(seen))


def _load(path: str) -> dict:
    return json.loads(Path(path).read_text())


if __name__ == "__main__":
    main()
