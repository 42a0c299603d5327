"""glibc allocator settings for processes that build and drop large messages (images, clouds) at camera rate.

By default glibc serves every block above a moving threshold (128 kB at start) with a fresh mmap and hands
freed memory at the top of the heap back to the OS; a process that alternates message sizes (a 0.9 MB colour
image, a 1.2 MB depth image) keeps paying for that in page faults on every message (README, "Reliability and
timing", has the numbers; bench/bench_conversions.py measures a conversion with and without).
Nothing here is required for correctness: on a libc without mallopt/malloc_trim the calls do nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>

MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024   # glibc's ceiling for this setting on 64-bit
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024   # free memory a heap may keep before it is returned to the OS


def keep_large_buffers(mmap_threshold: int = MMAP_THRESHOLD_BYTES, trim_threshold: int = TRIM_THRESHOLD_BYTES) -> bool:
    """Serve message-sized blocks from the heap and keep freed ones for reuse. Returns whether glibc took it."""
    if mmap_threshold <= 0 or trim_threshold <= 0:
        raise ValueError(f"thresholds must be positive, got mmap={mmap_threshold} trim={trim_threshold}")
    mallopt = getattr(_LIBC, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def release_free_memory() -> None:
    """Hand freed heap memory back to the OS now. The simulator rebuilds the MuJoCo model and renderer on every
    scene reset; glibc keeps the freed blocks in that thread's arena, fragmented, and the node grew with every
    reset in the soak benchmark until this was called (README, "Benchmarks")."""
    trim = getattr(_LIBC, "malloc_trim", None)  # glibc only
    if trim is not None:
        trim(0)
