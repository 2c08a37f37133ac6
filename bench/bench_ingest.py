"""Ingest of a large generated image: our pipeline against `rio cogeo create` on the same file, same run.

Rows: `ingest_vs_rio_cogeo` (wall-time ratio, ours / rio cogeo) and `ingest_peak_rss_mb` (peak RSS of
the process running our ingest). Set BENCH_INGEST_SIZE to change the side in pixels (default 20000).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import BenchRow, emit
from bench.sources import write_striped_geotiff

SIZE = int(os.environ.get("BENCH_INGEST_SIZE", "20000"))

OUR_INGEST = """
import sys, tempfile
from pathlib import Path
from imagery.blobstore import LocalBlobStore
from imagery.cog import convert_to_cog, display_rescale, inspect_raster
src, store_root = sys.argv[1], sys.argv[2]
with tempfile.TemporaryDirectory(dir=store_root) as tmp:
    info = inspect_raster(src)
    cog = Path(tmp) / "cog.tif"
    convert_to_cog(src, cog, info, Path(tmp))
    display_rescale(str(cog), info.display_bands)
    info.footprint_lonlat()
    LocalBlobStore(Path(store_root) / "blobs").put_file("images/bench/cog.tif", cog)
"""


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak_kb, before) / 1024


def main() -> None:
    rio = str(Path(sys.executable).parent / "rio")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        src = Path(tmp) / "source.tif"
        start = time.perf_counter()
        write_striped_geotiff(src, SIZE, gsd=0.25)
        print(
            f"wrote {SIZE}x{SIZE}x3 source ({src.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - start:.0f} s"
        )
        # Ours first, in a fresh child, so its peak RSS is its own (RUSAGE_CHILDREN keeps the maximum).
        ours, ours_rss = timed([sys.executable, "-c", OUR_INGEST, str(src), tmp])
        reference, _ = timed(
            [
                rio,
                "cogeo",
                "create",
                str(src),
                str(Path(tmp) / "rio.tif"),
                "--cog-profile",
                "deflate",
                "--blocksize",
                "512",
                "--overview-resampling",
                "average",
                "--quiet",
            ]
        )
    conditions = f"{SIZE}x{SIZE}x3 uint8 striped GeoTIFF, local store, {os.cpu_count()} cores"
    print(f"ours {ours:.1f} s, rio cogeo create {reference:.1f} s")
    emit(
        [
            BenchRow(
                "ingest_vs_rio_cogeo",
                ours / reference,
                "ratio",
                "<= 1.1",
                f"{conditions}; ours {ours:.1f} s (inspect, COG, validate, rescale, store) vs {reference:.1f} s",
            ),
            BenchRow("ingest_peak_rss_mb", ours_rss, "MB", "< 2000 (at 50000x50000)", conditions),
        ]
    )


if __name__ == "__main__":
    main()
