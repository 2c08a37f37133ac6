"""Is the map still fluid with 100,000 detected objects? Measured in the real web app in headless Chromium.

Builds a generated image (ingested to a COG) with a finished detection of OBJECTS objects spread over it,
serves the platform with gunicorn, opens the detector's workspace in Debian's Chromium (Playwright, no
browser download) and measures:
- how long the first view takes until every image and object tile is drawn;
- frame times while the map is zoomed in and out and dragged around (requestAnimationFrame intervals on
  the page: what a user feels as stutter), and how many frames took longer than 50 ms;
- the latency of the object vector tiles the map fetched, and the server's side of them alone (the tile
  function over the objects at z13-18, one tile at a time: no browser, HTTP or queueing in the figure).
Chromium runs with software rendering (no GPU here), so these are a pessimistic reading for a laptop.

Environment: BENCH_MAP_OBJECTS (default 100000), BENCH_DATABASE_URL as in bench_detect.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_tiles import free_port, gunicorn_command, start, stop
from bench.detect_platform import configure, drop_bench_state
from bench.report import BenchRow, emit

REPO = Path(__file__).resolve().parent.parent
OBJECTS = int(os.environ.get("BENCH_MAP_OBJECTS", "100000"))
IMAGE_SIZE = 4096
CHROMIUM = "/usr/bin/chromium"

RECORD_FRAMES = """() => {
  window.__frames = [];
  let last = performance.now();
  window.__recording = true;
  const tick = (now) => {
    window.__frames.push(now - last);
    last = now;
    if (window.__recording) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}"""

SETTLED = """() => { const m = document.querySelector('[data-testid=map]');
  return m && m.dataset.tilesPending === '0' && +m.dataset.detectionTiles > 0; }"""


def setup_platform(tmp: Path):
    """A user, an ingested image and a succeeded detection with OBJECTS objects; returns (detector, run)."""
    import django

    django.setup()
    from django.contrib.gis.geos import GEOSGeometry
    from django.core.management import call_command
    from pyproj import Transformer
    from shapely import points, to_wkb, transform

    from bench.accounts import create_bench_account
    from detectors.models import (
        DetectedObject,
        DetectionRun,
        Detector,
        DetectorClass,
        DetectorImage,
        RunStatus,
        TrainingRun,
    )
    from imagery.ingest import ingest_image
    from imagery.models import Image
    from imagery.sample import write_sample_geotiff
    from imagery.storage import get_blob_store, image_original_key

    user, organization, project = create_bench_account()
    call_command("collectstatic", interactive=False, verbosity=0)  # as scripts/run.sh: gunicorn serves the app
    sample = write_sample_geotiff(tmp / "orchard.tif", size=IMAGE_SIZE, trees=0, seed=1, tiled=True)
    image = Image.objects.create(project=project, name="orchard.tif", status=Image.Status.UPLOADED)
    image.original_key = image_original_key(image.pk, sample.path.name)
    get_blob_store().put_file(image.original_key, sample.path)
    image.save(update_fields=["original_key"])
    assert ingest_image(str(image.pk)) == Image.Status.READY
    image.refresh_from_db()

    detector = Detector.objects.create(organization=organization, project=project, name="Trees", created_by=user)
    classes = [
        DetectorClass.objects.create(detector=detector, name=name, color=color, position=i)
        for i, (name, color) in enumerate((("tree", "#2F9E44"), ("shrub", "#AE3EC9")))
    ]
    DetectorImage.objects.create(detector=detector, image=image)
    trained = TrainingRun.objects.create(detector=detector, version=1, status=RunStatus.SUCCEEDED, metrics={})
    run = DetectionRun.objects.create(
        detector=detector, training_run=trained, status=RunStatus.SUCCEEDED, cells_total=4, cells_done=4
    )
    run.images.add(image)

    # Crowns of 1 to 3 m on a jittered grid over the whole image, as a dense orchard detection would give.
    rng = np.random.default_rng(0)
    side = int(np.ceil(np.sqrt(OBJECTS)))
    extent = IMAGE_SIZE * sample.transform.a
    step = extent / side
    gx, gy = np.meshgrid(np.arange(side), np.arange(side))
    x = sample.transform.c + (gx.ravel()[:OBJECTS] + 0.5) * step + rng.uniform(-0.2, 0.2, OBJECTS) * step
    y = sample.transform.f - (gy.ravel()[:OBJECTS] + 0.5) * step + rng.uniform(-0.2, 0.2, OBJECTS) * step
    radius = rng.uniform(0.5, 1.5, OBJECTS)
    crowns = [p.buffer(r, quad_segs=3) for p, r in zip(points(np.c_[x, y]), radius, strict=True)]
    to_lonlat = Transformer.from_crs(sample.crs, "EPSG:4326", always_xy=True)
    crowns = transform(np.array(crowns, dtype=object), lambda xy: np.c_[to_lonlat.transform(xy[:, 0], xy[:, 1])])
    blobs = to_wkb(crowns)
    started = time.perf_counter()
    batch = []
    for i, (blob, r) in enumerate(zip(blobs, radius, strict=True)):
        batch.append(
            DetectedObject(
                detection_run=run,
                image=image,
                detector_class=classes[i % 7 == 0],
                cell=f"{i % 4}",
                geometry=GEOSGeometry(memoryview(blob), srid=4326),
                score=0.9,
                area_m2=float(np.pi * r * r),
            )
        )
        if len(batch) == 5000:
            DetectedObject.objects.bulk_create(batch)
            batch = []
    DetectedObject.objects.bulk_create(batch)
    DetectionRun.objects.filter(pk=run.pk).update(objects_count=OBJECTS)
    print(f"stored {OBJECTS} objects in {time.perf_counter() - started:.0f} s", flush=True)
    return detector, run


def measure_server(run, zooms: range = range(13, 19), per_zoom: int = 40) -> dict[str, float]:
    """The object tiles' server side alone, without the browser, HTTP or queueing: ``detection_tile`` for the
    tiles over the objects at the zooms the map shows them (at most ``per_zoom`` per zoom), one at a time."""
    import morecantile
    from django.contrib.gis.db.models import Extent

    from detectors.models import DetectedObject
    from detectors.vector_tiles import detection_tile

    west, south, east, north = DetectedObject.objects.filter(detection_run=run).aggregate(e=Extent("geometry"))["e"]
    grid = morecantile.tms.get("WebMercatorQuad")
    times = []
    for z in zooms:
        for tile in list(grid.tiles(west, south, east, north, [z]))[:per_zoom]:
            started = time.perf_counter()
            detection_tile(run, z, tile.x, tile.y)
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p95 = times[int(0.95 * (len(times) - 1))]
    return {"sql_tiles": len(times), "sql_p95_ms": p95, "sql_median_ms": statistics.median(times)}


def measure(url: str, detector_id: str, run_id: str) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM_FLAGS, VIEWPORT

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"{url}/accounts/login/")
        page.fill("#id_username", "bench")
        page.fill("#id_password", "bench-password")
        page.click("button[type=submit]")
        page.wait_for_url("**/app/")
        started = time.perf_counter()
        page.goto(f"{url}/app/detectors/{detector_id}")
        try:
            page.wait_for_function(
                f"() => document.querySelector('[data-testid=map]')?.dataset.detection === '{run_id}'",
                timeout=120_000,
            )
            page.wait_for_function(SETTLED, timeout=120_000)
        except Exception:
            page.screenshot(path="/tmp/bench-map-failed.png")
            print(page.evaluate("() => ({...document.querySelector('[data-testid=map]')?.dataset})"), file=sys.stderr)
            raise
        first_view = time.perf_counter() - started

        box = page.locator("[data-testid=map]").bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.evaluate("() => performance.clearResourceTimings()")
        page.evaluate(RECORD_FRAMES)
        t0 = time.perf_counter()
        # Zoom in step by step (wheel, as a user does), drag around, zoom back out.
        for _ in range(2):
            for _ in range(6):
                page.mouse.move(cx + 80, cy + 40)
                page.mouse.wheel(0, -240)
                page.wait_for_timeout(350)
            for dx, dy in ((300, 0), (0, 250), (-300, 0), (0, -250)):
                page.mouse.move(cx, cy)
                page.mouse.down()
                for i in range(1, 16):
                    page.mouse.move(cx + dx * i / 15, cy + dy * i / 15)
                    page.wait_for_timeout(16)
                page.mouse.up()
                page.wait_for_timeout(200)
            for _ in range(6):
                page.mouse.wheel(0, 240)
                page.wait_for_timeout(350)
        page.wait_for_function(SETTLED, timeout=120_000)
        interaction_s = time.perf_counter() - t0
        frames = page.evaluate("() => { window.__recording = false; return window.__frames.slice(1); }")
        tiles = page.evaluate(
            "() => performance.getEntriesByType('resource').filter(e => e.name.includes('.pbf')).map(e => e.duration)"
        )
        heap = page.evaluate("() => performance.memory ? performance.memory.usedJSHeapSize : 0")
        browser.close()
    frames.sort()
    tiles.sort()
    return {
        "first_view_s": first_view,
        "frame_median_ms": statistics.median(frames),
        "frame_p95_ms": frames[int(0.95 * (len(frames) - 1))],
        "long_frames_share": sum(f > 50 for f in frames) / len(frames),
        "frames": len(frames),
        "interaction_s": interaction_s,
        "tiles": len(tiles),
        "tile_p95_ms": tiles[int(0.95 * (len(tiles) - 1))] if tiles else float("nan"),
        "tile_median_ms": statistics.median(tiles) if tiles else float("nan"),
        "heap_mb": heap / 1e6,
    }


def main() -> int:
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: run scripts/setup.sh", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-map-") as tmp_name:
        tmp = Path(tmp_name)
        env = configure(tmp, 1, name="map")
        server = tile_server = None
        try:
            detector, run = setup_platform(tmp)
            served = measure_server(run)
            port, tile_port = free_port(), free_port()
            url, tile_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{tile_port}"
            # As deployed (Procfile: web and tiles): the image's tiles are rendered by their own process, so the
            # object tiles measured here never wait behind them in the API's workers.
            server_env = {**os.environ, **env, "PUBLIC_BASE_URL": url, "TILE_BASE_URL": tile_url}
            tile_cmd = gunicorn_command("imagery.tile_wsgi", tile_port, workers=2, threads=4)
            tile_server = start(tile_cmd, server_env, tmp / "tiles.log", tile_port, "/healthz")
            cmd = gunicorn_command("picterra.wsgi", port, workers=2, threads=4)
            server = start(cmd, server_env, tmp / "gunicorn.log", port, "/healthz")
            try:
                m = measure(url, str(detector.pk), str(run.pk))
            except Exception:
                print((tmp / "gunicorn.log").read_text()[-3000:], file=sys.stderr)
                raise
        finally:
            for process in (server, tile_server):
                if process is not None:
                    stop(process)
            drop_bench_state()
    cond = (
        f"{OBJECTS:,} objects on a {IMAGE_SIZE}x{IMAGE_SIZE} image, workspace at 1440x900 in headless Chromium "
        f"(software rendering), gunicorn 2x4 for the API and 2x4 for image tiles; {m['frames']} frames over "
        f"{m['interaction_s']:.0f} s of wheel zooms and drags, {m['tiles']} object tiles "
        f"(median {m['tile_median_ms']:.0f} ms), "
        f"{m['long_frames_share']:.1%} frames > 50 ms, JS heap {m['heap_mb']:.0f} MB"
    )
    emit(
        [
            BenchRow("map_first_view_s_100k", m["first_view_s"], "s", "<= 5", cond),
            BenchRow("map_frame_median_ms_100k", m["frame_median_ms"], "ms", "<= 33 (30 fps)", cond),
            BenchRow("map_frame_p95_ms_100k", m["frame_p95_ms"], "ms", "<= 100", cond),
            BenchRow("map_object_tile_p95_ms", m["tile_p95_ms"], "ms", "<= 300", cond),
            BenchRow(
                "map_object_tile_server_p95_ms",
                served["sql_p95_ms"],
                "ms",
                "<= 150",
                f"{OBJECTS:,} objects; detection_tile alone (no HTTP, no browser), {served['sql_tiles']} tiles over "
                f"them at z13-18, one at a time (median {served['sql_median_ms']:.0f} ms)",
            ),
        ]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
