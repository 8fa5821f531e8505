"""Process memory tuning for services that move multi-megabyte buffers per request."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter

log = logging.getLogger("atlas.memory")


def raise_mmap_threshold(bytes_: int = 64 * 1024 * 1024) -> bool:
    """Let glibc serve allocations below ``bytes_`` from the heap instead of fresh mmaps.

    A 100-entity x 5,000-feature read allocates several 2 MB buffers per request; above
    glibc's default threshold each is a new mmap whose pages fault in one by one, which costs
    system time on every request. No-op (returns False) off glibc.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(bytes_)))
    except (OSError, AttributeError):
        log.debug("mallopt unavailable; keeping the allocator defaults")
        return False
