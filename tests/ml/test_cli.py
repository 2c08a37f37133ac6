import json

from shapely.geometry import box, mapping

from workers.ml.__main__ import main
from workers.ml.raster_io import image_crs_to_lonlat


def _fc(geoms, crs, cls="disc"):
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": mapping(image_crs_to_lonlat(g, crs)), "properties": {"class": cls}}
        for g in geoms]}


def test_cli_score_on_files(make_scene_tif, tmp_path, capsys):
    path, scene = make_scene_tif(size=64)
    crs = scene.crs
    truth = [scene.to_crs(box(4, 4, 14, 14)), scene.to_crs(box(30, 30, 40, 40))]
    (tmp_path / "truth.geojson").write_text(json.dumps(_fc(truth, crs)))
    (tmp_path / "det.geojson").write_text(json.dumps(_fc(truth[:1], crs)))
    (tmp_path / "areas.geojson").write_text(json.dumps(_fc([scene.to_crs(box(0, 0, 64, 64))], crs)))
    rc = main(["score", "--image", str(path), "--detections", str(tmp_path / "det.geojson"),
               "--truth", str(tmp_path / "truth.geojson"), "--areas", str(tmp_path / "areas.geojson"),
               "--classes", "disc"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)["overall"]
    assert out["precision"] == 1.0 and out["recall"] == 0.5


def test_cli_synth_writes_inputs(tmp_path, capsys):
    rc = main(["synth", "--kind", "boats", "--size", "256", "--gsd", "0.3", "--out", str(tmp_path / "d")])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["classes"] == ["boat"]
    for name in ("image.tif", "training_areas.geojson", "accuracy_areas.geojson", "outlines.geojson"):
        assert (tmp_path / "d" / name).exists()
