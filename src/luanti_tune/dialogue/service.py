"""The dialogue generation service behind ``/v1/chat/completions``.

* Generation runs on ONE dedicated worker thread (``dialogue-gen``, reniced to ``nice``), never on
  the event loop, so ingest and act requests keep being served while a reply is generated;
  requests queue in front of it and are refused (``Overloaded``) beyond ``max_pending``.
* Every request is bounded: ``max_tokens`` <= ``max_tokens_limit``, prompt <= ``max_prompt_tokens``,
  wall time <= ``timeout_s`` (``generate(max_time=...)``; the reply then ends with
  ``finish_reason = "length"``). A client that disconnects from a stream cancels its generation.
* The base model loads lazily on the worker thread (first request or :meth:`start`). The served
  adapter is the registry's ``dialogue`` champion (sha256-verified); the worker polls the
  registry's alias generation (one small file read, at most once a second) and hot-swaps the
  adapter between requests after a promotion or rollback.
* NPC requests (``npc`` given) get the server-side system prompt: the NPC's persona and the
  player's current context from the store (same text as in training, see :mod:`.context`),
  including the player's play-style label when ``styles_path`` names an existing style book.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from luanti_tune.dialogue.context import ContextTracker, PlayerContext, player_styles, system_prompt
from luanti_tune.dialogue.dataset import CONTEXT_TYPES
from luanti_tune.dialogue.personas import Persona, persona_for
from luanti_tune.errors import LuantiTuneError, ModelError

log = logging.getLogger(__name__)

FAMILY = "dialogue"
DEFAULT_MODEL_ID = "luanti-npc"


class UnknownModel(LuantiTuneError):
    """The requested model id is not served here."""


class PromptTooLong(LuantiTuneError):
    """The prompt has more tokens than ``max_prompt_tokens``."""


class Overloaded(LuantiTuneError):
    """Too many generations are queued."""


@dataclass(frozen=True)
class GenParams:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    model: str
    adapter: str | None
    seconds: float
    first_token_s: float | None = None
    context: dict[str, Any] | None = None


@dataclass
class _StreamState:
    """Incremental detokenisation with stop strings; ``emit`` receives text deltas."""

    tokenizer: Any
    emit: Callable[[str], None] | None
    stops: tuple[str, ...]
    ids: list[int] = field(default_factory=list)
    sent: int = 0
    stopped: bool = False
    prompt_seen: bool = False
    first_token_at: float | None = None

    def text(self) -> str:
        return str(self.tokenizer.decode(self.ids, skip_special_tokens=True))

    def _cut(self, text: str) -> tuple[str, bool]:
        hits = [text.find(s) for s in self.stops if s and s in text]
        if hits:
            return text[: min(hits)], True
        return text, False

    def push(self, new_ids: Sequence[int], final: bool = False) -> None:
        if self.first_token_at is None and new_ids:
            self.first_token_at = time.perf_counter()
        self.ids.extend(int(i) for i in new_ids)
        if self.stopped:
            return
        text, hit = self._cut(self.text())
        if hit:
            self.stopped = True
        elif not final:
            if text.endswith("\ufffd"):
                return  # an incomplete multi-byte character: wait for the next token
            hold = max((len(s) for s in self.stops), default=1) - 1
            text = text[: max(self.sent, len(text) - hold)]
        if len(text) > self.sent and self.emit is not None:
            self.emit(text[self.sent :])
        self.sent = max(self.sent, len(text))


class _Streamer:
    """``generate(streamer=...)`` hook (transformers' BaseStreamer protocol: put/end)."""

    def __init__(self, state: _StreamState) -> None:
        self.state = state

    def put(self, value: Any) -> None:
        if not self.state.prompt_seen:  # generate() first pushes the prompt itself
            self.state.prompt_seen = True
            return
        self.state.push(value.reshape(-1).tolist())

    def end(self) -> None:
        self.state.push([], final=True)


class DialogueService:
    """Loads the base model + champion adapter and generates replies on one worker thread."""

    def __init__(
        self,
        base: str = "smollm2",
        *,
        registry: Any = None,
        store: Any = None,
        model_id: str = DEFAULT_MODEL_ID,
        default_max_tokens: int = 64,
        max_tokens_limit: int = 256,
        max_prompt_tokens: int = 1024,
        timeout_s: float = 20.0,
        max_pending: int = 16,
        context_window_events: int = 5_000,
        personas: dict[str, Persona] | None = None,
        poll_interval_s: float = 1.0,
        nice: int = 10,
        threads: int = 1,
        styles_path: Path | None = None,
    ) -> None:
        self.base_name = base
        self.registry = registry
        self.store = store
        self.model_id = model_id
        self.default_max_tokens = default_max_tokens
        self.max_tokens_limit = max_tokens_limit
        self.max_prompt_tokens = max_prompt_tokens
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self.context_window_events = context_window_events
        self.personas = personas
        self.poll_interval_s = poll_interval_s
        self.created = int(time.time())
        self.nice = nice
        self.threads = threads
        self.styles_path = Path(styles_path) if styles_path is not None else None
        self._styles: tuple[float, dict[str, str]] | None = None  # (mtime, labels) of the style book
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="dialogue-gen", initializer=self._init_worker
        )
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._base: Any = None  # BaseModel, loaded on the worker thread
        self._peft: Any = None
        self._adapter: str | None = None
        self._seen_generation: int | None = None
        self._last_poll = 0.0
        self.stats: dict[str, int] = {"requests": 0, "errors": 0, "timeouts": 0, "swaps": 0}

    # ------------------------------------------------------------------ model ids

    def model_ids(self) -> list[str]:
        return [self.model_id, f"{self.model_id}:base"]

    def uses_adapter(self, model: str) -> bool:
        if model == self.model_id:
            return True
        if model == f"{self.model_id}:base":
            return False
        raise UnknownModel(f"The model '{model}' does not exist; available: {', '.join(self.model_ids())}")

    @property
    def adapter_version(self) -> str | None:
        return self._adapter

    @property
    def base_model(self) -> Any:
        """The loaded :class:`~luanti_tune.dialogue.model.BaseModel` (None until the first request)."""
        return self._base

    # ------------------------------------------------------------------ lifecycle (worker thread)

    def start(self) -> None:
        """Load the base model and champion adapter in the background now (optional)."""
        self._executor.submit(self._ensure_loaded)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _init_worker(self) -> None:
        """Bound the generation thread's torch intra-op threads (an OpenMP setting of the calling
        thread: other threads keep theirs) and renice it (Linux nice values are per thread; the
        torch worker threads it starts inherit it), so ingest/act threads win the CPU.

        One thread is the default: on a busy 2-core machine two OpenMP threads decode 4-5x slower
        than one (they wait for each other), and the other core stays free for act requests.
        """
        import torch

        torch.set_num_threads(self.threads)
        if self.nice > 0 and hasattr(os, "setpriority"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
            except OSError as exc:
                log.warning("dialogue: cannot lower the generation thread priority: %s", exc)

    def _ensure_loaded(self) -> None:
        if self._base is None:
            from luanti_tune.dialogue.model import load_base

            self._base = load_base(self.base_name)
        now = time.monotonic()
        if self.registry is not None and now - self._last_poll >= self.poll_interval_s:
            self._last_poll = now
            try:
                gen = self.registry.generation(FAMILY)
                if gen != self._seen_generation:
                    self._swap_to(self.registry.champion_version(FAMILY))
                    self._seen_generation = gen
            except Exception:
                log.exception("dialogue: cannot load the champion adapter; serving the previous one")

    def _swap_to(self, version: str | None) -> None:
        if version == self._adapter:
            return
        if version is None:
            if self._peft is not None and self._adapter is not None:
                self._peft.delete_adapter(self._adapter)
            self._adapter = None
            return
        manifest = self.registry.verify(FAMILY, version)  # sha256 of every file
        arch = manifest.get("architecture") or {}
        if arch.get("base") not in (None, self.base_name):
            raise ModelError(
                f"adapter {FAMILY}:{version} was trained on base {arch.get('base')!r}, not {self.base_name!r}"
            )
        vdir = self.registry.version_dir(FAMILY, version)
        if self._peft is None:
            from peft import PeftModel

            self._peft = PeftModel.from_pretrained(self._base.model, str(vdir), adapter_name=version)
        else:
            self._peft.load_adapter(str(vdir), adapter_name=version)
            self._peft.set_adapter(version)
            if self._adapter is not None:
                self._peft.delete_adapter(self._adapter)
        self._peft.eval()
        log.info("dialogue: serving adapter %s (was %s)", version, self._adapter)
        self._adapter = version
        self.stats["swaps"] += 1

    # ------------------------------------------------------------------ context

    def player_styles(self) -> dict[str, str]:
        """Play-style labels of the style book at ``styles_path`` (re-read when the file changes)."""
        if self.styles_path is None:
            return {}
        try:
            mtime = self.styles_path.stat().st_mtime
        except FileNotFoundError:
            return {}
        if self._styles is None or self._styles[0] != mtime:
            self._styles = (mtime, player_styles(self.styles_path))
        return self._styles[1]

    def player_context(self, player: str) -> PlayerContext:
        """The player's context from their most recent stored events (blocking: call off-loop)."""
        styles = self.player_styles()
        if self.store is None:
            return ContextTracker(styles).context(player)
        from luanti_tune.store.base import EventQuery

        start = max(0, int(self.store.max_id()) - self.context_window_events)
        query = EventQuery(types=CONTEXT_TYPES, actor_name=player, actor_kind="player", after_id=start)
        tracker = ContextTracker(styles)
        tracker.update_all(self.store.iter_events(query))
        return tracker.context(player)

    async def npc_messages(
        self, messages: list[dict[str, str]], npc: str, player: str | None
    ) -> tuple[list[dict[str, str]], PlayerContext | None]:
        """Replace client system messages by the NPC's persona + the player's context."""
        ctx: PlayerContext | None = None
        if player:
            try:
                ctx = await asyncio.to_thread(self.player_context, player)
            except Exception:
                log.exception("dialogue: context lookup for %s failed; answering without it", player)
        system = system_prompt(persona_for(npc, self.personas), ctx)
        rest = [m for m in messages if m["role"] != "system"]
        return [{"role": "system", "content": system}, *rest], ctx

    # ------------------------------------------------------------------ generation

    def _generate_ids(self, model: Any, **kwargs: Any) -> Any:
        return model.generate(**kwargs)

    def _run(
        self,
        messages: list[dict[str, str]],
        params: GenParams,
        use_adapter: bool,
        emit: Callable[[str], None] | None,
        cancel: threading.Event,
    ) -> Completion:
        import contextlib

        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        from luanti_tune.dialogue.lora import encode_prompt

        t0 = time.perf_counter()
        self._ensure_loaded()
        tok = self._base.tokenizer
        ids = encode_prompt(tok, messages)
        if len(ids) > self.max_prompt_tokens:
            raise PromptTooLong(
                f"This model's maximum prompt length is {self.max_prompt_tokens} tokens; the messages have {len(ids)}"
            )

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

        adapter = self._adapter if use_adapter else None
        if self._peft is not None and adapter is not None:
            model, ctx = self._peft, contextlib.nullcontext()
        elif self._peft is not None:
            model, ctx = self._peft, self._peft.disable_adapter()
        else:
            model, ctx = self._base.model, contextlib.nullcontext()
        state = _StreamState(tok, emit, params.stop)
        kwargs: dict[str, Any] = {
            "input_ids": torch.tensor([ids], dtype=torch.long),
            "attention_mask": torch.ones((1, len(ids)), dtype=torch.long),
            "max_new_tokens": params.max_tokens,
            "max_time": self.timeout_s,
            "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            "eos_token_id": tok.eos_token_id,
            "streamer": _Streamer(state),
            "stopping_criteria": StoppingCriteriaList([_Cancelled()]),
        }
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=tok)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        with ctx, torch.inference_mode():
            out = self._generate_ids(model, **kwargs)
        new_ids = out[0, len(ids) :].tolist()
        text, hit = state._cut(state.text())
        elapsed = time.perf_counter() - t0
        ended = bool(new_ids) and new_ids[-1] == tok.eos_token_id
        if hit or ended:
            finish = "stop"
        else:
            finish = "length"
            if elapsed >= self.timeout_s:
                self.stats["timeouts"] += 1
        return Completion(
            text=text.strip() if finish == "stop" else text,
            prompt_tokens=len(ids),
            completion_tokens=len(new_ids),
            finish_reason=finish,
            model=self.model_id if use_adapter else f"{self.model_id}:base",
            adapter=adapter,
            seconds=elapsed,
            first_token_s=(state.first_token_at - t0) if state.first_token_at else None,
        )

    def _acquire(self) -> None:
        with self._pending_lock:
            if self._pending >= self.max_pending:
                raise Overloaded(f"{self._pending} dialogue generations are queued; retry later")
            self._pending += 1
            self.stats["requests"] += 1

    def _release(self, _fut: object = None) -> None:
        with self._pending_lock:
            self._pending -= 1

    def generate_sync(
        self, messages: list[dict[str, str]], params: GenParams, *, use_adapter: bool = True
    ) -> Completion:
        """Blocking generation on the worker thread (CLI, bench)."""
        self._acquire()
        fut = self._executor.submit(self._run, messages, params, use_adapter, None, threading.Event())
        fut.add_done_callback(self._release)
        return fut.result()

    async def complete(self, messages: list[dict[str, str]], params: GenParams, *, use_adapter: bool) -> Completion:
        self._acquire()
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._executor, self._run, messages, params, use_adapter, None, cancel)
        fut.add_done_callback(self._release)
        try:
            return await fut
        except asyncio.CancelledError:
            cancel.set()  # the client went away: stop generating
            raise

    async def stream(
        self, messages: list[dict[str, str]], params: GenParams, *, use_adapter: bool
    ) -> AsyncGenerator[str | Completion, None]:
        """Yield text deltas as they are generated, then the final :class:`Completion`."""
        self._acquire()
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def emit(delta: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ("delta", delta))

        fut = loop.run_in_executor(self._executor, self._run, messages, params, use_adapter, emit, cancel)
        fut.add_done_callback(self._release)
        fut.add_done_callback(lambda f: queue.put_nowait(("done", f)))
        try:
            while True:
                kind, value = await queue.get()
                if kind == "delta":
                    yield value
                else:
                    yield value.result()
                    return
        finally:
            cancel.set()  # client went away (or we finished): stop generating
