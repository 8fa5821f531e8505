"""Compute resources of a trainer host: GPU discovery (NVML), utilisation sampling, trial plans.

* :func:`discover_gpus` lists NVIDIA GPUs through nvidia-ml-py. Without a GPU, driver or
  library, ``pynvml.nvmlInit()`` raises ``NVMLError_LibraryNotFound`` (or another
  ``NVMLError``): the result is then an empty list with a note saying why -- never an error.
* :class:`UtilizationSampler` samples a process's CPU and RSS (psutil) and GPU utilisation
  (NVML) on a background thread during a trial and summarises mean/max.
* :class:`ResourcePlan` turns a job's CPU/GPU request into bounded trial parallelism and
  per-trial device assignments, refusing requests the host can never satisfy.

The NVML module is injectable (``nvml=``) so the GPU paths are testable on CPU-only hosts.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType, TracebackType
from typing import Any

import psutil

from atlas_core.errors import InvalidArgument, ResourceExhausted


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as NVML reports it (``utilization_percent`` over NVML's last sample period)."""

    index: int
    name: str
    uuid: str
    memory_total_bytes: int
    memory_used_bytes: int
    utilization_percent: float


@dataclass(frozen=True)
class GpuDiscovery:
    """GPUs found; ``note`` says why none were found (empty when GPUs exist)."""

    gpus: tuple[GpuInfo, ...]
    note: str = ""


@dataclass(frozen=True)
class HostResources:
    cpus: float
    gpus: tuple[GpuInfo, ...]
    gpu_note: str = ""


def load_nvml() -> ModuleType | None:
    """The installed ``pynvml`` (nvidia-ml-py), None when it is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def discover_gpus(nvml: Any = None) -> GpuDiscovery:
    """The host's GPUs; never raises (NVML problems become an empty list and a note)."""
    module = nvml if nvml is not None else load_nvml()
    if module is None:
        return GpuDiscovery((), "nvidia-ml-py is not installed")
    try:
        module.nvmlInit()
    except Exception as err:  # NVMLError_LibraryNotFound / DriverNotLoaded / ...: CPU only
        return GpuDiscovery((), f"NVML unavailable: {err}")
    try:
        count = int(module.nvmlDeviceGetCount())
        gpus = tuple(_device(module, index) for index in range(count))
    except Exception as err:  # a driver that fails mid-query: report what we know
        return GpuDiscovery((), f"NVML query failed: {err}")
    finally:
        _shutdown(module)
    return GpuDiscovery(gpus, "" if gpus else "NVML found no GPU")


def _device(module: Any, index: int) -> GpuInfo:
    handle = module.nvmlDeviceGetHandleByIndex(index)
    memory = module.nvmlDeviceGetMemoryInfo(handle)
    return GpuInfo(
        index=index,
        name=_text(module.nvmlDeviceGetName(handle)),
        uuid=_text(module.nvmlDeviceGetUUID(handle)),
        memory_total_bytes=int(memory.total),
        memory_used_bytes=int(memory.used),
        utilization_percent=_utilisation(module, handle),
    )


def _utilisation(module: Any, handle: Any) -> float:
    try:
        return float(module.nvmlDeviceGetUtilizationRates(handle).gpu)
    except Exception:  # NVMLError_NotSupported on some boards (e.g. MIG slices)
        return 0.0


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _shutdown(module: Any) -> None:
    try:
        module.nvmlShutdown()
    except Exception:  # shutting down a half-initialised NVML is best effort
        pass


def available_cpus() -> float:
    """CPU cores this process may run on (affinity-aware, e.g. inside a cgroup cpuset)."""
    try:
        return float(len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return float(os.cpu_count() or 1)


def discover_resources(nvml: Any = None) -> HostResources:
    found = discover_gpus(nvml)
    return HostResources(available_cpus(), found.gpus, found.note)


# ----------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class UtilizationSummary:
    """Mean/max over the samples; GPU fields are 0 when no GPU was sampled."""

    samples: int
    duration_seconds: float
    cpu_percent_mean: float
    cpu_percent_max: float
    rss_bytes_mean: float
    rss_bytes_max: int
    gpu_percent_mean: float
    gpu_percent_max: float
    gpu_memory_used_bytes_max: int


class UtilizationSampler:
    """Samples CPU% and RSS of ``pid`` (with its children) and the utilisation of
    ``gpu_indices`` every ``interval`` seconds on a daemon thread.

    Use as a context manager (or :meth:`start` / :meth:`stop`); :meth:`summary` is valid at
    any time. CPU% is per core summed (200 = two cores busy). A process that exits ends the
    sampling quietly. Thread-safe.
    """

    def __init__(
        self,
        pid: int,
        *,
        interval: float = 1.0,
        gpu_indices: Sequence[int] = (),
        include_children: bool = True,
        nvml: Any = None,
    ) -> None:
        if interval <= 0:
            raise InvalidArgument("sampling interval must be positive", reason="INVALID_INTERVAL")
        self._process = psutil.Process(pid)
        self._interval = interval
        self._gpu_indices = tuple(gpu_indices)
        self._children = include_children
        self._nvml = nvml if nvml is not None else (load_nvml() if gpu_indices else None)
        self._gpu_handles: list[Any] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._ended: float | None = None
        self._cpu: list[float] = []
        self._rss: list[int] = []
        self._gpu: list[float] = []
        self._gpu_memory: list[int] = []
        self._primed: dict[int, psutil.Process] = {}

    def start(self) -> UtilizationSampler:
        self._open_gpus()
        self._cpu_percent()  # psutil's first cpu_percent() call is a baseline, always 0
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="utilization-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> UtilizationSummary:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 5.0)
            with self._lock:
                short = not self._cpu
            if short:  # a run shorter than the interval still gets one sample
                self._sample()
        if self._ended is None:
            self._ended = time.monotonic()
        if self._gpu_handles and self._nvml is not None:
            _shutdown(self._nvml)
            self._gpu_handles = []
        return self.summary()

    def __enter__(self) -> UtilizationSampler:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def summary(self) -> UtilizationSummary:
        with self._lock:
            cpu, rss = list(self._cpu), list(self._rss)
            gpu, gpu_memory = list(self._gpu), list(self._gpu_memory)
        end = self._ended if self._ended is not None else time.monotonic()
        return UtilizationSummary(
            samples=len(cpu),
            duration_seconds=max(0.0, end - self._started) if self._started else 0.0,
            cpu_percent_mean=_mean(cpu),
            cpu_percent_max=max(cpu, default=0.0),
            rss_bytes_mean=_mean([float(v) for v in rss]),
            rss_bytes_max=max(rss, default=0),
            gpu_percent_mean=_mean(gpu),
            gpu_percent_max=max(gpu, default=0.0),
            gpu_memory_used_bytes_max=max(gpu_memory, default=0),
        )

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if not self._sample():
                break
        self._ended = time.monotonic()

    def _sample(self) -> bool:
        try:
            cpu = self._cpu_percent()
            rss = self._rss_bytes()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False  # the trial process ended
        gpu, gpu_memory = self._gpu_sample()
        with self._lock:
            self._cpu.append(cpu)
            self._rss.append(rss)
            if gpu is not None:
                self._gpu.append(gpu)
                self._gpu_memory.append(gpu_memory)
        return True

    def _processes(self) -> list[psutil.Process]:
        processes = [self._process]
        if self._children:
            try:
                processes += self._process.children(recursive=True)
            except psutil.NoSuchProcess:
                raise  # the trial process itself is gone: sampling ends
            except psutil.Error:
                pass  # children not readable (permissions): sample the process alone
        return processes

    def _cpu_percent(self) -> float:
        total = 0.0
        for process in self._processes():
            # Keep Process objects: cpu_percent() measures since the same object's last call.
            known = self._primed.setdefault(process.pid, process)
            try:
                total += known.cpu_percent(interval=None)
            except psutil.NoSuchProcess:
                if process.pid == self._process.pid:
                    raise
        return total

    def _rss_bytes(self) -> int:
        total = 0
        for process in self._processes():
            try:
                total += int(process.memory_info().rss)
            except psutil.NoSuchProcess:
                if process.pid == self._process.pid:
                    raise
        return total

    def _open_gpus(self) -> None:
        if not self._gpu_indices or self._nvml is None:
            return
        try:
            self._nvml.nvmlInit()
            self._gpu_handles = [
                self._nvml.nvmlDeviceGetHandleByIndex(i) for i in self._gpu_indices
            ]
        except Exception:  # no NVML: sample CPU only
            self._gpu_handles = []

    def _gpu_sample(self) -> tuple[float | None, int]:
        if not self._gpu_handles or self._nvml is None:
            return None, 0
        try:
            utilisation = [
                float(self._nvml.nvmlDeviceGetUtilizationRates(h).gpu) for h in self._gpu_handles
            ]
            memory = [int(self._nvml.nvmlDeviceGetMemoryInfo(h).used) for h in self._gpu_handles]
        except Exception:  # a transient NVML error loses one sample, not the trial
            return None, 0
        return _mean(utilisation), sum(memory)


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class TrialSlot:
    """What one concurrently running trial may use."""

    slot: int
    threads: int
    gpu_indices: tuple[int, ...]

    @property
    def device(self) -> str:
        return f"cuda:{self.gpu_indices[0]}" if self.gpu_indices else "cpu"

    def environment(self) -> dict[str, str]:
        """Environment for the trial's worker process: only its GPUs are visible (none for a
        CPU trial) and native thread pools match its CPU share."""
        threads = str(self.threads)
        return {
            "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in self.gpu_indices),
            "OMP_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
        }


@dataclass(frozen=True)
class ResourcePlan:
    """A job's CPU/GPU request resolved against the host.

    ``max_parallel_trials`` is bounded by the CPU request (``cpus_per_trial`` each) and, on
    GPU jobs, by the GPUs requested (``gpus_per_trial`` each); ``slots`` assigns each
    concurrent trial its threads and GPU indices.
    """

    cpus: float
    gpu_indices: tuple[int, ...]
    max_parallel_trials: int
    threads_per_trial: int
    slots: tuple[TrialSlot, ...] = field(default_factory=tuple)

    @property
    def uses_gpu(self) -> bool:
        return bool(self.gpu_indices)

    @classmethod
    def from_request(
        cls,
        host: HostResources,
        *,
        cpus: float = 0.0,
        gpus: int = 0,
        parallel_trials: int = 0,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: int = 1,
        busy_gpus: Sequence[int] = (),
    ) -> ResourcePlan:
        """Plan a job asking for ``cpus`` cores (0: the whole host) and ``gpus`` GPUs (0: CPU
        only, even on a GPU host). ``parallel_trials`` (0: as many as fit) caps concurrency.
        GPUs in ``busy_gpus`` (held by other jobs) are used last.

        Raises:
            InvalidArgument: negative or non-finite numbers.
            ResourceExhausted: more CPUs or GPUs than the host has (the message says what
                exists); the trainer maps this to SubmitTrainingJob's RESOURCE_EXHAUSTED.
        """
        _check_request(cpus, gpus, parallel_trials, cpus_per_trial, gpus_per_trial)
        granted_cpus = host.cpus if cpus == 0 else float(cpus)
        if granted_cpus > host.cpus + 1e-9:
            raise ResourceExhausted(
                f"the job requests {cpus:g} CPUs but this trainer has {host.cpus:g}",
                reason="CPU_REQUEST_TOO_LARGE",
                metadata={"requested": f"{cpus:g}", "available": f"{host.cpus:g}"},
            )
        if gpus > len(host.gpus):
            found = ", ".join(f"{g.index}: {g.name}" for g in host.gpus) or (
                f"none ({host.gpu_note})" if host.gpu_note else "none"
            )
            raise ResourceExhausted(
                f"the job requests {gpus} GPU(s) but this trainer has {len(host.gpus)} "
                f"(GPUs found: {found}); request 0 GPUs to train on CPU",
                reason="GPU_REQUEST_TOO_LARGE",
                metadata={"requested": str(gpus), "available": str(len(host.gpus))},
            )
        busy = set(busy_gpus)
        ordered = sorted(host.gpus, key=lambda g: (g.index in busy, g.memory_used_bytes, g.index))
        chosen = tuple(sorted(g.index for g in ordered[:gpus]))
        bound = max(1, math.floor(granted_cpus / cpus_per_trial + 1e-9))
        if chosen:
            bound = min(bound, max(1, len(chosen) // gpus_per_trial))
        if parallel_trials > 0:
            bound = min(bound, parallel_trials)
        threads = max(1, math.floor(granted_cpus / bound + 1e-9))
        per_trial_gpus = len(chosen) // bound if chosen else 0
        slots = tuple(
            TrialSlot(
                slot=i,
                threads=threads,
                gpu_indices=chosen[i * per_trial_gpus : (i + 1) * per_trial_gpus],
            )
            for i in range(bound)
        )
        return cls(granted_cpus, chosen, bound, threads, slots)


def _check_request(
    cpus: float, gpus: int, parallel_trials: int, cpus_per_trial: float, gpus_per_trial: int
) -> None:
    problems = []
    if not math.isfinite(cpus) or cpus < 0:
        problems.append(f"cpus must be >= 0 (got {cpus})")
    if gpus < 0:
        problems.append(f"gpus must be >= 0 (got {gpus})")
    if parallel_trials < 0:
        problems.append(f"parallel_trials must be >= 0 (got {parallel_trials})")
    if not math.isfinite(cpus_per_trial) or cpus_per_trial <= 0:
        problems.append(f"cpus_per_trial must be > 0 (got {cpus_per_trial})")
    if gpus_per_trial < 1:
        problems.append(f"gpus_per_trial must be >= 1 (got {gpus_per_trial})")
    if problems:
        raise InvalidArgument(
            "invalid resource request: " + "; ".join(problems), reason="INVALID_RESOURCES"
        )
