"""Dynamic batching: requests for one variant are coalesced up to a maximum batch size or a
maximum delay, and each batch runs in the inference thread pool, off the event loop (except
for cheap models, below).

A batch waits for more rows only while other admitted requests are on their way, so a lone
request (concurrency 1) never pays the delay.

Cheap models are the exception. For a model whose verified single-row cost is within
``inline_budget_s`` (compiled trees, with the trainer's preprocessing as NumPy), a
single-row request is answered on the event loop at once, and multi-row requests
are coalesced without waiting and run on the loop up to ``INLINE_MAX_ROWS``: a thread hop,
the GIL hand-offs between the pool and the loop, and the future per request each cost more
than such a model (docs/experiments/serving-throughput.md)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from atlas_serving.inference import RowResult, ServableModel

INLINE_MAX_ROWS = 64


@dataclass
class _Job:
    rows: Sequence[Mapping[str, Any]]
    explain: bool
    all_scores: bool
    done: asyncio.Future[list[RowResult]]


class Batcher:
    def __init__(
        self,
        executor: Executor,
        *,
        max_batch_size: int,
        max_delay_s: float,
        workers: int,
        others_waiting: Callable[[], int],
        on_batch: Callable[[int], None] | None = None,
        disabled: bool = False,
        inline_budget_s: float = 0.0,
    ) -> None:
        self.executor = executor
        self.max_batch_size = 1 if disabled else max(1, max_batch_size)
        self.max_delay_s = 0.0 if disabled else max_delay_s
        self.others_waiting = others_waiting
        self.on_batch = on_batch
        self.inline_budget_s = inline_budget_s
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._model: ServableModel | None = None
        self._tasks = [asyncio.ensure_future(self._work()) for _ in range(max(1, workers))]
        self.running_rows = 0

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        while not self.queue.empty():
            job = self.queue.get_nowait()
            if not job.done.done():
                job.done.cancel()

    async def predict(
        self,
        model: ServableModel,
        rows: Sequence[Mapping[str, Any]],
        *,
        explain: bool = False,
        all_scores: bool = False,
    ) -> list[RowResult]:
        self._model = model
        if len(rows) == 1 and not explain and self._inline(model):
            results = model.predict(rows, all_scores=all_scores)
            if self.on_batch is not None:
                self.on_batch(1)
            return results
        if self.queue.empty() and not self.running_rows and self.others_waiting() <= len(rows):
            return await self._alone(asyncio.get_running_loop(), model, rows, explain, all_scores)
        job = _Job(rows, explain, all_scores, asyncio.get_running_loop().create_future())
        self.queue.put_nowait(job)
        return await job.done

    def _inline(self, model: ServableModel) -> bool:
        cost = getattr(model, "single_row_seconds", None)
        return cost is not None and cost <= self.inline_budget_s

    async def _alone(
        self,
        loop: asyncio.AbstractEventLoop,
        model: ServableModel,
        rows: Sequence[Mapping[str, Any]],
        explain: bool,
        all_scores: bool,
    ) -> list[RowResult]:
        """Nothing to coalesce with: straight to the inference pool (one task hop fewer)."""
        self.running_rows += len(rows)
        try:
            results = await loop.run_in_executor(
                self.executor, lambda: model.predict(rows, explain=explain, all_scores=all_scores)
            )
        finally:
            self.running_rows -= len(rows)
        if self.on_batch is not None:
            self.on_batch(len(rows))
        return results

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self.queue.get()
            batch = [first]
            rows = len(first.rows)
            # A model cheap enough for the event loop takes what is queued now: waiting for
            # more rows would cost more latency than the batch saves.
            cheap = self._model is not None and self._inline(self._model)
            deadline = loop.time() + (0.0 if cheap else self.max_delay_s)
            while rows < self.max_batch_size:
                try:
                    job = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0 or self.others_waiting() <= rows + self.running_rows:
                        break
                    try:
                        job = await asyncio.wait_for(self.queue.get(), remaining)
                    except TimeoutError:
                        break
                batch.append(job)
                rows += len(job.rows)
            await self._run(loop, batch, rows)

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Job], rows: int) -> None:
        live = [job for job in batch if not job.done.done()]
        if not live:
            return
        model = self._model
        assert model is not None
        groups: dict[tuple[bool, bool], list[_Job]] = {}
        for job in live:
            groups.setdefault((job.explain, job.all_scores), []).append(job)
        self.running_rows += rows
        try:
            for (explain, all_scores), jobs in groups.items():
                flat = [row for job in jobs for row in job.rows]
                try:
                    if not explain and len(flat) <= INLINE_MAX_ROWS and self._inline(model):
                        results = model.predict(flat, all_scores=all_scores)
                    else:
                        results = await loop.run_in_executor(
                            self.executor,
                            lambda f=flat, e=explain, a=all_scores: model.predict(
                                f, explain=e, all_scores=a
                            ),
                        )
                except BaseException as exc:  # noqa: BLE001 - every caller gets it
                    for job in jobs:
                        if not job.done.done():
                            job.done.set_exception(exc)
                    continue
                if self.on_batch is not None:
                    self.on_batch(len(flat))
                start = 0
                for job in jobs:
                    part = results[start : start + len(job.rows)]
                    start += len(job.rows)
                    if not job.done.done():
                        job.done.set_result(part)
        finally:
            self.running_rows -= rows
            with contextlib.suppress(Exception):
                for job in live:
                    if job.done.done() and not job.done.cancelled():
                        job.done.exception()
