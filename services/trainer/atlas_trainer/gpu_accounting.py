"""GPU accounting of a job: which GPUs it uses, which trial (or worker) holds which GPU, what
each one used, and an alert when GPUs sit idle.

* :func:`plan_gpus` resolves a job's GPU request against the host (NVML discovery through
  :func:`atlas_trainer.resources.discover_resources`, GPU choice and trial bound through
  :class:`atlas_trainer.resources.ResourcePlan`). Without GPUs the job runs on CPU and the
  plan's ``note`` says why (no NVML library, no driver, none requested).
* :class:`GpuPool` hands the job's GPUs to trials or workers one at a time: a lease takes the
  free GPU with the most free memory (NVML's reading at that moment) and blocks while every
  GPU is leased.
* :class:`GpuAccounting` wraps each trial: it leases a GPU, samples its utilisation and memory
  (:class:`atlas_trainer.resources.UtilizationSampler`) while the trial runs, and keeps an
  alert for every GPU trial whose mean utilisation stays below the threshold.

NVML is injectable (``nvml=``; else the installed ``pynvml``) so the GPU bookkeeping is
testable on hosts without GPUs.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from atlas_trainer.resources import (
    HostResources,
    ResourcePlan,
    UtilizationSampler,
    UtilizationSummary,
    discover_resources,
    load_nvml,
)

log = logging.getLogger(__name__)
CPU = "cpu"


@dataclass(frozen=True)
class GpuPlan:
    """The GPUs a job uses (empty: CPU only) and why none, when none."""

    gpu_indices: tuple[int, ...]
    max_parallel_trials: int  # one trial per GPU (0 on CPU: the CPU plan decides)
    note: str = ""

    @property
    def uses_gpu(self) -> bool:
        return bool(self.gpu_indices)


def plan_gpus(
    requested: int | None,
    parallel_trials: int = 0,
    *,
    host: HostResources | None = None,
    nvml: Any = None,
) -> GpuPlan:
    """``requested``: None = every GPU the host has, 0 = CPU only, N = N GPUs (more than the
    host has raises ResourceExhausted, ``GPU_REQUEST_TOO_LARGE``)."""
    if requested == 0:
        return GpuPlan((), 0, "no GPU requested (resources.gpus = 0)")
    host = host if host is not None else discover_resources(nvml)
    wanted = len(host.gpus) if requested is None else requested
    if wanted == 0:
        return GpuPlan((), 0, f"no GPU on this host ({host.gpu_note or 'none found'})")
    plan = ResourcePlan.from_request(host, gpus=wanted, parallel_trials=parallel_trials)
    bound = min(plan.max_parallel_trials, len(plan.gpu_indices))
    return GpuPlan(plan.gpu_indices, max(1, bound))


class GpuPool:
    """Leases GPUs one at a time: the free GPU with the most free memory first (lowest index
    on a tie, or when NVML cannot say). Thread-safe."""

    def __init__(self, indices: Sequence[int], nvml: Any = None) -> None:
        if not indices:
            raise ValueError("a GPU pool needs at least one GPU")
        self._free = set(indices)
        self._all = tuple(indices)
        self._nvml = nvml
        self._cond = threading.Condition()

    @property
    def indices(self) -> tuple[int, ...]:
        return self._all

    def acquire(self, timeout: float | None = None) -> int:
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._free), timeout=timeout):
                raise TimeoutError(f"no GPU of {self._all} was released within {timeout} s")
            index = max(sorted(self._free), key=self._free_memory)
            self._free.discard(index)
            return index

    def release(self, index: int) -> None:
        with self._cond:
            if index not in self._all or index in self._free:
                raise ValueError(f"GPU {index} is not leased from this pool")
            self._free.add(index)
            self._cond.notify()

    @contextmanager
    def lease(self) -> Iterator[int]:
        index = self.acquire()
        try:
            yield index
        finally:
            self.release(index)

    def _free_memory(self, index: int) -> int:
        if self._nvml is None:
            return 0
        try:
            self._nvml.nvmlInit()
            try:
                memory = self._nvml.nvmlDeviceGetMemoryInfo(
                    self._nvml.nvmlDeviceGetHandleByIndex(index)
                )
                return int(memory.total) - int(memory.used)
            finally:
                self._nvml.nvmlShutdown()
        except Exception:  # NVML hiccup: fall back to index order
            return 0


@dataclass
class TrialUsage:
    """What one trial ran on and used (GPU fields 0 on CPU)."""

    device: str = CPU
    gpu_utilization_percent: float = 0.0
    gpu_memory_peak_bytes: int = 0
    samples: int = 0
    low_utilization: bool = False  # a GPU trial below the job's threshold


@dataclass
class LowUtilization:
    """A GPU trial whose mean utilisation stayed below the threshold."""

    trial: int
    device: str
    utilization_percent: float
    samples: int


@dataclass
class GpuAccounting:
    """Per-job GPU bookkeeping for trials (see the module doc). On a CPU plan ``trial`` yields
    ``cpu`` and samples nothing."""

    plan: GpuPlan
    low_utilization_percent: float = 20.0
    interval_s: float = 0.5
    nvml: Any = None
    alerts: list[LowUtilization] = field(default_factory=list)
    gpu_trials: int = 0
    _pool: GpuPool | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        if self.plan.uses_gpu:
            self._pool = GpuPool(self.plan.gpu_indices, self._nvml_module())

    def _nvml_module(self) -> Any:
        return self.nvml if self.nvml is not None else load_nvml()

    @contextmanager
    def trial(self, number: int) -> Iterator[TrialUsage]:
        """Lease a GPU for trial ``number`` (blocks while all are leased) and sample it until
        the block ends; the yielded usage is filled in on exit."""
        usage = TrialUsage()
        if self._pool is None:
            yield usage
            return
        with self._pool.lease() as index:
            usage.device = f"cuda:{index}"
            sampler = UtilizationSampler(
                os.getpid(),
                interval=self.interval_s,
                gpu_indices=[index],
                include_children=False,
                nvml=self._nvml_module(),
            ).start()
            try:
                yield usage
            finally:
                self._record(number, usage, sampler.stop())

    def _record(self, number: int, usage: TrialUsage, summary: UtilizationSummary) -> None:
        usage.gpu_utilization_percent = summary.gpu_percent_mean
        usage.gpu_memory_peak_bytes = summary.gpu_memory_used_bytes_max
        usage.samples = summary.samples
        with self._lock:
            self.gpu_trials += 1
            if summary.samples and summary.gpu_percent_mean < self.low_utilization_percent:
                usage.low_utilization = True
                alert = LowUtilization(
                    number, usage.device, summary.gpu_percent_mean, summary.samples
                )
                self.alerts.append(alert)
                log.warning(
                    "trial %d on %s used its GPU %.0f%% on average (below %.0f%%)",
                    number,
                    usage.device,
                    summary.gpu_percent_mean,
                    self.low_utilization_percent,
                )

    def summary_line(self) -> str:
        """The report's line about the job's devices: CPU and why, or the idle-GPU alert
        (empty when GPUs were used well)."""
        if not self.plan.uses_gpu:
            return f"trials ran on CPU: {self.plan.note}"
        if not self.alerts:
            return ""
        mean = sum(a.utilization_percent for a in self.alerts) / len(self.alerts)
        return (
            f"low GPU utilisation: {len(self.alerts)} of {self.gpu_trials} GPU trials used "
            f"their GPU below {self.low_utilization_percent:g}% on average (mean {mean:.0f}%); "
            "the data or models may be too small for a GPU (request resources.gpus = 0 to "
            "train on CPU)"
        )
