"""``POST /v1/act``: every agent's observation of one server step in, one action per agent out.

Request ``{"observations": [...]}`` (JSON; ``application/msgpack`` accepted too). Response::

    {"actions": [{"agent", "type", "args", ...}, ...], "model": {"name", "version"}}

``actions[i]`` answers ``observations[i]``. The top-level ``model`` decided most agents; an entry
decided by something else (another family's model or a scripted fallback) carries its own
``"model"`` and ``"version"``, and a fallback entry its ``"fallback"`` reason. An agent the
engine could not answer gets ``{"agent", "error": {"loc", "msg"}}`` while the rest are answered.

A malformed request is refused whole with 422 and every offending field named
(``observations[3].pos.x``); with ``?partial=1`` invalid observations become per-agent errors
instead. More than ``act_max_agents`` observations or ``max_batch_bytes`` bytes -> 413.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import Field, TypeAdapter, ValidationError, create_model
from starlette.requests import ClientDisconnect

from luanti_tune.config.settings import Settings
from luanti_tune.inference.batcher import MicroBatcher
from luanti_tune.inference.engine import BatchResult, EngineConfig, InferenceEngine
from luanti_tune.policies.batch import ObservationBatch
from luanti_tune.schemas.agent import Observation
from luanti_tune.schemas.common import Strict
from luanti_tune.serve import wire_rows
from luanti_tune.serve.state import get_state
from luanti_tune.serve.wire import decode_observations
from luanti_tune.serve.wire_columns import (
    ColumnsError,
    columns_to_rows,
    decode_columns,
    decode_untyped,
    is_columns_body,
    render_columns,
)
from luanti_tune.store.base import Store

log = logging.getLogger(__name__)

_OBS: TypeAdapter[Observation] = TypeAdapter(Observation)
#: Bodies the fast decoder refused are validated by pydantic on the event loop up to this size
#: (cheaper than a thread hop), in a worker thread above it. The fast decoder always runs inline.
INLINE_PARSE_BYTES = 32 * 1024
#: Key of a partial-mode row error holding the agent name the invalid row was sent with.
AGENT_AS_SENT = "agent"
MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")


def _is_msgpack(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() in MSGPACK_TYPES


def format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def validation_errors(exc: ValidationError, prefix: Sequence[int | str] = ()) -> list[dict[str, str]]:
    return [
        {"loc": format_loc([*prefix, *e["loc"]]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


class Rejected(Exception):
    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []

    def body(self) -> bytes:
        return orjson.dumps({"error": str(self), "errors": self.errors})


class ActService:
    """The engine, its micro-batcher and request parsing/rendering for ``/v1/act``."""

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        *,
        engine: InferenceEngine | None = None,
        registry: Any = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self._engine = engine
        self.started = False
        self._lock = threading.Lock()
        self._batcher: MicroBatcher | None = None
        self.max_agents = settings.act_max_agents
        self.request_model: Any = create_model(
            "ActRequest",
            __base__=Strict,
            observations=(Annotated[list[Observation], Field(max_length=self.max_agents)], ...),
        )

    # ------------------------------------------------------------------ lifecycle
    @property
    def engine(self) -> InferenceEngine:
        with self._lock:
            if self._engine is None:
                self._engine = build_engine(self.settings, self.store, self.registry)
            return self._engine

    @property
    def batcher(self) -> MicroBatcher:
        engine = self.engine
        with self._lock:
            if self._batcher is None:
                self._batcher = MicroBatcher(
                    engine,
                    window_s=self.settings.act_batch_window_ms / 1000.0,
                    max_agents=self.max_agents,
                    inline_max_s=self.settings.act_inline_max_ms / 1000.0,
                )
            return self._batcher

    def start(self) -> None:
        """Build the engine (load, export and check champions) and start polling for swaps."""
        if self.settings.act_compiled_rows:
            wire_rows.prepare()  # in the background: JSON rows take the struct decoder until it is ready
        self.engine.start()
        self.started = True

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        if self._engine is not None:
            self._engine.close()

    # ------------------------------------------------------------------ parsing
    def parse(self, body: bytes, content_type: str, partial: bool) -> tuple[Sequence[Any], dict[int, dict[str, str]]]:
        """``(observations, errors)``; in partial mode invalid observations are ``None`` + an error.

        Valid requests take the fast wire decoder (:mod:`luanti_tune.serve.wire`, a columnar
        :class:`ObservationBatch`); anything it does not accept goes through the pydantic models,
        which name every offending field (or accept what the fast path left to them).
        """
        fast = self.parse_fast(body, content_type)
        if fast is not None:
            return fast, {}
        return self.parse_slow(body, content_type, partial)

    def parse_fast(self, body: bytes, content_type: str) -> ObservationBatch | None:
        """The observations of a valid request via the fast decoders, else ``None``: JSON rows are
        scanned straight into columns when the compiled scan handles the body
        (:mod:`luanti_tune.serve.wire_rows`), else (and msgpack) decoded into structs."""
        msgpack = _is_msgpack(content_type)
        if not msgpack and self.settings.act_compiled_rows:
            batch = wire_rows.decode_rows(body, max_agents=self.max_agents)
            if batch is not None:
                return batch
        return decode_observations(body, msgpack=msgpack, max_agents=self.max_agents)

    def parse_slow(
        self, body: bytes, content_type: str, partial: bool
    ) -> tuple[Sequence[Any], dict[int, dict[str, str]]]:
        """:meth:`parse` through the pydantic models only (every error named)."""
        is_msgpack = _is_msgpack(content_type)
        try:
            if is_msgpack:
                req = self.request_model.model_validate(self._unpack(body))
            else:
                req = self.request_model.model_validate_json(body)
            return ObservationBatch(list(req.observations)), {}
        except ValidationError as exc:
            errors = validation_errors(exc)
            if any(e["type"] == "too_long" and e["loc"] == "observations" for e in errors):
                raise Rejected(413, f"too many observations: at most {self.max_agents} per request") from None
            if not partial or any(not e["loc"].startswith("observations[") for e in errors):
                raise Rejected(422, "invalid act request", errors) from None
        raw = self._unpack(body) if is_msgpack else self._loads(body)
        return self._validate_rows(raw["observations"])

    @staticmethod
    def _validate_rows(items: list[Any]) -> tuple[list[Any], dict[int, dict[str, str]]]:
        """Each row validated on its own: invalid rows become ``None`` + an error naming the field."""
        obs: list[Any] = []
        bad: dict[int, dict[str, str]] = {}
        for i, item in enumerate(items):
            try:
                obs.append(_OBS.validate_python(item))
            except ValidationError as one:
                errs = validation_errors(one, ("observations", i))
                bad[i] = {"loc": errs[0]["loc"], "msg": "; ".join(f"{e['loc']}: {e['msg']}" for e in errs)[:500]}
                name = item.get("agent") if isinstance(item, dict) else None
                if isinstance(name, str) and len(name) <= 64:
                    bad[i][AGENT_AS_SENT] = name  # answered under the name it was sent with
                obs.append(None)
        return obs, bad

    @staticmethod
    def _loads(body: bytes) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Rejected(400, f"body is not valid JSON: {exc}") from None

    @staticmethod
    def _unpack(body: bytes) -> Any:
        import msgpack

        try:
            return msgpack.unpackb(body, raw=False, strict_map_key=True)
        except Exception as exc:  # noqa: BLE001 - any unpack error is a client error
            raise Rejected(400, f"body is not valid msgpack: {exc}") from None

    def parse_columns(
        self, body: bytes, content_type: str, partial: bool
    ) -> tuple[Sequence[Any], dict[int, dict[str, str]]]:
        """``(observations, errors)`` of a columnar request (:mod:`luanti_tune.serve.wire_columns`).

        An invalid request is refused naming the first bad value; in partial mode a request whose
        columns line up is validated row by row instead (invalid rows: ``None`` + an error).
        """
        is_msgpack = _is_msgpack(content_type)
        try:
            return decode_columns(body, msgpack=is_msgpack, max_agents=self.max_agents), {}
        except ColumnsError as exc:
            if exc.status == 413:
                raise Rejected(413, exc.msg) from None
            if not partial or exc.structural:
                raise Rejected(422, "invalid act request", [_columns_error(exc)]) from None
        try:  # the same parser as decode_columns: what it read, this reads
            raw = decode_untyped(body, msgpack=is_msgpack)
        except Exception as exc:  # noqa: BLE001 - any decode error is a client error
            raise Rejected(400, f"body is not valid {'msgpack' if is_msgpack else 'JSON'}: {exc}") from None
        if type(raw) is not dict or raw.keys() != {"columns"}:  # the row path would refuse it whole too
            extra = sorted(map(str, raw)) if type(raw) is dict else []
            msg = f"the body must be an object with one key, columns (got {extra[:5]})"
            raise Rejected(422, "invalid act request", [{"loc": "body", "msg": msg, "type": "columns"}])
        try:
            rows = columns_to_rows(raw["columns"], self.max_agents)
        except ColumnsError as exc:
            if exc.status == 413:
                raise Rejected(413, exc.msg) from None
            raise Rejected(422, "invalid act request", [_columns_error(exc)]) from None
        return self._validate_rows(rows)

    # ------------------------------------------------------------------ answering
    async def act(self, body: bytes, content_type: str, partial: bool, *, as_json: bool = False) -> Any:
        """The answer to an act request: a dict (``as_json``: its JSON text, which the common
        answer of one model deciding every agent reaches without a dict per agent)."""
        if len(body) > self.settings.max_batch_bytes:
            raise Rejected(413, f"request body larger than {self.settings.max_batch_bytes} bytes")
        if is_columns_body(body, _is_msgpack(content_type)):
            return _answer(await self._act_columns(body, content_type, partial), as_json)
        fast = self.parse_fast(body, content_type)
        obs: Sequence[Any]
        bad: dict[int, dict[str, str]]
        if fast is not None:
            obs, bad = fast, {}
        elif len(body) > INLINE_PARSE_BYTES:
            # off the event loop: /v1/events and other requests keep being served meanwhile
            obs, bad = await run_in_threadpool(self.parse_slow, body, content_type, partial)
        else:
            obs, bad = self.parse_slow(body, content_type, partial)
        if not bad:
            result = await self.batcher.decide(obs)
            return render_json(result, obs) if as_json else render(result, obs)
        good = ObservationBatch([o for o in obs if o is not None])
        result = await self.batcher.decide(good) if len(good) else BatchResult.empty(0)
        return _answer(render(_widen(result, obs, bad), obs), as_json)

    async def _act_columns(self, body: bytes, content_type: str, partial: bool) -> dict[str, Any]:
        if len(body) > INLINE_PARSE_BYTES and partial:
            obs, bad = await run_in_threadpool(self.parse_columns, body, content_type, partial)
        else:
            obs, bad = self.parse_columns(body, content_type, partial)
        if not bad:
            batch = ObservationBatch.of(obs)
            return render_columns(await self.batcher.decide(batch), batch, batch.agents)
        good = ObservationBatch([o for o in obs if o is not None])
        result = await self.batcher.decide(good) if len(good) else BatchResult.empty(0)
        agents = [o.agent if o is not None else bad[i].get(AGENT_AS_SENT) for i, o in enumerate(obs)]
        return render_columns(_widen(result, obs, bad), obs, agents)


def _columns_error(exc: ColumnsError) -> dict[str, str]:
    return {"loc": exc.loc, "msg": exc.msg, "type": "columns"}


def _widen(result: BatchResult, obs: Sequence[Any], bad: dict[int, dict[str, str]]) -> BatchResult:
    """Re-insert the agents refused in partial mode as error entries (indices of the request)."""
    out = result.spread(len(obs), [i for i in range(len(obs)) if i not in bad])
    out.errors.update(bad)
    return out


def _json(answer: dict[str, Any]) -> bytes:
    """An answer's JSON text (the columnar answer holds numpy arrays)."""
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)


def _answer(answer: dict[str, Any], as_json: bool) -> Any:
    """``answer``, or its JSON text when ``as_json``."""
    return _json(answer) if as_json else answer


def _one_model(result: BatchResult, main: Any) -> bool:
    """Whether model ``main`` decided every row: no fallback, no error, no other model (then no
    entry of the answer carries more than its action)."""
    return not result.fallback and not result.errors and result.refs.count(main) == len(result.refs)


def render(result: BatchResult, obs: Sequence[Any]) -> dict[str, Any]:
    main = result.main_ref()
    entries: list[Any] = result.wire()
    fallback = result.fallback
    refs = result.refs
    if not _one_model(result, main):
        items = obs.items if isinstance(obs, ObservationBatch) else obs
        for i, (d, ref) in enumerate(zip(entries, refs, strict=True)):
            if d is None:
                o = items[i]
                error = dict(result.errors.get(i) or {})
                name = o.agent if o is not None else error.get(AGENT_AS_SENT)
                error.pop(AGENT_AS_SENT, None)
                entries[i] = {"agent": name, "error": error or None}
                continue
            if ref != main and ref is not None:
                d["model"] = ref[0]
                d["version"] = ref[1]
            if fallback and i in fallback:
                d["fallback"] = fallback[i]
    return {"actions": entries, "model": {"name": main[0], "version": main[1]} if main else None}


def render_json(result: BatchResult, obs: Sequence[Any]) -> bytes:
    """``orjson.dumps(render(result, obs))``, byte for byte. The common answer (one model decided
    every agent: no fallback, no errors) is written from the decision columns, without a dict
    per agent (about 1 ms less at 1000 agents)."""
    main = result.main_ref()
    if main is None or not _one_model(result, main):
        return _json(render(result, obs))
    model = orjson.dumps({"name": main[0], "version": main[1]})
    return b'{"actions":' + result.wire_json() + b',"model":' + model + b"}"


def build_engine(settings: Settings, store: Store | None, registry: Any = None) -> InferenceEngine:
    """The engine over the settings' model registry, logging decisions into ``store``."""
    from luanti_tune.inference.decision_log import DecisionLogger
    from luanti_tune.inference.registry_source import RegistrySource
    from luanti_tune.registry import Registry

    config = EngineConfig(
        min_confidence=settings.act_min_confidence,
        session_max_agents=settings.act_session_max_agents,
        session_ttl_s=settings.act_session_ttl_s,
        onnx=settings.act_onnx,
        threads=settings.act_threads,
        poll_interval_s=settings.act_poll_s,
        seed=settings.seed,
        export_process=settings.act_export_process,
    )
    logger = DecisionLogger(store, settings.act_log_sample_rate) if store is not None else None
    source = RegistrySource(Registry(settings.resolved_model_path))
    return InferenceEngine(source, config=config, decision_log=logger, registry=registry)


router = APIRouter(tags=["act"])
_create_lock = threading.Lock()


def attach_service(app: Any, service: ActService) -> ActService:
    """Use ``service`` (e.g. around an engine built elsewhere) for ``/v1/act`` of ``app``."""
    state = app.state.luanti
    state.components["act"] = service
    state.shutdown_hooks.append(service.close)
    return service


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Rejected(413, f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _service_of(state: Any) -> ActService:
    """The act service of an app's ``state``, created (not started) on first use."""
    service: ActService | None = state.components.get("act")
    if service is None:
        with _create_lock:
            service = state.components.get("act")
            if service is None:
                service = ActService(state.settings, state.store, registry=state.registry)
                state.components["act"] = service
                state.shutdown_hooks.append(service.close)
    return service


def warm_up(app: Any) -> None:
    """Create and start the app's act service now (load and check champions) instead of on the
    first request; a failure is logged and left to the first request to report."""
    try:
        service = _service_of(app.state.luanti)
        if not service.started:
            service.start()
    except Exception:  # noqa: BLE001 - serving events must not depend on the models loading
        log.exception("act engine warm-up failed")


async def get_service(request: Request) -> ActService:
    """The app's :class:`ActService`, created and started (models loaded) on first use."""
    service = _service_of(get_state(request))
    if not service.started:
        await run_in_threadpool(service.start)
    return service


@router.post("/v1/act")
async def act(request: Request) -> Response:
    """Decide one action per observation (see the module documentation)."""
    service = await get_service(request)
    partial = request.query_params.get("partial", "").lower() in ("1", "true", "yes")
    try:
        body = await _read_body(request, service.settings.max_batch_bytes)
        accept = request.headers.get("accept", "")
        msgpack_answer = any(t in accept for t in MSGPACK_TYPES)
        content_type = request.headers.get("content-type", "")
        payload = await service.act(body, content_type, partial, as_json=not msgpack_answer)
    except Rejected as exc:
        return Response(exc.body(), status_code=exc.status, media_type="application/json")
    except ClientDisconnect:  # the client gave up while sending (e.g. its timeout): nobody to answer
        log.debug("/v1/act client disconnected before its body arrived")
        return Response(status_code=400)
    except Exception as exc:  # noqa: BLE001 - the engine shields model errors; this is a bug: say so
        log.exception("/v1/act failed")
        return Response(orjson.dumps({"error": f"internal error: {type(exc).__name__}"}), status_code=500)
    if msgpack_answer:
        import msgpack

        return Response(msgpack.packb(payload, default=_listed), media_type="application/msgpack")
    return Response(payload, media_type="application/json")


def _listed(value: Any) -> Any:
    """msgpack's fallback for the numpy columns of a columnar answer."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialize {type(value).__name__}")
