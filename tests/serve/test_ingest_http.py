"""POST /v1/events against a real uvicorn subprocess: durability, idempotency, refusals, auth."""

from __future__ import annotations

import copy
import http.client
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from live_server import Server

from luanti_tune.bench.ingest import make_events
from luanti_tune.store import open_store

LIMITS = {
    "LUANTI_TUNE_MAX_BATCH_EVENTS": "50",
    "LUANTI_TUNE_MAX_BATCH_BYTES": "65536",
    "LUANTI_TUNE_MAX_PAYLOAD_BYTES": "2048",
}


def test_retry_stores_nothing_new_and_reports_duplicates(server_factory: Any) -> None:
    server: Server = server_factory()
    batch = make_events("srv1", 0, 40)
    assert server.post_events(batch) == (200, {"accepted": 40, "duplicates": 0})
    assert server.post_events(batch) == (200, {"accepted": 0, "duplicates": 40})
    # a partly new retry, with one event repeated inside the batch
    mixed = batch[30:] + make_events("srv1", 40, 5) + [batch[0]]
    assert server.post_events(mixed) == (200, {"accepted": 5, "duplicates": 11})
    stats = server.stats()
    assert stats["events"] == 45 and stats["sources"] == {"srv1": 45}


def _mutate(field_path: str, value: Any) -> Any:
    def apply(ev: dict[str, Any]) -> None:
        *parents, last = field_path.split(".")
        target = ev
        for p in parents:
            target = target[p]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value

    return apply


_DELETE = object()


def _body(mutate: Any, n: int = 5, bad_index: int = 3) -> bytes:
    events = make_events("bad", 1000, n)
    for ev in events:
        ev["type"] = "player.move"
        ev["payload"] = {"velocity": {"x": 1, "y": 0, "z": 0}, "yaw": 0.5}
    events[bad_index] = copy.deepcopy(events[bad_index])
    mutate(events[bad_index])
    return orjson.dumps({"events": events})


BAD_CASES = [
    ("wrong_type", lambda: _body(_mutate("payload.velocity.x", "fast")), 422, "events[3].payload.velocity.x"),
    ("unknown_type", lambda: _body(_mutate("type", "player.teleport")), 422, "events[3].type"),
    ("missing_source", lambda: _body(_mutate("source", _DELETE)), 422, "events[3].source"),
    ("missing_seq", lambda: _body(_mutate("seq", _DELETE)), 422, "events[3].seq"),
    ("string_seq", lambda: _body(_mutate("seq", "7")), 422, "events[3].seq"),
    ("unknown_field", lambda: _body(_mutate("mood", "happy")), 422, "events[3].mood"),
    ("unknown_payload_field", lambda: _body(_mutate("payload.speed", 3)), 422, "events[3].payload.speed"),
    ("nan", lambda: _body(_mutate("pos.x", 0)).replace(b'"x":0,', b'"x":NaN,', 1), 422, "events[3].pos.x"),
    (
        "infinity",
        lambda: _body(lambda e: None).replace(b'"yaw":0.5', b'"yaw":Infinity', 1),
        422,
        "events[0].payload.yaw",
    ),
    ("malformed_json", lambda: _body(lambda e: None)[:-7], 400, "body"),
    ("not_an_object", lambda: b"[1, 2, 3]", 422, "body"),
    ("missing_events", lambda: b'{"evnts": []}', 422, "events"),
    ("too_many_events", lambda: _body(lambda e: None, n=51), 413, "events"),
    ("body_too_large", lambda: orjson.dumps({"events": [], "pad": "x" * 70_000}), 413, "body"),
    (  # > 32 KB: validated in the worker process, same answer
        "big_batch_one_bad",
        lambda: _body(_mutate("payload.yaw", "north"), n=45, bad_index=40).replace(
            b'"yaw":0.5', b'"yaw":0.5' + b" " * 800
        ),
        422,
        "events[40].payload.yaw",
    ),
    (
        "event_too_large",
        lambda: _body(lambda e: e.update(type="chat.msg", payload={"message": "y" * 3000})),
        413,
        "events[3]",
    ),
]


def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(server_factory: Any) -> None:
    server: Server = server_factory(env=LIMITS, workers=1)
    assert server.post_events(make_events("good", 0, 10))[0] == 200
    before = server.stats()
    failures = []
    for name, make_body, status, loc in BAD_CASES:
        got_status, body = server.request("POST", "/v1/events", make_body())
        locs = [e["loc"] for e in body.get("errors", [])] if isinstance(body, dict) else []
        if got_status != status or loc not in locs or loc not in body["detail"] + " ".join(locs):
            failures.append((name, got_status, body))
    assert not failures, failures
    assert server.stats() == before
    # a lone valid event of the same shape goes through: the refusals were about the bad field only
    assert server.request("POST", "/v1/events", _body(lambda e: None))[0] == 200
    status, text = server.request("GET", "/metrics")
    assert status == 200
    assert f'luanti_tune_event_batches_rejected_total{{reason="invalid"}} {sum(c[2] == 422 for c in BAD_CASES)}' in text


def test_acknowledged_events_survive_kill_9(server_factory: Any, tmp_path: Path) -> None:
    """kill -9 in the middle of a stream: every acknowledged event is stored, none twice, no half batch."""
    server: Server = server_factory()
    acked: list[list[int]] = []
    stop = threading.Event()
    errors: list[BaseException] = []
    batch = 64

    def client(cid: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        i = 0
        while not stop.is_set():
            start = (cid * 1_000_000) + i * batch
            body = orjson.dumps({"events": make_events("kill", start, batch)})
            try:
                conn.request("POST", "/v1/events", body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                payload = orjson.loads(resp.read())
            except (OSError, http.client.HTTPException, orjson.JSONDecodeError):
                return  # the server died under us: this batch was never acknowledged
            if resp.status == 200 and payload["accepted"] == batch:
                acked.append(list(range(start, start + batch)))
            else:
                errors.append(AssertionError(f"unexpected answer {resp.status} {payload}"))
                return
            i += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(3)]
    for t in threads:
        t.start()
    while len(acked) < 40 and all(t.is_alive() for t in threads):
        threading.Event().wait(0.01)
    server.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=20)
    assert not errors, errors
    assert len(acked) >= 40

    # restart on the same file: everything acknowledged is there exactly once
    server2: Server = server_factory()
    stats = server2.stats()
    acked_seqs = {s for b in acked for s in b}
    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    stored = [e["seq"] for e in store.iter_events()]
    store.close()
    assert len(stored) == len(set(stored)) == stats["events"]
    assert acked_seqs <= set(stored)
    # batches are atomic: every stored batch is complete (maybe committed but not yet acknowledged)
    per_batch: dict[int, int] = {}
    for s in stored:
        per_batch[s // batch] = per_batch.get(s // batch, 0) + 1
    assert set(per_batch.values()) == {batch}
    # and a client retrying its unacknowledged batches gets duplicates for what did commit
    last = max(acked, key=lambda b: b[0])
    status, body = server2.post_events(make_events("kill", last[0], batch))
    assert status == 200 and body == {"accepted": 0, "duplicates": batch}


def test_concurrent_overlapping_batches_are_counted_exactly(server_factory: Any) -> None:
    """Group commit: many concurrent clients with overlapping batches; every answer adds up.

    The batches (~35 KB) are validated in a worker process, as the production default does."""
    server: Server = server_factory(workers=1)
    answers: list[dict[str, int]] = []
    lock = threading.Lock()

    def client(cid: int) -> None:
        for i in range(10):
            start = ((cid + i) % 6) * 50  # clients collide on the same seq ranges
            status, body = server.post_events(make_events("overlap", start, 100))
            assert status == 200, body
            with lock:
                answers.append(body)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 60
    assert sum(a["accepted"] + a["duplicates"] for a in answers) == 6000
    unique = len({s for c in range(6) for i in range(10) for s in range(((c + i) % 6) * 50, ((c + i) % 6) * 50 + 100)})
    assert sum(a["accepted"] for a in answers) == unique == server.stats()["events"]
    status, text = server.request("GET", "/metrics")
    accepted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("luanti_tune_events_accepted_total{")
    )
    duplicates = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("luanti_tune_events_duplicate_total{")
    )
    assert (accepted, duplicates) == (unique, 6000 - unique)
    assert "luanti_tune_event_commit_seconds_count" in text and "luanti_tune_event_batch_size_bucket" in text


def test_token_required_off_loopback(server_factory: Any, tmp_path: Path) -> None:
    from luanti_tune.bench.ingest import start_server

    with pytest.raises(Exception, match="token"):
        start_server(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, host="0.0.0.0")
    server: Server = server_factory(env={"LUANTI_TUNE_TOKEN": "s3cret"}, host="0.0.0.0")
    events = make_events("auth", 0, 3)
    status, body = server.post_events(events)
    assert status == 401 and "token" in body["detail"]
    assert server.post_events(events, {"Authorization": "Bearer wrong"})[0] == 401
    assert server.request("GET", "/v1/events/stats")[0] == 401
    assert server.request("GET", "/metrics")[0] == 401
    assert server.request("GET", "/healthz")[0] == 200
    assert server.post_events(events, {"Authorization": "Bearer s3cret"}) == (200, {"accepted": 3, "duplicates": 0})
