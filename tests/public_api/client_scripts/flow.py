"""Runs in the official client's own virtualenv (never imports the platform): the E2E flow of spec §8.

Usage: python flow.py PLAN.json. The plan names the files to upload and the detector's classes; the
script prints one JSON object (what it saw) on its last line for the test to check.
"""

import json
import sys
import tempfile
from pathlib import Path

from picterra.base_client import APIError

from picterra import APIClient, DetectorPlatformClient


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    client = APIClient()
    assert DetectorPlatformClient is APIClient
    seen = {"user": client.get_user_info()}

    folder_id = client.create_folder("Client flow")
    raster_id = client.upload_raster(
        plan["raster"], name="trees.tif", folder_id=folder_id, captured_at="2024-05-01T10:00:00Z"
    )
    seen["raster"] = client.get_raster(raster_id)

    # The client cannot add classes: a multiclass detector is made beforehand with our own API.
    detector_id = plan.get("detector_id") or client.create_detector(
        "Trees", "count", "polygon", 500, "resnet18", 256, 0.25
    )
    client.add_raster_to_detector(raster_id, detector_id)
    detector = client.get_detector(detector_id)
    classes = plan.get("classes") or [detector["classes"][0]["name"]]
    by_name = {c["name"]: c["id"] for c in detector["classes"]}
    for name in classes:
        class_id = by_name[name] if len(classes) > 1 else None
        client.set_annotations(detector_id, raster_id, "outline", _load(plan["outlines"][name]), class_id=class_id)
    client.set_annotations(detector_id, raster_id, "training_area", _load(plan["training_area"]))
    client.set_annotations(detector_id, raster_id, "validation_area", _load(plan["validation_area"]))
    client.set_annotations(detector_id, raster_id, "testing_area", _load(plan["testing_area"]))

    try:  # where to label next, before any training: a plain refusal
        client.run_dataset_recommendation(detector_id)
        seen["recommendation_untrained"] = None
    except APIError as exc:
        seen["recommendation_untrained"] = str(exc)
    training = client.train_detector(detector_id)
    seen["training"] = {"status": training["status"], "results": training["results"]}
    seen["detector_after_training"] = client.get_detector(detector_id)
    recommendation = client.run_dataset_recommendation(detector_id)
    seen["recommendation"] = {"status": recommendation["status"], "results": recommendation["results"]}

    client.set_raster_detection_areas_from_file(raster_id, plan["detection_area"])
    operation_id = client.run_detector(detector_id, raster_id)
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.geojson"
        client.download_result_to_feature_collection(operation_id, str(result))
        seen["result"] = json.loads(result.read_text())
        legacy = Path(tmp) / "legacy.geojson"
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client.download_result_to_file(operation_id, str(legacy))
        seen["legacy_result"] = json.loads(legacy.read_text())["type"]
        seen["operation_results"] = client.get_operation_results(operation_id)

        layers = list(client.list_raster_vector_layers(raster_id))
        seen["vector_layers"] = layers
        layer_file = Path(tmp) / "layer.geojson"
        client.download_vector_layer_to_file(layers[0]["id"], str(layer_file))
        features = json.loads(layer_file.read_text())["features"]
        seen["layer_feature_types"] = sorted({f["geometry"]["type"] for f in features})

    seen["detector_rasters"] = [r["id"] for r in client.list_detector_rasters(detector_id)]
    seen["folder_detectors"] = [d["id"] for d in client.list_folder_detectors(folder_id)]
    seen["rasters"] = [r["id"] for r in client.list_rasters(folder_id=folder_id)]
    seen["ids"] = {"raster": raster_id, "detector": detector_id, "folder": folder_id, "operation": operation_id}

    try:
        client.upload_raster(plan["not_a_raster"], name="notes.tif")
        seen["bad_upload"] = None
    except APIError as exc:
        seen["bad_upload"] = str(exc)
    print(json.dumps(seen))


def _load(path: str) -> dict:
    return json.loads(Path(path).read_text())


if __name__ == "__main__":
    main()
