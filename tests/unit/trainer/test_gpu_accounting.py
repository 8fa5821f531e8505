"""GPU accounting: GPUs leased to trials one at a time (by free memory), utilisation and peak
memory sampled during every trial and stored on the leaderboard, an alert for idle GPUs -- with
a fake NVML for the GPU bookkeeping only -- and the real CPU path on this GPU-less host."""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

from atlas_core.errors import ResourceExhausted
from atlas_trainer.automl import AutoMLRequest, run_automl
from atlas_trainer.convert import trial_to_pb
from atlas_trainer.gpu_accounting import GpuAccounting, GpuPool, plan_gpus
from atlas_trainer.jsonable import to_jsonable
from atlas_trainer.resources import discover_gpus
from tests.unit.trainer._automl_data import breast_cancer
from tests.unit.trainer.test_resources import FakeNvml


class BusyNvml(FakeNvml):
    """GPU 0 has the least free memory; utilisation 30% + 10% per index."""

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:  # noqa: N802 - NVML's names
        used = (8 - handle) * 2**30
        return type("Memory", (), {"total": 40 * 2**30, "used": used})()


def test_plan_resolves_the_request_against_nvml() -> None:
    everything = plan_gpus(None, nvml=FakeNvml(2))
    assert everything.gpu_indices == (0, 1) and everything.max_parallel_trials == 2
    assert plan_gpus(None, parallel_trials=1, nvml=FakeNvml(2)).max_parallel_trials == 1
    cpu = plan_gpus(0, nvml=FakeNvml(2))
    assert not cpu.uses_gpu and "no GPU requested" in cpu.note
    missing = plan_gpus(None, nvml=FakeNvml(init_error=True))
    assert not missing.uses_gpu and "NVML unavailable" in missing.note
    with pytest.raises(ResourceExhausted, match="requests 3 GPU"):
        plan_gpus(3, nvml=FakeNvml(2))


def test_pool_leases_one_gpu_at_a_time_most_free_memory_first() -> None:
    pool = GpuPool([0, 1, 2], BusyNvml(3))
    first, second = pool.acquire(), pool.acquire()
    assert (first, second) == (2, 1)  # GPU 2 has the most free memory, then GPU 1
    last = pool.acquire()
    assert last == 0
    with pytest.raises(TimeoutError):
        pool.acquire(timeout=0.05)  # every GPU is leased
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(timeout=10)))
    waiter.start()
    pool.release(1)
    waiter.join(timeout=10)
    assert got == [1]  # a waiting trial gets the released GPU
    with pytest.raises(ValueError, match="not leased"):
        pool.release(7)


def test_trial_usage_is_sampled_and_idle_gpus_raise_an_alert() -> None:
    nvml = FakeNvml(2)
    accounting = GpuAccounting(
        plan_gpus(None, nvml=nvml), low_utilization_percent=35.0, interval_s=0.02, nvml=nvml
    )
    usages = []
    with accounting.trial(0) as a, accounting.trial(1) as b:
        threading.Event().wait(0.1)
        usages = [a, b]
    by_device = {u.device: u for u in usages}
    assert set(by_device) == {"cuda:0", "cuda:1"}  # two trials at once: one GPU each
    assert by_device["cuda:0"].gpu_utilization_percent == pytest.approx(30.0)
    assert by_device["cuda:1"].gpu_utilization_percent == pytest.approx(40.0)
    assert by_device["cuda:0"].gpu_memory_peak_bytes == 2**30
    assert all(u.samples >= 1 for u in usages)
    assert by_device["cuda:0"].low_utilization and not by_device["cuda:1"].low_utilization
    assert [alert.trial for alert in accounting.alerts] == [0]
    assert "1 of 2 GPU trials" in accounting.summary_line()
    assert nvml.initialised == 0  # every NVML session was shut down again


@pytest.mark.slow
def test_automl_trials_lease_gpus_and_store_their_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake stands in for nvidia-ml-py only; the search, the trials and the sampler are real
    # (linear models ignore the device, so they train on this GPU-less host).
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(2))
    X, y = breast_cancer()
    events: list[dict[str, Any]] = []
    r = run_automl(
        AutoMLRequest(
            X,
            y,
            max_trials=4,
            families=["linear"],
            strategy="random",
            gpus=None,
            n_jobs=2,
            ensemble=False,
            gpu_low_utilization_percent=35.0,
            on_event=events.append,
        )
    )
    rows = [row for row in r.leaderboard if row.number >= 0]
    assert len(rows) == 4
    assert {row.device for row in rows} <= {"cuda:0", "cuda:1"}
    for row in rows:
        expected = 30.0 if row.device == "cuda:0" else 40.0
        assert row.gpu_utilization_percent == pytest.approx(expected)
        assert row.gpu_memory_peak_bytes > 0
        msg = trial_to_pb(to_jsonable(row))
        assert msg.device == row.device and msg.gpu_memory_peak_bytes == row.gpu_memory_peak_bytes
        assert msg.gpu_utilization_percent == pytest.approx(expected)
    low = [e for e in events if e["type"] == "gpu_low_utilization"]
    assert low and all(e["device"] == "cuda:0" for e in low)
    assert any("low GPU utilisation" in w for w in r.warnings)


@pytest.mark.slow
def test_without_gpus_the_job_runs_on_cpu_and_says_so() -> None:
    if discover_gpus().gpus:
        pytest.skip("this host has GPUs")
    X, y = breast_cancer()
    r = run_automl(
        AutoMLRequest(X, y, max_trials=2, families=["linear"], gpus=None, ensemble=False)
    )
    notes = [w for w in r.warnings if w.startswith("trials ran on CPU")]
    assert notes and "no GPU on this host" in notes[0]
    rows = [row for row in r.leaderboard if row.number >= 0]
    assert rows and all(row.device == "cpu" for row in rows)
    assert all(row.gpu_utilization_percent == 0 and row.gpu_memory_peak_bytes == 0 for row in rows)
    assert r.best_score is not None and r.best_score > 0.9  # it trained, on CPU
