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


def _raw(agent: str, tick: Any, pos: dict[str, Any], action: dict[str, Any], **payload: Any) -> dict[str, Any]:
    return {
        "schema": "luanti.event/1",
        "source": "act.test.1",
        "seq": 7,
        "time": {"wall_us": 1_764_150_000_000_000, "game_s": 0.0, "tick": tick},
        "actor": {"kind": "agent", "name": agent},
        "pos": pos,
        "type": "agent.act",
        "payload": {"action": action, **{k: v for k, v in payload.items() if v is not None}},
    }


def _move(agent: str, x: Any, y: Any, z: Any, speed: Any) -> dict[str, Any]:
    return {"agent": agent, "type": "move", "args": {"dir": {"x": x, "y": y, "z": z}, "speed": speed}}


POS = {"x": 1.5, "y": 8.0, "z": -3.25}
TRUSTED = [
    _raw("e-1", 42, POS, _move("e-1", 0.6, 0.0, -0.8, 1.0), model="pursuit", version="3"),
    _raw("e-2", 0, {"x": -0.0, "y": 1e-7, "z": 30000.0}, _move("e-2", 1e-7, -0.0, 0.1 + 0.2, 0.0), model="m"),
    _raw("e-3", 2**40, POS, _move("e-3", 1.06, 1.06, 0.0, 0.5), version="v", fallback="low_confidence"),
    _raw("e-4", 5, POS, {"agent": "e-4", "type": "wait", "args": {"ticks": 1}}, fallback="no_model"),
    _raw("e-5", 5, POS, {"agent": "e-5", "type": "wait", "args": {"ticks": 1000}}, model="m" * 128, version="v" * 64),
]
NAN = float("nan")
UNTRUSTED = {  # not written as they are: the schema decides (accepts the valid ones, coerced)
    "int coordinate (valid)": _raw("e", 1, {"x": 1, "y": 8.0, "z": 0.0}, _move("e", 1.0, 0.0, 0.0, 1.0)),
    "int speed (valid)": _raw("e", 1, POS, _move("e", 1.0, 0.0, 0.0, 1)),
    "other action (valid)": _raw("e", 1, POS, {"agent": "e", "type": "jump", "args": {}}),
    "nan position": _raw("e", 1, {"x": NAN, "y": 8.0, "z": 0.0}, _move("e", 1.0, 0.0, 0.0, 1.0)),
    "nan direction": _raw("e", 1, POS, _move("e", NAN, 0.0, 0.0, 1.0)),
    "infinite direction": _raw("e", 1, POS, _move("e", float("inf"), 0.0, 0.0, 1.0)),
    "long direction": _raw("e", 1, POS, _move("e", 1.07, 1.07, 0.0, 1.0)),
    "speed above 1": _raw("e", 1, POS, _move("e", 1.0, 0.0, 0.0, 1.5)),
    "nan speed": _raw("e", 1, POS, _move("e", 1.0, 0.0, 0.0, NAN)),
    "zero ticks": _raw("e", 1, POS, {"agent": "e", "type": "wait", "args": {"ticks": 0}}),
    "another agent's action (valid)": _raw("e", 1, POS, _move("f", 1.0, 0.0, 0.0, 1.0)),
    "negative tick": _raw("e", -1, POS, _move("e", 1.0, 0.0, 0.0, 1.0)),
    "integral float tick (valid)": _raw("e", 1.0, POS, _move("e", 1.0, 0.0, 0.0, 1.0)),
    "long model name": _raw("e", 1, POS, _move("e", 1.0, 0.0, 0.0, 1.0), model="m" * 129),
    "long fallback reason": _raw("e", 1, POS, _move("e", 1.0, 0.0, 0.0, 1.0), fallback="r" * 65),
    "extra action key": _raw("e", 1, POS, {**_move("e", 1.0, 0.0, 0.0, 1.0), "why": "x"}),
}


@pytest.mark.parametrize("raw", TRUSTED, ids=[r["actor"]["name"] for r in TRUSTED])
def test_trusted_body_is_what_the_schema_serialises(raw: dict[str, Any]) -> None:
    from luanti_tune.inference.decision_log import trusted_body
    from luanti_tune.schemas.event import parse_event
    from luanti_tune.store.rows import event_json

    assert trusted_body(raw) == event_json(parse_event(raw))


@pytest.mark.parametrize("name", list(UNTRUSTED))
def test_anything_else_goes_through_the_schema(name: str) -> None:
    from luanti_tune.inference.decision_log import trusted_body

    assert trusted_body(UNTRUSTED[name]) is None


def test_the_writer_stores_trusted_rows_and_validates_the_rest(store: Any) -> None:
    """Decisions of every kind through a real store: the valid ones read back as the schema's
    events (whichever way they were written), the invalid ones are dropped and counted."""
    from luanti_tune.schemas.event import parse_event

    logger = DecisionLogger(store, sample_rate=1.0, source="act.test.1", flush_every_s=60.0)
    cases = [*TRUSTED, *UNTRUSTED.values()]
    offered: list[LogItem] = []
    for r in cases:
        p = r["payload"]
        item = (r["actor"]["name"], r["time"]["tick"], r["pos"], p["action"])
        offered.append((*item, p.get("model"), p.get("version"), p.get("fallback")))  # type: ignore[arg-type]
    logger.offer(offered)
    logger.close()
    valid = [k for k, r in enumerate(cases) if _valid(r)]
    assert len(valid) == len(TRUSTED) + sum("(valid)" in k for k in UNTRUSTED)
    assert logger.written == len(valid) and logger.dropped == len(cases) - len(valid)
    stored = sorted(acts(store), key=lambda e: e["seq"])
    for k, got in zip(valid, stored, strict=True):
        time_ = {**cases[k]["time"], "wall_us": got["time"]["wall_us"]}
        want = parse_event({**cases[k], "seq": got["seq"], "time": time_})
        got.pop("_id", None)  # the store's row id
        assert parse_event(got) == want


def _valid(raw: dict[str, Any]) -> bool:
    from luanti_tune.schemas.event import parse_event

    try:
        parse_event(raw)
    except ValueError:
        return False
    return True


def test_a_source_the_schema_refuses_turns_the_trusted_rows_off(store: Any) -> None:
    logger = DecisionLogger(store, sample_rate=1.0, source="bad source!")
    assert logger._trusted_source is False
    logger.offer(items("a", 2))
    logger.close()
    assert logger.written == 0 and logger.dropped == 2
