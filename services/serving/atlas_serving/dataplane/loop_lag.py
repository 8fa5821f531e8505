"""Load shedding on event-loop lag: the queue admission cannot see.

gRPC hands each new call to the event loop as a task queued behind everything already ready,
and an endpoint's admission counts a call only once its handler runs. When the loop itself
is the bottleneck (cheap models are answered on the loop), calls therefore wait in that
backlog for seconds while admission sees free slots. How late a timer fires is how long a
call arriving now waits before its handler starts (the queueing delay CoDel watches), so
beyond ``limit`` new predictions are refused at once: the backlog drains and the calls that
are admitted keep a bounded latency.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class LoopLag:
    def __init__(self, limit_s: float, gauge: Any = None, interval_s: float = 0.01) -> None:
        self.limit = limit_s  # 0: never shed
        self.interval = interval_s
        self.lag = 0.0
        self.shedding = False
        self._gauge = gauge
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.limit > 0 and self._task is None:
            self._task = asyncio.ensure_future(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.shedding = False

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        previous = 0.0
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            lag = max(loop.time() - start - self.interval, 0.0)
            # two late timers in a row: a backlog, not one slow callback (a model load, a GC)
            self.shedding = lag > self.limit and previous > self.limit
            previous = self.lag = lag
            if self._gauge is not None:
                self._gauge.set(lag)
