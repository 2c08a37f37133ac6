"""Ingest of a large generated image: our pipeline against `rio cogeo create` on the same file, same run, both
writing ZSTD.

Rows: `ingest_vs_rio_cogeo` (wall-time ratio, ours / rio cogeo) and `ingest_peak_rss_mb` (peak RSS of
the process running our ingest). Set BENCH_INGEST_SIZE to change the side in pixels (default 20000).
"""

from __future__ import annotations

import os
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
    LocalBlobStore(Path(store_root) / "blobs").put_file("images/bench/cog.tif", cog, move=True)
"""


PASSES = 2


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process (wait4 gives that child's own rusage)."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, cmd)
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    rio = str(Path(sys.executable).parent / "rio")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        src = Path(tmp) / "source.tif"
        start = time.perf_counter()
        write_striped_geotiff(src, SIZE, gsd=0.25)
        os.sync()  # neither side should pay for writing back the freshly generated source
        print(
            f"wrote {SIZE}x{SIZE}x3 source ({src.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - start:.0f} s"
        )
        reference_cmd = [
            rio, "cogeo", "create", str(src), str(Path(tmp) / "rio.tif"), "--cog-profile", "zstd",
            "--blocksize", "512", "--overview-resampling", "average", "--quiet",
        ]  # fmt: skip
        ours_s, reference_s, peaks = [], [], []
        for _ in range(PASSES):  # alternating passes, so that neither side gets a warmer or quieter machine
            wall, peak = timed([sys.executable, "-c", OUR_INGEST, str(src), tmp])
            ours_s.append(wall)
            peaks.append(peak)
            reference_s.append(timed(reference_cmd)[0])
            os.sync()
            print(f"pass: ours {wall:.1f} s, rio cogeo create {reference_s[-1]:.1f} s", flush=True)
    ours, reference = min(ours_s), min(reference_s)
    conditions = (
        f"{SIZE}x{SIZE}x3 uint8 striped GeoTIFF, local store, {os.cpu_count()} cores, best of {PASSES} alternating"
    )
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
            BenchRow("ingest_peak_rss_mb", max(peaks), "MB", "< 2000 (at 50000x50000)", conditions),
        ]
    )


if __name__ == "__main__":
    main()
