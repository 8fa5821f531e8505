"""glibc allocator settings every service applies at start (atlas_core.memory)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from atlas_core.config import ServerSettings

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

# Six threads allocate while all are alive, then glibc prints one "Arena N:" block per arena.
_ARENAS = textwrap.dedent(
    """
    import ctypes, sys, threading
    from atlas_core import memory
    if sys.argv[1] != "none":
        assert memory.limit_arenas(int(sys.argv[1]))
    barrier = threading.Barrier(7)
    def work():
        kept = [bytearray(4096) for _ in range(200)]  # past pymalloc: glibc's malloc
        barrier.wait()
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    barrier.wait()
    ctypes.CDLL(None).malloc_stats()
    barrier.wait()
    """
)


def _arenas(cap: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _ARENAS, cap], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return len(re.findall(r"^Arena \d+:", done.stderr, flags=re.MULTILINE))


def test_the_arena_cap_bounds_the_arenas_threads_make():
    assert _arenas("none") >= 4  # glibc's default: about one per thread
    assert _arenas("2") <= 2


_TRIM = textwrap.dedent(
    """
    from pathlib import Path
    from atlas_core import memory
    def anon_mb():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    # 100 kB blocks sit on the heap (below the mmap threshold); a small block kept after
    # each stops them coalescing into the top of the heap, which free() alone would release
    blocks, pins = [], []
    for _ in range(400):
        blocks.append(bytearray(100_000))
        pins.append(bytearray(2_000))
    del blocks
    before = anon_mb()
    released = memory.trim()
    print(released, before - anon_mb())
    """
)


def test_trim_returns_freed_heap_pages_to_the_kernel():
    done = subprocess.run([sys.executable, "-c", _TRIM], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    released, dropped_mb = done.stdout.split()
    assert released == "True"
    assert float(dropped_mb) > 20  # of the 40 MB freed


def test_services_cap_arenas_and_trim_by_default_and_both_can_be_turned_off():
    defaults = ServerSettings()
    assert defaults.malloc_arenas == 2
    assert defaults.malloc_trim_seconds == 60.0
    off = ServerSettings(malloc_arenas=None, malloc_trim_seconds=None)
    assert off.malloc_arenas is None and off.malloc_trim_seconds is None
    with pytest.raises(ValueError, match="malloc_arenas"):
        ServerSettings(malloc_arenas=0)
