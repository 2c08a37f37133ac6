"""Worker processes keep the memory they free, so the next detection cell reuses it instead of faulting in
fresh pages.

A cell's large arrays (a window's probabilities, ~50-125 MB; labels, distance transforms, tracing indexes)
are above glibc's largest mmap threshold (32 MB), so each one is a fresh ``mmap`` the kernel fills with zeroed
pages on first touch and unmaps when freed: every cell pays those page faults again, a third of the time of
blending a window's tiles (docs/experiments.md, "freed memory kept"). With mmap off and a high trim
threshold glibc serves them from its heap and keeps what is freed there, up to ``keep_bytes`` of free space
at its top; a process then holds about its largest cell's working set between tasks.

glibc only: elsewhere (musl, macOS) nothing changes and the call says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def keep_freed_memory(keep_bytes: int) -> bool:
    """Serve large allocations from the heap and keep up to ``keep_bytes`` of freed memory at its top for the
    next ones; True when glibc took both settings. Call once, early, in each process it should apply to (the
    settings are per process, and apply to allocations made after the call)."""
    if keep_bytes <= 0:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    keep = min(int(keep_bytes), 2**31 - 1)  # mallopt takes an int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, keep))
