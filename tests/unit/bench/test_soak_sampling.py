"""The soak's measurements (bench/_chaos_suite.py): every process of a tree is found, memory is
read per process, and the growth slope ignores the warm-up."""

from __future__ import annotations

import os
import subprocess
import sys

from bench._chaos_suite import descendants, memory_mb, slope_mb_per_hour


def test_descendants_finds_children_and_grandchildren() -> None:
    # a child that starts a grandchild, both sleeping until killed
    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        # this process may have other children (the session's object store), so the tree is
        # checked from the child down: its grandchild is found, and both are under this process
        grandchildren: list[int] = []
        for _ in range(100):
            grandchildren = descendants(child.pid)
            if grandchildren:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert len(grandchildren) == 1
        found = descendants(os.getpid())
        assert child.pid in found and grandchildren[0] in found
    finally:
        for pid in descendants(child.pid):
            os.kill(pid, 9)
        child.kill()
        child.wait()


def test_memory_of_this_process_and_of_no_process() -> None:
    rss, anon, pss = memory_mb(os.getpid())  # type: ignore[misc]
    assert 0 < anon <= rss and 0 < pss <= rss
    assert memory_mb(2**22 + 12345) is None  # beyond pid_max: gone


def test_slope_ignores_the_warm_up() -> None:
    # one hour: +300 MB in the first 20 minutes (caches filling), then +10 MB/h
    samples = [(t, 100 + (300 * t / 1200 if t < 1200 else 300 + 10 * (t - 1200) / 3600))
               for t in range(0, 3600, 10)]  # fmt: skip
    steady = slope_mb_per_hour(samples, since_s=1200)
    assert steady is not None and abs(steady - 10) < 0.01
    everything = slope_mb_per_hour(samples, since_s=0)
    assert everything is not None and everything > 100
    assert slope_mb_per_hour(samples[:2], since_s=0) is None  # too few samples to fit
