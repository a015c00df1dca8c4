"""Micro-batching of concurrent ``/v1/act`` requests into one engine batch.

Requests that arrive while the engine is busy with the previous batch (and, with ``window_s`` > 0,
within that window after the first waiting one) are concatenated, decided in one engine call on
a dedicated thread, and split back; an idle engine answers a lone request at once. Every
request of a merged batch is therefore answered by the same model set.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from luanti_tune.inference.engine import BatchResult, InferenceEngine
from luanti_tune.policies.batch import ObservationBatch
from luanti_tune.schemas.agent import Observation

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    observations: Sequence[Observation]
    future: asyncio.Future[BatchResult]


class MicroBatcher:
    """Async front of an :class:`InferenceEngine`; bind it to one event loop (lazily on first use)."""

    def __init__(self, engine: InferenceEngine, window_s: float = 0.0, max_agents: int = 8192) -> None:
        self.engine = engine
        self.window_s = max(0.0, window_s)
        self.max_agents = max_agents
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="act-engine")
        self.batches = 0
        self.merged_requests = 0

    async def decide(self, observations: Sequence[Observation]) -> BatchResult:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._worker(), name="act-micro-batcher")
        fut: asyncio.Future[BatchResult] = loop.create_future()
        self._queue.put_nowait(_Pending(observations, fut))
        return await fut

    async def _collect(self, first: _Pending) -> list[_Pending]:
        """``first`` and every request queued behind it (up to ``max_agents`` agents); with a
        window, after waiting that long once for more to arrive."""
        assert self._queue is not None
        queue = self._queue
        if self.window_s > 0 and queue.empty():
            await asyncio.sleep(self.window_s)
        items = [first]
        n = len(first.observations)
        while n < self.max_agents and not queue.empty():
            item = queue.get_nowait()
            items.append(item)
            n += len(item.observations)
        return items

    async def _worker(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            items = await self._collect(first)
            if len(items) == 1:
                obs: Sequence[Observation] = first.observations
            else:
                obs = ObservationBatch.concat([ObservationBatch.of(it.observations) for it in items])
            try:
                result = await loop.run_in_executor(self._executor, self.engine.decide, obs)
            except BaseException as exc:  # noqa: BLE001 - hand the failure to every waiter
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            self.batches += 1
            self.merged_requests += len(items)
            if len(items) == 1:
                if not first.future.done():
                    first.future.set_result(result)
                continue
            start = 0
            for it in items:
                stop = start + len(it.observations)
                if not it.future.done():
                    it.future.set_result(result.slice(start, stop))
                start = stop

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._task = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
