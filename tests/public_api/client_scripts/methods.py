"""Runs in the official client's virtualenv: every client method outside the training flow.

Usage: python methods.py PLAN.json; prints one JSON object (what it saw) on its last line.
"""

import json
import sys
import tempfile
from pathlib import Path

from picterra import APIClient, nongeo_result_to_pixel
from picterra.base_client import APIError


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    client = APIClient()
    seen = {}
    folder_id = client.create_folder("Methods")
    rasters = [
        client.upload_raster(path, name=f"r{i}.tif", folder_id=folder_id, captured_at=f"202{i}-01-01T00:00:00Z")
        for i, path in enumerate(plan["rasters"])
    ]

    # Pagination: the server's page size is 2 in this test.
    page = client.list_rasters(folder_id=folder_id)
    seen["page1"] = [r["id"] for r in page]
    page2 = page.next()
    seen["page2"] = [r["id"] for r in page2]
    seen["page2_previous"] = [r["id"] for r in page2.previous()]
    seen["page2_next"] = page2.next()
    seen["page2_str"] = str(page2)
    seen["search"] = [r["name"] for r in client.list_rasters(search_string="r1")]
    seen["captured_after"] = len(client.list_rasters(folder_id=folder_id, captured_after="2000-01-01T00:00:00Z"))

    raster_id = rasters[0]
    client.edit_raster(
        raster_id,
        name="renamed",
        identity_key="plot-7",
        cloud_coverage=5,
        user_tag="survey",
        multispectral_band_specification={
            "ranges": [[0, 200], [0, 200], [0, 200]],
            "display_bands": [{"type": "multiband", "name": "default", "bands": [2, 1, 0]}],
        },
    )
    seen["edited"] = client.get_raster(raster_id)
    seen["tagged"] = [r["id"] for r in client.list_rasters(user_tag="survey", max_cloud_coverage=10)]
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "download.tif"
        client.download_raster_to_file(raster_id, str(target))
        seen["download_magic"] = target.read_bytes()[:4].hex()

        client.set_raster_detection_areas_from_file(raster_id, plan["detection_area"])
        client.remove_raster_detection_areas(raster_id)

        seen["marker"] = client.create_marker(raster_id, None, plan["lng"], plan["lat"], "look here")
        seen["markers"] = [m["text"] for m in client.list_raster_markers(raster_id)]

        layer_id = client.upload_vector_layer(raster_id, plan["vector_layer"], name="fields", color="#aabbcc")
        client.edit_vector_layer(layer_id, name="fields 2024", color="#112233")
        seen["layers"] = list(client.list_raster_vector_layers(raster_id, search="2024"))
        seen["has_layers"] = [r["id"] for r in client.list_rasters(has_vector_layers=True)]
        layer_file = Path(tmp) / "layer.geojson"
        client.download_vector_layer_to_file(layer_id, str(layer_file))
        seen["layer_download"] = json.loads(layer_file.read_text())
        client.delete_vector_layer(layer_id)
        seen["layers_after_delete"] = len(client.list_raster_vector_layers(raster_id))

    detector_id = client.create_detector("Cars", training_steps=1000, tile_size=512)
    client.edit_detector(detector_id, name="Cars v2", backbone="resnet50")
    seen["detector"] = client.get_detector(detector_id)
    seen["detectors"] = [d["name"] for d in client.list_detectors(search_string="cars")]
    client.add_raster_to_detector(rasters[1], detector_id)
    seen["marker_on_detector"] = client.create_marker(rasters[1], detector_id, plan["lng"], plan["lat"], "d")
    seen["grants"] = client.get_authorization_grants("detector", detector_id)
    seen["set_grants"] = client.set_authorization_grants("folder", folder_id, seen["grants"])

    errors = {}
    for name, call in {
        "edit_detector_bad": lambda: client.edit_detector(detector_id, training_steps=10),
        "train_without_areas": lambda: client.train_detector(detector_id),
        "run_untrained": lambda: client.run_detector(detector_id, rasters[1]),
        "unknown_raster": lambda: client.get_raster("00000000-0000-0000-0000-000000000000"),
        "bad_annotations": lambda: client.set_annotations(detector_id, rasters[1], "outline", {"type": "Point"}),
        "remote_import": lambda: client.import_raster_from_remote_source("x", folder_id, "src", plan["detection_area"]),
    }.items():
        try:
            call()
            errors[name] = None
        except APIError as exc:
            errors[name] = str(exc)
    seen["errors"] = errors

    client.delete_detector(detector_id)
    client.delete_raster(rasters[2])
    seen["after_delete"] = {
        "detectors": len(client.list_detectors()),
        "rasters": client.sess.get(client._full_url("rasters/", {"folder": folder_id})).json()["count"],
    }
    # A PNG without georeferencing sits at (0, 0) in EPSG:3857 with 0.1 unit pixels: the client's helper
    # turns the raster's footprint back into pixel corners.
    png_id = client.upload_raster(plan["png"], name="photo.png")
    footprint = client.get_raster(png_id)["footprint"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "footprint.geojson"
        path.write_text(json.dumps({"type": "Polygon", "coordinates": footprint["coordinates"]}))
        seen["nongeo_pixels"] = nongeo_result_to_pixel(str(path))
    seen["png_folder"] = client.get_raster(png_id)["folder_id"]
    seen["rasters"] = rasters
    seen["folder"] = folder_id
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
