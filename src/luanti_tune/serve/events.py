"""``POST /v1/events`` (durable, idempotent batch ingest) and ``GET /v1/events/stats``.

The whole body is validated in one pass by pydantic-core (``EventBatch.model_validate_json``).
Any problem refuses the whole batch with a 4xx whose body names each offending field as
``events[3].payload.velocity.x``; nothing is stored. A valid batch is answered only after the
transaction holding it committed (group commit, see :mod:`luanti_tune.serve.committer`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import multiprocessing
import os
import sys
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import ValidationError

from luanti_tune.errors import StoreUnavailable
from luanti_tune.schemas.agent import ACTION_TYPES
from luanti_tune.schemas.event import EVENT_TYPES, EventBase, EventBatch
from luanti_tune.serve.state import AppState, get_state
from luanti_tune.store.rows import CommitResult, EventRow, RowStore, count_types

log = logging.getLogger(__name__)

router = APIRouter(tags=["events"])

_EVENT_TYPES = frozenset(EVENT_TYPES)
_ACTION_TYPES = frozenset(ACTION_TYPES)
INT64_MAX = 2**63 - 1
#: Bodies above this size are validated in a worker thread so the event loop stays responsive.
_INLINE_VALIDATE_BYTES = 512 * 1024
#: Bodies at least this big go to the validation worker processes when there are any.
POOL_MIN_BYTES = 32 * 1024
_VALIDATOR_KEY = "ingest.validator"
#: Generation-0 collection threshold in validation workers (CPython default: 700). Validating a
#: batch allocates ~10 short-lived objects per event, and no reference cycles.
WORKER_GC_THRESHOLD_GEN0 = 50_000


class BadBatch(Exception):
    """A refused batch: HTTP ``status``, a summary and ``[{"loc", "msg", "type"}]`` items."""

    def __init__(self, status: int, reason: str, detail: str, errors: list[dict[str, str]]) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.errors = errors


def json_response(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def format_loc(loc: Sequence[int | str]) -> str:
    """``('events', 3, 'player.move', 'payload', 'x')`` -> ``events[3].payload.x`` (union tags dropped)."""
    out = ""
    prev: int | str | None = None
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif (i == 2 and isinstance(prev, int) and part in _EVENT_TYPES) or (
            prev == "action" and part in _ACTION_TYPES
        ):
            pass  # discriminated-union tag, not a field
        else:
            out += f".{part}" if out else str(part)
        prev = part
    return out or "body"


def _validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    errors = []
    for e in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = list(e["loc"])
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc.append("type")
        errors.append({"loc": format_loc(loc), "msg": e["msg"], "type": e["type"]})
    return errors


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything above ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadBatch(
            413,
            "too_large",
            f"request body of {declared} bytes exceeds max_batch_bytes={limit}",
            [{"loc": "body", "msg": f"larger than {limit} bytes", "type": "too_large"}],
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadBatch(
                413,
                "too_large",
                f"request body exceeds max_batch_bytes={limit}",
                [{"loc": "body", "msg": f"larger than {limit} bytes", "type": "too_large"}],
            )
        chunks.append(chunk)
    return b"".join(chunks)


def parse_batch(body: bytes, max_events: int, max_event_bytes: int) -> list[EventRow]:
    """Validate a request body into stored rows, or raise :class:`BadBatch` naming every bad field."""
    if not body.strip():
        raise BadBatch(
            400, "malformed", 'empty body: expected {"events": [...]}', [_err("body", "empty body", "json_invalid")]
        )
    try:
        batch = EventBatch.model_validate_json(body)
    except ValidationError as exc:
        errors = _validation_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            raise BadBatch(400, "malformed", f"malformed JSON: {errors[0]['msg']}", errors) from None
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise BadBatch(422, "invalid", f"{first['loc']}: {first['msg']}{more}", errors) from None
    events: list[EventBase] = batch.events
    if len(events) > max_events:
        raise BadBatch(
            413,
            "too_large",
            f"batch of {len(events)} events exceeds max_batch_events={max_events}",
            [_err("events", f"more than {max_events} events", "too_large")],
        )
    return _rows(events, max_event_bytes)


def parse_outcome(body: bytes, max_events: int, max_event_bytes: int) -> tuple[Any, ...]:
    """:func:`parse_batch` as a picklable value (for worker processes): ``("ok", rows)`` or
    ``("bad", status, reason, detail, errors)``."""
    try:
        return ("ok", parse_batch(body, max_events, max_event_bytes))
    except BadBatch as bad:
        return ("bad", bad.status, bad.reason, bad.detail, bad.errors)


def _warm(_: int = 0) -> int:
    return os.getpid()


def _init_worker(parent: int | None = None) -> None:
    """Validation worker set-up: import the schemas, then keep the collector off the start-up objects.

    With the default thresholds the collector ran every 700 allocations and its full passes walked
    every module-level object: ~25% of a worker's CPU per event. ``gc.freeze`` moves what exists
    now into the permanent generation; batches allocated later are still collected.

    ``parent``: the service's pid. A worker that starts up after the service died (killed while
    this worker was still booting, before it could ask for the death signal) exits here: it would
    otherwise wait forever on a task queue whose other end its sibling workers keep open.
    """
    gc.freeze()
    gc.set_threshold(WORKER_GC_THRESHOLD_GEN0, 20, 20)
    exit_with_parent()
    if parent is not None and os.getppid() != parent:
        os._exit(0)


def exit_with_parent() -> None:
    """Linux: this process gets SIGTERM when its parent dies (a ``kill -9``'d service leaves no
    orphaned workers). Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError) as exc:  # pragma: no cover - no prctl: workers may outlive a killed parent
        log.debug("prctl(PR_SET_PDEATHSIG) unavailable: %s", exc)


class Validator:
    """Validates bodies inline, or in ``workers`` processes for big bodies (the GIL-free path).

    pydantic-core validation holds the GIL, so one process tops out at one core; big batches go
    to a spawn-context process pool and the event loop only moves bytes and rows.
    """

    def __init__(self, workers: int = 0, min_pool_bytes: int = POOL_MIN_BYTES) -> None:
        self.workers = workers
        self.min_pool_bytes = min_pool_bytes
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),)
            )
        return self._pool

    def warm_up(self) -> None:
        """Start the worker processes now rather than on the first big batch."""
        if self.workers:
            pool = self._ensure_pool()
            list(pool.map(_warm, range(self.workers)))

    async def parse(self, body: bytes, max_events: int, max_event_bytes: int) -> list[EventRow]:
        if self.workers and len(body) >= self.min_pool_bytes:
            loop = asyncio.get_running_loop()
            try:
                outcome = await loop.run_in_executor(
                    self._ensure_pool(), parse_outcome, body, max_events, max_event_bytes
                )
            except concurrent.futures.process.BrokenProcessPool:
                log.warning("validation worker died; restarting the pool, validating this batch inline")
                self.close()
                outcome = parse_outcome(body, max_events, max_event_bytes)
        elif len(body) > _INLINE_VALIDATE_BYTES:
            outcome = await run_in_threadpool(parse_outcome, body, max_events, max_event_bytes)
        else:
            outcome = parse_outcome(body, max_events, max_event_bytes)
        if outcome[0] == "bad":
            raise BadBatch(*outcome[1:])
        rows: list[EventRow] = outcome[1]
        return rows

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def configure_validation(state: AppState, workers: int) -> Validator:
    """Use ``workers`` validation processes for big batches in this app (0 = validate inline)."""
    old = state.components.get(_VALIDATOR_KEY)
    if isinstance(old, Validator):
        old.close()
    validator = Validator(workers)
    state.components[_VALIDATOR_KEY] = validator
    state.shutdown_hooks.append(validator.close)
    return validator


def _validator(state: AppState) -> Validator:
    validator = state.components.get(_VALIDATOR_KEY)
    if not isinstance(validator, Validator):
        validator = configure_validation(state, 0)
    return validator


def _err(loc: str, msg: str, type_: str) -> dict[str, str]:
    return {"loc": loc, "msg": msg, "type": type_}


def _rows(events: list[EventBase], max_event_bytes: int) -> list[EventRow]:
    """The rows as plain tuples in :class:`EventRow` order: they pickle ~3x faster than NamedTuples
    (for the validation workers) and stores and ``count_types`` index them positionally."""
    rows: list[Any] = []
    append = rows.append
    errors: list[dict[str, str]] = []
    status = 422
    for i, ev in enumerate(events):
        # the serializer directly (what model_dump_json wraps): bytes are also the size to check
        raw: bytes = ev.__pydantic_serializer__.to_json(ev, by_alias=True, exclude_none=True)
        if len(raw) > max_event_bytes:
            errors.append(
                _err(
                    f"events[{i}]", f"event is {len(raw)} bytes, over max_payload_bytes={max_event_bytes}", "too_large"
                )
            )
            status = 413
            continue
        seq = ev.seq
        wall_us = ev.time.wall_us
        episode = ev.episode_id
        actor = ev.actor
        # limits of the store's 64-bit integer columns / PostgreSQL text columns
        if seq > INT64_MAX or wall_us > INT64_MAX or (episode is not None and "\x00" in episode):
            errors.extend(_limit_errors(i, ev))
        append((ev.source, seq, ev.type, wall_us, actor.kind, actor.name, episode, raw.decode()))  # type: ignore[attr-defined]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise BadBatch(
            status, "too_large" if status == 413 else "invalid", f"{first['loc']}: {first['msg']}{more}", errors
        )
    return rows


def _limit_errors(i: int, ev: EventBase) -> list[dict[str, str]]:
    errors = []
    if ev.seq > INT64_MAX:
        errors.append(_err(f"events[{i}].seq", f"must be <= {INT64_MAX}", "less_than_equal"))
    if ev.time.wall_us > INT64_MAX:
        errors.append(_err(f"events[{i}].time.wall_us", f"must be <= {INT64_MAX}", "less_than_equal"))
    if ev.episode_id is not None and "\x00" in ev.episode_id:
        errors.append(_err(f"events[{i}].episode_id", "must not contain NUL characters", "string_pattern_mismatch"))
    return errors


def _types_of_raw(body: bytes) -> dict[str, int]:
    """Best-effort event types of a refused body, for the ``rejected`` counter."""
    try:
        data = orjson.loads(body)
        events = data.get("events") if isinstance(data, dict) else None
    except orjson.JSONDecodeError:
        return {"unknown": 1}
    if not isinstance(events, list) or not events:
        return {"unknown": 1}
    counts: dict[str, int] = {}
    for ev in events:
        t = ev.get("type") if isinstance(ev, dict) else None
        key = t if isinstance(t, str) and t in _EVENT_TYPES else "unknown"
        counts[key] = counts.get(key, 0) + 1
    return counts


@router.post("/v1/events")
async def post_events(request: Request) -> Response:
    """Store a batch ``{"events": [...]}`` durably; answers ``{"accepted": n, "duplicates": m}``."""
    state = get_state(request)
    settings = state.settings
    metrics = state.ingest_metrics
    body = b""
    try:
        body = await read_body(request, settings.max_batch_bytes)
        rows = await _validator(state).parse(body, settings.max_batch_events, settings.max_payload_bytes)
    except BadBatch as bad:
        metrics.batches_rejected.labels(bad.reason).inc()
        metrics.add(metrics.rejected, _types_of_raw(body) if body else {"unknown": 1})
        metrics.add(metrics.received, _types_of_raw(body) if body else {})
        return json_response({"detail": bad.detail, "errors": bad.errors}, bad.status)

    types = count_types(rows)
    metrics.add(metrics.received, types)
    try:
        result = await _commit(state, rows)
    except StoreUnavailable as exc:
        metrics.batches_rejected.labels("store_unavailable").inc()
        metrics.add(metrics.rejected, types)
        log.warning("refusing a batch of %d events: %s", len(rows), exc)
        return json_response({"detail": f"event store unavailable, nothing stored; retry later: {exc}"}, 503)
    metrics.batch_size.observe(len(rows))
    metrics.add(metrics.accepted, result.accepted_by_type)
    if result.duplicates:
        metrics.add(metrics.duplicate, {t: n - result.accepted_by_type.get(t, 0) for t, n in types.items()})
    return json_response({"accepted": result.accepted, "duplicates": result.duplicates})


async def _commit(state: Any, rows: list[EventRow]) -> CommitResult:
    if state.committer is not None:
        result: CommitResult = await state.committer.submit(rows)
        return result
    # a Store without batch support: one append per request, in a worker thread
    from luanti_tune.schemas.event import parse_event

    events = [parse_event(orjson.loads(r[7])) for r in rows]
    plain = await run_in_threadpool(state.store.append, events)
    return CommitResult(plain.accepted, plain.duplicates, count_types(rows) if not plain.duplicates else {})


@router.get("/v1/events/stats")
async def events_stats(request: Request) -> Response:
    """``{"events": total, "by_type": {...}, "sources": {...}, "max_id": n}``."""
    state = get_state(request)
    s = await run_in_threadpool(state.store.stats)
    return json_response({"events": s.events, "by_type": s.by_type, "sources": s.sources, "max_id": s.max_id})


def supports_group_commit(store: object) -> bool:
    return isinstance(store, RowStore)
