"""Dynamic batching and admission control, with a stand-in model (no network)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from atlas_core.errors import ResourceExhausted
from atlas_serving.dataplane.batching import Batcher
from atlas_serving.dataplane.inference import RowResult
from atlas_serving.dataplane.live import Admission


class Recorder:
    """Answers value = x, remembering the batch sizes and the threads it ran in."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[int] = []
        self.threads: set[str] = set()
        self.delay = delay

    def predict(
        self, rows: Sequence[Mapping[str, Any]], *, explain: bool = False, all_scores: bool = False
    ) -> list[RowResult]:
        import time

        self.batches.append(len(rows))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        return [RowResult(value=float(r["x"])) for r in rows]


@pytest.fixture
def executor() -> Any:
    pool = ThreadPoolExecutor(2, "test-infer")
    yield pool
    pool.shutdown()


async def test_lone_request_never_waits_for_the_delay(executor: Any) -> None:
    model = Recorder()
    batcher = Batcher(
        executor, max_batch_size=32, max_delay_s=0.5, workers=1, others_waiting=lambda: 1
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    out = await batcher.predict(model, [{"x": 1}])  # type: ignore[arg-type]
    assert out[0].value == 1.0 and loop.time() - start < 0.2
    assert all(t.startswith("test-infer") for t in model.threads)  # off the event loop
    batcher.close()


async def test_concurrent_requests_are_coalesced_in_order(executor: Any) -> None:
    model = Recorder(delay=0.05)
    waiting = [0]
    batcher = Batcher(
        executor, max_batch_size=16, max_delay_s=0.05, workers=1, others_waiting=lambda: waiting[0]
    )
    waiting[0] = 40
    outs = await asyncio.gather(
        *[
            batcher.predict(model, [{"x": i}])  # type: ignore[arg-type]
            for i in range(40)
        ]
    )
    assert [o[0].value for o in outs] == [float(i) for i in range(40)]
    assert max(model.batches) == 16 and len(model.batches) < 40
    batcher.close()


async def test_a_failing_batch_fails_each_caller(executor: Any) -> None:
    class Broken(Recorder):
        def predict(self, rows, **kw):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    batcher = Batcher(
        executor, max_batch_size=8, max_delay_s=0.0, workers=1, others_waiting=lambda: 0
    )
    with pytest.raises(RuntimeError):
        await batcher.predict(Broken(), [{"x": 1}])  # type: ignore[arg-type]
    batcher.close()


async def test_admission_refuses_beyond_limit_and_queue_at_once() -> None:
    admission = Admission(limit=2, queue=1)
    await admission.enter("ep", None)
    await admission.enter("ep", None)
    queued = asyncio.ensure_future(admission.enter("ep", None))
    await asyncio.sleep(0)
    assert admission.waiting == 1
    with pytest.raises(ResourceExhausted):
        await admission.enter("ep", None)
    admission.leave()
    await queued
    assert admission.running == 2 and admission.waiting == 0


async def test_admission_deadline_while_queued() -> None:
    admission = Admission(limit=1, queue=5)
    await admission.enter("ep", None)
    with pytest.raises(ResourceExhausted):
        await admission.enter("ep", 0.05)
    assert admission.waiting == 0


async def test_a_cheap_verified_model_answers_a_lone_row_inline(executor: Any) -> None:
    cheap = Recorder()
    cheap.single_row_seconds = 20e-6  # type: ignore[attr-defined]
    batcher = Batcher(
        executor,
        max_batch_size=32,
        max_delay_s=0.5,
        workers=1,
        others_waiting=lambda: 1,
        inline_budget_s=250e-6,
    )
    out = await batcher.predict(cheap, [{"x": 3}])  # type: ignore[arg-type]
    assert out[0].value == 3.0 and cheap.threads == {threading.current_thread().name}
    # several rows, or an explanation, or a costly model: still the inference pool
    await batcher.predict(cheap, [{"x": 1}, {"x": 2}])  # type: ignore[arg-type]
    costly = Recorder()
    costly.single_row_seconds = 5e-3  # type: ignore[attr-defined]
    await batcher.predict(costly, [{"x": 1}])  # type: ignore[arg-type]
    assert any(t.startswith("test-infer") for t in cheap.threads)
    assert all(t.startswith("test-infer") for t in costly.threads)
    batcher.close()


async def test_a_cheap_model_stays_on_the_event_loop_under_load(executor: Any) -> None:
    cheap = Recorder()
    cheap.single_row_seconds = 20e-6  # type: ignore[attr-defined]
    waiting = [200]
    batcher = Batcher(
        executor,
        max_batch_size=64,
        max_delay_s=0.05,
        workers=1,
        others_waiting=lambda: waiting[0],
        inline_budget_s=250e-6,
    )
    # single rows are answered at once, however many requests are in flight
    singles = await asyncio.gather(
        *[
            batcher.predict(cheap, [{"x": i}])  # type: ignore[arg-type]
            for i in range(50)
        ]
    )
    assert [o[0].value for o in singles] == [float(i) for i in range(50)]
    assert set(cheap.batches) == {1}
    # small multi-row requests are coalesced, and the batch runs on the loop too
    pairs = await asyncio.gather(
        *[
            batcher.predict(  # type: ignore[arg-type]
                cheap, [{"x": 2 * i}, {"x": 2 * i + 1}]
            )
            for i in range(50)
        ]
    )
    assert [r.value for o in pairs for r in o] == [float(i) for i in range(100)]
    assert max(cheap.batches) > 2 and cheap.threads == {threading.current_thread().name}
    # a batch beyond INLINE_MAX_ROWS, or an explanation, goes to the inference pool
    await batcher.predict(cheap, [{"x": i} for i in range(65)])  # type: ignore[arg-type]
    assert any(t.startswith("test-infer") for t in cheap.threads)
    batcher.close()
