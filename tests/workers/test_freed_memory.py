"""A worker process that keeps freed memory reuses a large array's pages for the next one; without the setting
glibc hands them back at once; a pool process starting (its ``worker_process_init`` handlers) takes
``WORKER_KEEP_FREED_MB``. Each case runs in a fresh interpreter: the setting is per process and lasting."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from workers.freed_memory import keep_freed_memory

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
import numpy as np

def rss_mb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) // 1024 for line in fh if line.startswith("VmRSS"))

if sys.argv[1] == "worker":  # as a pool process starts: every worker_process_init handler, with the settings
    import django
    django.setup()
    from celery.signals import worker_process_init
    import workers.tasks  # noqa: F401  (connects the handlers)
    worker_process_init.send(sender=None)
    took = None
else:
    from workers.freed_memory import keep_freed_memory
    took = keep_freed_memory(int(sys.argv[1]))
before = rss_mb()
rss = []
for _ in range(3):
    a = np.ones(96 * 2**20 // 8)  # 96 MB, above glibc's largest mmap threshold (32 MB), every page touched
    in_use = rss_mb()
    del a
    rss.append((in_use, rss_mb()))
print(json.dumps({"took": took, "before": before, "rss": rss}))
"""

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not sys.platform.startswith("linux"),
                           reason="the setting is glibc's; RSS is read from /proc")


def _probe(keep_bytes: int | str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(keep_bytes)], check=True, capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, **(env or {})}, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_freed_memory_is_kept_and_reused() -> None:
    found = _probe(512 * 2**20)
    assert found["took"] is True
    for in_use, after_free in found["rss"]:
        assert in_use >= found["before"] + 90
        assert after_free >= in_use - 8  # freed, but still the process's: the next array reuses it
    # the second and third arrays took the first one's pages: the process did not grow by another 96 MB
    assert found["rss"][2][0] <= found["rss"][0][0] + 8


@glibc
def test_without_the_setting_memory_goes_back_at_once() -> None:
    found = _probe(0)
    assert found["took"] is False
    for in_use, after_free in found["rss"]:
        assert in_use >= found["before"] + 90
        assert after_free <= found["before"] + 16


@glibc
@pytest.mark.parametrize(("keep_mb", "kept"), [("256", True), ("0", False)])
def test_a_starting_pool_process_keeps_what_the_setting_says(keep_mb, kept, tmp_path) -> None:
    found = _probe("worker", {"WORKER_KEEP_FREED_MB": keep_mb, "DJANGO_SETTINGS_MODULE": "picterra.settings",
                              "VAR_DIR": str(tmp_path)})
    in_use, after_free = found["rss"][0]
    assert in_use >= found["before"] + 90
    if kept:
        assert after_free >= in_use - 8
    else:
        assert after_free <= found["before"] + 16


def test_nothing_to_keep_changes_nothing() -> None:
    assert keep_freed_memory(0) is False
    assert keep_freed_memory(-1) is False
