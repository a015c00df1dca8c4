"""OpenAI-compatible chat endpoint served by the NPC dialogue model.

* ``POST /v1/chat/completions`` -- request/response as OpenAI's Chat Completions API, including
  ``stream: true`` (server-sent events, ``data: {chunk}`` lines, then ``data: [DONE]``) and
  ``stream_options.include_usage``. Extensions for NPCs: ``npc`` (top level) or ``metadata.npc``
  names the NPC; ``user`` or ``metadata.player`` names the player. Then the server builds the
  system prompt itself (persona + the player's current context from the store).
* ``GET /v1/models``, ``GET /v1/models/{id}`` -- ``luanti-npc`` (base + champion LoRA adapter) and
  ``luanti-npc:base`` (base model alone).

Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: 400 for invalid
requests (no messages, wrong roles, ``max_tokens`` beyond the limit, prompt too long), 404 for an
unknown model, 413 for an oversized body, 503 when overloaded, 500 when generation fails (the
service keeps serving). Generation happens on the dialogue worker thread, never on the event loop.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from luanti_tune.dialogue.service import (
    Completion,
    DialogueService,
    GenParams,
    Overloaded,
    PromptTooLong,
    UnknownModel,
)
from luanti_tune.errors import ModelError
from luanti_tune.serve.state import get_state

log = logging.getLogger(__name__)

router = APIRouter(tags=["dialogue"])

COMPONENT = "dialogue"
MAX_BODY_BYTES = 256 * 1024
MAX_PROMPT_CHARS = 32 * 1024
NAME_RE = r"^[A-Za-z0-9_.:\-]{1,64}$"
_LOCK = threading.Lock()


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The subset of OpenAI's request we honour; unknown fields are ignored like OpenAI-compatible servers do."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: Annotated[str, Field(pattern=NAME_RE)] | None = None
    npc: Annotated[str, Field(pattern=NAME_RE)] | None = None
    metadata: dict[str, str] | None = None


def openai_error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}, status_code=status
    )


def get_service(request: Request) -> DialogueService:
    """The app's dialogue service, created on first use from the settings (model loads lazily)."""
    state = get_state(request)
    service = state.components.get(COMPONENT)
    if service is None:
        with _LOCK:
            service = state.components.get(COMPONENT)
            if service is None:
                service = _service_from_settings(state)
                state.components[COMPONENT] = service
                state.shutdown_hooks.append(service.close)
    assert isinstance(service, DialogueService)
    return service


class DialogueMetrics:
    """Prometheus metrics of the chat endpoint (names prefixed ``luanti_tune_dialogue_``)."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter(
            "luanti_tune_dialogue_requests", "Chat completion requests by HTTP status.", ["status"], registry=registry
        )
        self.tokens = Counter("luanti_tune_dialogue_completion_tokens", "Generated tokens.", registry=registry)
        buckets = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)
        self.reply = Histogram(
            "luanti_tune_dialogue_reply_seconds", "Generation time per reply.", buckets=buckets, registry=registry
        )
        self.first_token = Histogram(
            "luanti_tune_dialogue_first_token_seconds", "Time to the first token.", buckets=buckets, registry=registry
        )

    def observe(self, status: int, result: Completion | None = None) -> None:
        self.requests.labels(status=str(status)).inc()
        if result is not None:
            self.tokens.inc(result.completion_tokens)
            self.reply.observe(result.seconds)
            if result.first_token_s is not None:
                self.first_token.observe(result.first_token_s)


def get_metrics(request: Request) -> DialogueMetrics:
    state = get_state(request)
    metrics = state.components.get("dialogue_metrics")
    if metrics is None:
        with _LOCK:
            metrics = state.components.get("dialogue_metrics")
            if metrics is None:
                metrics = DialogueMetrics(state.registry)
                state.components["dialogue_metrics"] = metrics
    assert isinstance(metrics, DialogueMetrics)
    return metrics


def _service_from_settings(state: Any) -> DialogueService:
    from luanti_tune.analysis.players import styles_path
    from luanti_tune.registry import Registry

    s = state.settings
    return DialogueService(
        base=s.dialogue_base,
        registry=Registry(s.resolved_model_path),
        store=state.store,
        max_tokens_limit=s.dialogue_max_tokens,
        timeout_s=s.dialogue_timeout_s,
        styles_path=styles_path(s),
    )


def _validation_message(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "literal_error" and loc.endswith("role"):
        return loc, f"Invalid value for '{loc}': role must be one of system, developer, user, assistant"
    return loc, f"Invalid value for '{loc}': {err['msg']}"


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    service = get_service(request)
    data = [
        {"id": m, "object": "model", "created": service.created, "owned_by": "luanti-tune"} for m in service.model_ids()
    ]
    return JSONResponse({"object": "list", "data": data})


@router.get("/v1/models/{model_id}")
async def get_model(model_id: str, request: Request) -> Response:
    service = get_service(request)
    if model_id not in service.model_ids():
        return openai_error(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")
    return JSONResponse({"id": model_id, "object": "model", "created": service.created, "owned_by": "luanti-tune"})


def _parse(raw: bytes) -> ChatRequest | JSONResponse:
    if len(raw) > MAX_BODY_BYTES:
        return openai_error(413, f"Request body is larger than {MAX_BODY_BYTES} bytes", code="request_too_large")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return openai_error(400, f"Request body is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return openai_error(400, "Request body must be a JSON object")
    if "messages" in data and data["messages"] == []:
        return openai_error(400, "'messages' must contain at least one message", param="messages", code="empty_array")
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as exc:
        param, message = _validation_message(exc)
        return openai_error(400, message, param=param)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    response = await _chat(request)
    if not isinstance(response, StreamingResponse):  # streams record themselves when they end
        get_metrics(request).observe(response.status_code, getattr(response, "completion", None))
    return response


async def _chat(request: Request) -> Response:
    parsed = _parse(await request.body())
    if isinstance(parsed, JSONResponse):
        return parsed
    req = parsed
    service = get_service(request)
    try:
        use_adapter = service.uses_adapter(req.model)
    except UnknownModel as exc:
        return openai_error(404, str(exc), param="model", code="model_not_found")
    max_tokens = req.max_completion_tokens or req.max_tokens or service.default_max_tokens
    if max_tokens > service.max_tokens_limit:
        return openai_error(
            400,
            f"max_tokens is too large: {max_tokens}; this model supports at most {service.max_tokens_limit}",
            param="max_tokens",
        )
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages]
    if not any(m["role"] == "user" for m in messages):
        return openai_error(400, "'messages' must contain at least one message with role 'user'", param="messages")
    if sum(len(m["content"]) for m in messages) > MAX_PROMPT_CHARS:
        return openai_error(
            400, f"The messages exceed {MAX_PROMPT_CHARS} characters", param="messages", code="context_length_exceeded"
        )
    meta = req.metadata or {}
    npc = req.npc or meta.get("npc")
    player = meta.get("player") or req.user
    context = None
    if npc:
        messages, ctx = await service.npc_messages(messages, npc, player)
        context = ctx.to_json() if ctx is not None else None
    stops = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    params = GenParams(
        max_tokens=max_tokens,
        temperature=req.temperature if req.temperature is not None else 0.0,
        top_p=req.top_p if req.top_p is not None else 1.0,
        stop=tuple(s for s in stops if s)[:4],
        seed=req.seed,
    )
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return await _streaming(
            service, messages, params, use_adapter, cid, created, req.model, include_usage, get_metrics(request)
        )
    try:
        result = await service.complete(messages, params, use_adapter=use_adapter)
    except PromptTooLong as exc:
        return openai_error(400, str(exc), param="messages", code="context_length_exceeded")
    except Overloaded as exc:
        return openai_error(503, str(exc), type_="server_error", code="overloaded")
    except ModelError as exc:
        return openai_error(503, f"dialogue model unavailable: {exc}", type_="server_error", code="model_unavailable")
    except Exception as exc:
        service.stats["errors"] += 1
        log.exception("dialogue generation failed")
        return openai_error(500, f"generation failed: {type(exc).__name__}: {exc}", type_="server_error")
    result.context = context
    response = JSONResponse(_completion_body(result, cid, created, req.model))
    response.completion = result  # type: ignore[attr-defined]
    return response


def _completion_body(result: Completion, cid: str, created: int, model: str) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": result.adapter or "base",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": result.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": _usage(result),
        "luanti": {"adapter": result.adapter, "context": result.context, "seconds": round(result.seconds, 4)},
    }


def _usage(result: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def _sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


async def _streaming(
    service: DialogueService,
    messages: list[dict[str, str]],
    params: GenParams,
    use_adapter: bool,
    cid: str,
    created: int,
    model: str,
    include_usage: bool,
    metrics: DialogueMetrics,
) -> Response:
    """Start generation; errors before the first chunk still get a proper status code."""
    try:
        gen = service.stream(messages, params, use_adapter=use_adapter)
        first = await gen.__anext__()
    except PromptTooLong as exc:
        return openai_error(400, str(exc), param="messages", code="context_length_exceeded")
    except Overloaded as exc:
        return openai_error(503, str(exc), type_="server_error", code="overloaded")
    except ModelError as exc:
        return openai_error(503, f"dialogue model unavailable: {exc}", type_="server_error", code="model_unavailable")
    except Exception as exc:
        service.stats["errors"] += 1
        log.exception("dialogue generation failed")
        return openai_error(500, f"generation failed: {type(exc).__name__}: {exc}", type_="server_error")

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }

    async def body() -> AsyncIterator[bytes]:
        yield _sse(chunk({"role": "assistant", "content": ""}, None))
        item: Any = first
        try:
            while True:
                if isinstance(item, Completion):
                    metrics.observe(200, item)
                    yield _sse(chunk({}, item.finish_reason))
                    if include_usage:
                        yield _sse({**chunk({}, None), "choices": [], "usage": _usage(item)})
                    break
                yield _sse(chunk({"content": item}, None))
                item = await gen.__anext__()
        except Exception as exc:
            service.stats["errors"] += 1
            metrics.observe(500)
            log.exception("dialogue generation failed while streaming")
            yield _sse(
                {"error": {"message": f"generation failed: {exc}", "type": "server_error", "param": None, "code": None}}
            )
        finally:
            await gen.aclose()
        yield _sse("[DONE]")

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
