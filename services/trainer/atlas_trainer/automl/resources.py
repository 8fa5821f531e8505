"""Trial parallelism from a CPU/GPU request (GPU-aware, never more than requested)."""

from __future__ import annotations

from dataclasses import dataclass


def detect_gpus() -> int:
    """Number of NVIDIA GPUs via NVML; 0 when there is none (never raises)."""
    from atlas_trainer.resources import discover_gpus

    return len(discover_gpus().gpus)


@dataclass(frozen=True)
class Parallelism:
    workers: int  # trials at once
    threads: int  # threads per trial
    devices: list[str]  # device per worker slot


def plan_parallelism(cpus: int = 1, gpus: int = 0, parallel_trials: int = 0) -> Parallelism:
    """With GPUs: one trial per GPU (``cuda:i``), CPUs shared among them. Without: one
    single-threaded trial per requested CPU (or ``parallel_trials``, capped by the request).
    One thread per trial because OpenMP libraries (LightGBM, XGBoost, torch) spin-wait: on a
    busy or oversubscribed machine 2 threads are several times *slower* than 1 for small
    data, while separate trials scale."""
    cpus = max(1, int(cpus))
    if gpus > 0:
        workers = min(gpus, parallel_trials or gpus)
        return Parallelism(workers, max(1, cpus // workers), [f"cuda:{i}" for i in range(workers)])
    workers = min(cpus, parallel_trials) if parallel_trials > 0 else cpus
    return Parallelism(workers, max(1, cpus // workers), ["cpu"] * workers)
