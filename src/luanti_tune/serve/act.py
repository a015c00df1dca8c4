"""``POST /v1/act``: every agent's observation of one server step in, one action per agent out.

Request: the columnar format the mod sends by default (``{"columns": {...}}``, decoded by
:mod:`luanti_tune.serve.wire_columns` and answered with columns), or rows
``{"observations": [...]}`` (validated by the pydantic models, then decided as columns too);
JSON, or ``application/msgpack``. A rows response::

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
from luanti_tune.inference.engine import EngineConfig, InferenceEngine
from luanti_tune.inference.result import BatchResult
from luanti_tune.policies.batch import ObservationBatch
from luanti_tune.schemas.agent import Observation
from luanti_tune.schemas.common import Strict
from luanti_tune.serve.answer import AGENT_AS_SENT, render, render_columns, render_json
from luanti_tune.serve.state import get_state
from luanti_tune.serve.wire_columns import ColumnsError, columns_to_rows, decode_untyped, is_columns_body, read_columns
from luanti_tune.store.base import Store

log = logging.getLogger(__name__)

_OBS: TypeAdapter[Observation] = TypeAdapter(Observation)
#: Rows bodies (validated by pydantic) are parsed on the event loop up to this size (cheaper than
#: a thread hop), in a worker thread above it; so are columnar bodies in partial mode (validated
#: row by row when invalid). A columnar body otherwise is always decoded inline.
INLINE_PARSE_BYTES = 32 * 1024
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
        self.engine.start()
        self.started = True

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        if self._engine is not None:
            self._engine.close()

    # ------------------------------------------------------------------ parsing
    def parse(self, body: bytes, content_type: str, partial: bool) -> tuple[Sequence[Any], dict[int, dict[str, str]]]:
        """``(observations, errors)`` of a request in either format (:meth:`parse_columns`,
        :meth:`parse_rows`); in partial mode invalid observations are ``None`` + an error."""
        if is_columns_body(body, _is_msgpack(content_type)):
            return self.parse_columns(body, content_type, partial)
        return self.parse_rows(body, content_type, partial)

    def parse_rows(
        self, body: bytes, content_type: str, partial: bool
    ) -> tuple[Sequence[Any], dict[int, dict[str, str]]]:
        """``(observations, errors)`` of a rows request: validated by the pydantic models, which
        name every offending field, then a columnar :class:`ObservationBatch` of them."""
        is_msgpack = _is_msgpack(content_type)
        try:
            if is_msgpack:
                req = self.request_model.model_validate(self._unpack(body))
            else:
                req = self.request_model.model_validate_json(body)
            return ObservationBatch.from_observations(req.observations), {}
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
            return read_columns(body, msgpack=is_msgpack, max_agents=self.max_agents), {}
        except ColumnsError as exc:
            if exc.status == 413:
                raise Rejected(413, exc.msg) from None
            if not partial or exc.structural:
                raise Rejected(422, "invalid act request", [_columns_error(exc)]) from None
        try:  # the same parser as read_columns: what it read, this reads
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
        obs: Sequence[Any]
        bad: dict[int, dict[str, str]]
        if len(body) > INLINE_PARSE_BYTES:
            # off the event loop: /v1/events and other requests keep being served meanwhile
            obs, bad = await run_in_threadpool(self.parse_rows, body, content_type, partial)
        else:
            obs, bad = self.parse_rows(body, content_type, partial)
        if not bad:
            result = await self.batcher.decide(obs)
            return render_json(result, obs) if as_json else render(result, obs)
        result = await self._decide_valid(obs, bad)
        return _answer(render(result, obs), as_json)

    async def _act_columns(self, body: bytes, content_type: str, partial: bool) -> dict[str, Any]:
        if len(body) > INLINE_PARSE_BYTES and partial:
            obs, bad = await run_in_threadpool(self.parse_columns, body, content_type, partial)
        else:
            obs, bad = self.parse_columns(body, content_type, partial)
        if not bad:
            batch = ObservationBatch.of(obs)
            return render_columns(await self.batcher.decide(batch), batch, batch.agents)
        result = await self._decide_valid(obs, bad)
        agents = [o.agent if o is not None else bad[i].get(AGENT_AS_SENT) for i, o in enumerate(obs)]
        return render_columns(result, obs, agents)

    async def _decide_valid(self, obs: Sequence[Any], bad: dict[int, dict[str, str]]) -> BatchResult:
        """The decisions of a partial request's valid observations (as columns), the refused
        ones re-inserted as error entries (indices of the request)."""
        good = ObservationBatch.from_observations([o for o in obs if o is not None])
        result = await self.batcher.decide(good) if len(good) else BatchResult.empty(0)
        out = result.spread(len(obs), [i for i in range(len(obs)) if i not in bad])
        out.errors.update(bad)
        return out


def _columns_error(exc: ColumnsError) -> dict[str, str]:
    return {"loc": exc.loc, "msg": exc.msg, "type": "columns"}


def _answer(answer: dict[str, Any], as_json: bool) -> Any:
    """``answer``, or its JSON text when ``as_json`` (the columnar answer holds numpy arrays)."""
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY) if as_json else answer


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
