"""Resources: NVML discovery (real library: no GPU here; a fake NVML for the GPU paths),
utilisation sampling of a real busy process, and trial-parallelism plans."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace
from typing import Any

import pytest

from atlas_core.errors import InvalidArgument, ResourceExhausted
from atlas_trainer.resources import (
    GpuInfo,
    HostResources,
    ResourcePlan,
    UtilizationSampler,
    available_cpus,
    discover_gpus,
    discover_resources,
)


class FakeNvmlError(Exception):
    """Stands in for pynvml.NVMLError subclasses."""


class FakeNvml:
    """A minimal NVML for hosts without GPUs: ``count`` devices with fixed readings."""

    def __init__(self, count: int = 2, *, init_error: bool = False, util_error: bool = False):
        self.count = count
        self.init_error = init_error
        self.util_error = util_error
        self.initialised = 0

    def nvmlInit(self) -> None:  # noqa: N802 - NVML's names
        if self.init_error:
            raise FakeNvmlError("NVML Shared Library Not Found")
        self.initialised += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:  # noqa: N802
        return b"NVIDIA A100-SXM4-40GB"

    def nvmlDeviceGetUUID(self, handle: int) -> str:  # noqa: N802
        return f"GPU-{handle:04d}"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:  # noqa: N802
        return SimpleNamespace(total=40 * 2**30, used=(handle + 1) * 2**30)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:  # noqa: N802
        if self.util_error:
            raise FakeNvmlError("Not Supported")
        return SimpleNamespace(gpu=30 + 10 * handle, memory=5)


def gpu(index: int, used: int = 0) -> GpuInfo:
    return GpuInfo(index, "GPU", f"GPU-{index}", 40 * 2**30, used, 0.0)


# ------------------------------------------------------------------------- discovery


def test_without_a_gpu_discovery_reports_none_and_says_why() -> None:
    found = discover_gpus()  # the real nvidia-ml-py
    if found.gpus:
        pytest.skip("this host has GPUs")
    assert found.gpus == () and "NVML" in found.note
    host = discover_resources()
    assert host.gpus == () and host.cpus == available_cpus() >= 1


def test_nvml_errors_never_escape() -> None:
    found = discover_gpus(FakeNvml(init_error=True))
    assert found.gpus == () and "Library Not Found" in found.note


def test_gpus_are_listed_with_memory_and_utilisation() -> None:
    nvml = FakeNvml(2)
    found = discover_gpus(nvml)
    assert [g.index for g in found.gpus] == [0, 1] and found.note == ""
    assert found.gpus[1] == GpuInfo(
        1, "NVIDIA A100-SXM4-40GB", "GPU-0001", 40 * 2**30, 2**30 * 2, 40.0
    )
    assert nvml.initialised == 0  # shut down again
    assert discover_gpus(FakeNvml(1, util_error=True)).gpus[0].utilization_percent == 0.0


# ------------------------------------------------------------------------- sampling


def test_sampler_measures_a_busy_process_and_stops_when_it_exits() -> None:
    busy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.time() + 1.0\nwhile time.time() < end: pass",
        ]
    )
    try:
        sampler = UtilizationSampler(busy.pid, interval=0.05, gpu_indices=[0, 1], nvml=FakeNvml(2))
        with sampler:
            busy.wait(timeout=30)
            time.sleep(0.2)  # the sampler notices the exit and ends quietly
        summary = sampler.summary()
    finally:
        busy.kill()
        busy.wait()
    assert summary.samples >= 5
    # A busy loop on a shared 2-core CI host: clearly non-zero, not necessarily 100%.
    assert summary.cpu_percent_max > 10 and summary.cpu_percent_mean > 5
    assert summary.rss_bytes_max > 1_000_000
    assert summary.gpu_percent_mean == pytest.approx(35.0)
    assert summary.gpu_memory_used_bytes_max == 3 * 2**30
    assert 0.5 < summary.duration_seconds < 10


def test_sampler_without_gpus_reports_zero_gpu_use() -> None:
    with UtilizationSampler(__import__("os").getpid(), interval=0.02) as sampler:
        time.sleep(0.15)
    summary = sampler.summary()
    assert summary.samples >= 2 and summary.gpu_percent_max == 0.0
    with pytest.raises(InvalidArgument):
        UtilizationSampler(1, interval=0)


# ------------------------------------------------------------------------- planning


def test_cpu_plans_are_bounded_by_the_request() -> None:
    host = HostResources(cpus=8.0, gpus=())
    whole = ResourcePlan.from_request(host)
    assert whole.cpus == 8 and whole.max_parallel_trials == 8 and not whole.uses_gpu
    assert ResourcePlan.from_request(host, cpus=4).max_parallel_trials == 4
    paired = ResourcePlan.from_request(host, cpus=8, cpus_per_trial=2)
    assert paired.max_parallel_trials == 4 and paired.threads_per_trial == 2
    capped = ResourcePlan.from_request(host, cpus=8, parallel_trials=3)
    assert capped.max_parallel_trials == 3 and capped.threads_per_trial == 2
    assert len(capped.slots) == 3 and all(s.device == "cpu" for s in capped.slots)
    assert ResourcePlan.from_request(host, cpus=0.5).max_parallel_trials == 1


def test_requests_beyond_the_host_are_refused_clearly() -> None:
    host = HostResources(cpus=4.0, gpus=(), gpu_note="NVML unavailable: library not found")
    with pytest.raises(ResourceExhausted) as err:
        ResourcePlan.from_request(host, gpus=1)
    assert err.value.reason == "GPU_REQUEST_TOO_LARGE"
    assert "requests 1 GPU(s) but this trainer has 0" in err.value.message
    assert "library not found" in err.value.message
    with pytest.raises(ResourceExhausted, match="requests 16 CPUs but this trainer has 4"):
        ResourcePlan.from_request(host, cpus=16)
    with pytest.raises(InvalidArgument, match="gpus must be >= 0"):
        ResourcePlan.from_request(host, gpus=-1)


def test_gpu_plans_assign_gpus_and_cpu_only_requests_hide_them() -> None:
    host = HostResources(cpus=16.0, gpus=tuple(gpu(i, used=i) for i in range(4)))
    cpu_only = ResourcePlan.from_request(host, cpus=8, gpus=0)
    assert not cpu_only.uses_gpu and cpu_only.max_parallel_trials == 8
    assert cpu_only.slots[0].environment()["CUDA_VISIBLE_DEVICES"] == ""

    two = ResourcePlan.from_request(host, cpus=8, gpus=2)
    assert two.gpu_indices == (0, 1) and two.max_parallel_trials == 2
    assert [s.gpu_indices for s in two.slots] == [(0,), (1,)]
    assert two.slots[1].device == "cuda:1" and two.threads_per_trial == 4
    assert two.slots[1].environment()["CUDA_VISIBLE_DEVICES"] == "1"

    avoiding = ResourcePlan.from_request(host, cpus=8, gpus=2, busy_gpus=[0, 1])
    assert avoiding.gpu_indices == (2, 3)

    paired = ResourcePlan.from_request(host, cpus=8, gpus=4, gpus_per_trial=2)
    assert paired.max_parallel_trials == 2
    assert [s.gpu_indices for s in paired.slots] == [(0, 1), (2, 3)]
    cpu_bound = ResourcePlan.from_request(host, cpus=1, gpus=4)
    assert cpu_bound.max_parallel_trials == 1 and cpu_bound.slots[0].gpu_indices == (0, 1, 2, 3)
