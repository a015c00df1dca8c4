"""Group commit: concurrent batches are coalesced into one store transaction.

Request handlers :meth:`GroupCommitter.submit` their ready-made rows and await the result; one
writer thread takes everything queued (up to ``max_rows``), commits it in ONE transaction with
:meth:`RowStore.append_batches` and then resolves each batch's future. A batch is therefore
acknowledged only after the commit that contains it returned, and the event loop never blocks
on the disk. If a group fails, its batches are retried one by one, so a single bad batch cannot
fail its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from luanti_tune.errors import StoreUnavailable
from luanti_tune.serve.metrics import IngestMetrics
from luanti_tune.store.rows import CommitResult, EventRow, RowStore

log = logging.getLogger(__name__)

_Item = tuple[Sequence[EventRow], asyncio.Future[CommitResult], asyncio.AbstractEventLoop]


def _resolve(fut: asyncio.Future[CommitResult], result: CommitResult | BaseException) -> None:
    if fut.done():  # the client went away; the commit stands, a retry will see duplicates
        return
    if isinstance(result, BaseException):
        fut.set_exception(result)
    else:
        fut.set_result(result)


class GroupCommitter:
    """One writer thread per store; started on first use, stopped by :meth:`stop`."""

    def __init__(self, store: RowStore, metrics: IngestMetrics | None = None, max_rows: int = 50_000) -> None:
        self.store = store
        self.metrics = metrics
        self.max_rows = max_rows
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    async def submit(self, rows: Sequence[EventRow]) -> CommitResult:
        """Commit ``rows`` (with whatever else is queued) and return this batch's outcome."""
        if self._stopped:
            raise StoreUnavailable("the service is shutting down")
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[CommitResult] = loop.create_future()
        self._queue.put((rows, fut, loop))
        return await fut

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="luanti-tune-commit", daemon=True)
                    self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop the writer thread."""
        self._stopped = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            rows = len(first[0])
            stop = False
            while rows < self.max_rows:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
                rows += len(item[0])
            try:
                self._commit(group)
            except Exception as exc:  # noqa: BLE001 - never leave a waiter hanging
                log.exception("group commit crashed")
                failure = StoreUnavailable(f"commit failed unexpectedly: {exc}")
                for _, fut, loop in group:
                    try:
                        loop.call_soon_threadsafe(_resolve, fut, failure)
                    except RuntimeError:
                        pass
            if stop:
                return

    def _commit(self, group: list[_Item]) -> None:
        t0 = time.perf_counter()
        try:
            results: list[Any] = list(self.store.append_batches([rows for rows, _, _ in group]))
        except Exception as exc:  # noqa: BLE001 - every waiter must get an answer
            if len(group) == 1:
                results = [exc]
            else:
                log.warning("group commit of %d batches failed (%s); retrying them one by one", len(group), exc)
                results = []
                for rows, _, _ in group:
                    try:
                        results.append(self.store.append_batches([rows])[0])
                    except Exception as one_exc:  # noqa: BLE001
                        results.append(one_exc)
        if self.metrics is not None:
            self.metrics.commit_seconds.observe(time.perf_counter() - t0)
            self.metrics.commit_batches.observe(len(group))
        for (_, fut, loop), result in zip(group, results, strict=True):
            try:
                loop.call_soon_threadsafe(_resolve, fut, result)
            except RuntimeError:  # loop closed
                log.debug("event loop closed before a commit result could be delivered")
