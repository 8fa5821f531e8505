"""Process memory tuning: glibc's allocator settings for long-running services."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameters
_M_ARENA_MAX = -8

log = logging.getLogger("atlas.memory")


@functools.cache  # find_library runs ldconfig: once per process, not per periodic trim
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 - glibc only: musl and others lack it
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        log.debug("not glibc; keeping the allocator defaults")
        return None
    return libc


def raise_mmap_threshold(bytes_: int = 64 * 1024 * 1024) -> bool:
    """Let glibc serve allocations below ``bytes_`` from the heap instead of fresh mmaps.

    A 100-entity x 5,000-feature read allocates several 2 MB buffers per request; above
    glibc's default threshold each is a new mmap whose pages fault in one by one, which costs
    system time on every request. No-op (returns False) off glibc.
    """
    libc = _libc()
    return libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, int(bytes_)))


def limit_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas at ``count``.

    glibc gives each thread that contends for the heap an arena of its own, up to 8 per core;
    a service's executor and gRPC threads each keep one, and freed memory fragments across
    them, so RSS creeps up under steady traffic with no Python object leaking. Arenas made
    before the call stay. No-op (returns False) off glibc.
    """
    libc = _libc()
    return libc is not None and bool(libc.mallopt(_M_ARENA_MAX, int(count)))


def trim() -> bool:
    """Hand free heap pages of every arena back to the kernel (glibc ``malloc_trim(0)``);
    True when some memory was released."""
    libc = _libc()
    return libc is not None and bool(libc.malloc_trim(0))
