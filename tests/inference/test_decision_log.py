"""The decision log's queue: bounded, drops counted, everything accepted written."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from luanti_tune.inference.decision_log import DecisionLogger, LogItem
from luanti_tune.store.base import EventQuery, open_store


def items(prefix: str, n: int) -> list[LogItem]:
    return [
        (
            f"{prefix}-{i}",
            i,
            {"x": 1.0, "y": 2.0, "z": float(i)},
            {"agent": f"{prefix}-{i}", "type": "wait", "args": {"ticks": 1}},
            "pursuit",
            "v1",
            None,
        )
        for i in range(n)
    ]


class HeldStore:
    """A real store whose first append waits until released (a store that is slow right now)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()

    def append(self, events: Sequence[Any]) -> Any:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(10)
        return self.inner.append(events)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    opened = open_store(f"sqlite:///{tmp_path / 'ev.db'}")
    yield opened
    opened.close()


def acts(store: Any) -> list[dict[str, Any]]:
    return list(store.iter_events(EventQuery(types=("agent.act",))))


def test_full_queue_drops_the_excess_and_writes_the_rest(store: Any) -> None:
    held = HeldStore(store)
    logger = DecisionLogger(held, sample_rate=1.0, max_queue=50, flush_items=40)  # type: ignore[arg-type]
    logger.offer(items("first", 40))  # one full write: the writer takes it and is held in the store
    assert held.entered.wait(10)
    for k in range(3):  # 60 more while the store is held: 50 fit, 10 are dropped
        logger.offer(items(f"more{k}", 20))
    assert logger.dropped == 10
    held.release.set()
    logger.close()
    assert logger.written == 40 + 50
    names = {r["actor"]["name"] for r in acts(store)}
    assert len(names) == 90 and {"first-39", "more0-19", "more1-19", "more2-9"} <= names
    assert "more2-10" not in names  # the dropped ones are the last offered


def test_close_flushes_a_partial_batch(store: Any) -> None:
    logger = DecisionLogger(store, sample_rate=1.0, flush_every_s=60.0)
    logger.offer(items("a", 5))
    logger.offer(items("b", 3))
    logger.close()  # long before the flush interval
    assert logger.written == 8 and logger.dropped == 0
    assert len(acts(store)) == 8


def test_offers_after_close_are_counted_as_dropped(store: Any) -> None:
    logger = DecisionLogger(store, sample_rate=1.0, flush_every_s=0.05)
    logger.offer(items("a", 3))
    logger.close()
    logger.offer(items("late", 5))  # e.g. a request still in flight at shutdown
    logger.close()
    assert logger.written == 3 and logger.dropped == 5
    assert len(acts(store)) == 3
    unused = DecisionLogger(store, sample_rate=1.0)
    unused.close()
    unused.offer(items("b", 2))
    assert unused.dropped == 2 and unused._thread is None


@pytest.mark.parametrize("bad", [{"flush_items": 0}, {"max_queue": 0}])
def test_sizes_below_one_are_refused(store: Any, bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        DecisionLogger(store, **bad)  # type: ignore[arg-type]


def test_small_offers_wait_for_the_timer_and_a_full_write_goes_at_once(store: Any) -> None:
    """Below ``flush_items`` the writer is not woken (it would take the GIL from the engine after
    every batch); the offer that completes a write wakes it, and the timer writes a remainder."""
    logger = DecisionLogger(store, sample_rate=1.0, flush_items=10, flush_every_s=0.6)
    notified = [0]
    notify = logger._cond.notify

    def counted(n: int = 1) -> None:
        notified[0] += 1
        notify(n)

    logger._cond.notify = counted  # type: ignore[method-assign]
    try:
        logger.offer(items("a", 1))  # starts the writer, which then sleeps on its timer
        logger.offer(items("b", 4))
        time.sleep(0.15)
        assert logger.written == 0 and notified[0] == 0  # not woken for these
        t0 = time.monotonic()
        logger.offer(items("c", 5))  # 10 queued: one full write is due now
        assert notified[0] == 1
        while logger.written < 10 and time.monotonic() - t0 < 5:
            time.sleep(0.005)
        assert logger.written == 10 and time.monotonic() - t0 < 0.4
        logger.offer(items("d", 2))  # a remainder: written by the timer
        while logger.written < 12 and time.monotonic() - t0 < 5:
            time.sleep(0.01)
        assert logger.written == 12
    finally:
        logger.close()
    assert len(acts(store)) == 12
