"""Large temporary buffers go back to the operating system when freed (glibc only; elsewhere a no-op).

glibc serves a large ``malloc`` from an ``mmap`` of its own only below a *dynamic* threshold that
rises (up to 32 MB) each time such a block is freed; after that, large buffers come from the
per-thread heaps and stay resident when freed. Scoring a batch with a learned scorer allocates
tens of MB of activations per call in whichever thread-pool thread runs it, so the server's
resident memory would keep the peak of every thread. Fixing the threshold at 1 MB keeps every
buffer of 1 MB or more a mapping of its own, unmapped on free. Small allocations (the hot path of
single recommendations) are unaffected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("distillrec.service")

M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h
LARGE_BUFFER_BYTES = 1 << 20


def return_large_buffers() -> bool:
    """Sets glibc's mmap threshold to 1 MB; False when the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):
        log.debug("not glibc: large buffers are managed by the C library's defaults")
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES))
