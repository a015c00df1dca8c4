"""LoRA fine-tuning of a causal LM on chat examples, and the two held-out measures of the gate.

A plain, readable PyTorch loop (PEFT for the adapter): the loss is the next-token NLL on the
assistant reply only (system prompt and player message are context, not targets). Only the LoRA
matrices are trainable; the base weights are frozen and stay bit-identical.

Measures on held-out examples:

* ``loss`` -- mean NLL per reply token (``perplexity = exp(loss)``);
* ``grounding`` -- greedy replies are generated and, for every context fact the reference reply
  uses (held item, last action, place, time of day, hurt, player name), we check whether the
  generated reply mentions it too; the score is the mean fraction over examples that have facts.
  ``grounding_held`` is the same for the held item alone.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraTrainConfig:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    lr: float = 1e-3
    steps: int = 60
    batch_size: int = 8
    max_len: int = 256
    weight_decay: float = 0.0
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


@dataclass
class TrainResult:
    steps: int
    seconds: float
    seconds_per_step: float
    losses: list[float] = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0


def end_text(tokenizer: Any) -> str:
    """The text that closes an assistant turn (``<|im_end|>`` for ChatML models)."""
    return str(tokenizer.eos_token)


def prompt_text(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    return str(tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True))


def encode_prompt(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    return list(tokenizer(prompt_text(tokenizer, messages), add_special_tokens=False)["input_ids"])


def encode_example(tokenizer: Any, messages: Sequence[dict[str, str]], max_len: int) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)``: prompt tokens are masked (-100), the reply and its end token are targets."""
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("a training example must end with the assistant reply")
    p_ids = encode_prompt(tokenizer, messages[:-1])
    c_ids = list(tokenizer(messages[-1]["content"] + end_text(tokenizer), add_special_tokens=False)["input_ids"])
    c_ids = c_ids[:max_len]
    p_ids = p_ids[-max(1, max_len - len(c_ids)) :]
    return p_ids + c_ids, [-100] * len(p_ids) + c_ids


def collate(encoded: list[tuple[list[int], list[int]]], batch_size: int, pad_id: int) -> list[tuple[Any, Any, Any]]:
    import torch

    out = []
    for i in range(0, len(encoded), batch_size):
        chunk = encoded[i : i + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (x, y) in enumerate(chunk):
            ids[row, : len(x)] = torch.tensor(x)
            labels[row, : len(y)] = torch.tensor(y)
            mask[row, : len(x)] = 1
        out.append((ids, mask, labels))
    return out


def token_nll(model: Any, ids: Any, mask: Any, labels: Any) -> tuple[Any, Any]:
    """Sum of NLL over target tokens and their count (shifted next-token prediction)."""
    import torch.nn.functional as F

    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1, :]
    target = labels[:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), reduction="sum")
    return nll, (target != -100).sum()


def add_lora(model: Any, cfg: LoraTrainConfig) -> Any:
    """Wrap ``model`` with a fresh LoRA adapter (base weights frozen); returns the PEFT model."""
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lcfg)


def train_lora(
    peft_model: Any,
    tokenizer: Any,
    examples: Sequence[dict[str, Any]],
    cfg: LoraTrainConfig,
    *,
    progress: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train the LoRA matrices of ``peft_model`` for ``cfg.steps`` optimiser steps."""
    import torch

    if not examples:
        raise ValueError("no training examples")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    encoded = [encode_example(tokenizer, ex["messages"], cfg.max_len) for ex in examples]
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, cfg.steps // 10)
    # linear warm-up, then linear decay to 10% of lr: the last steps settle instead of bouncing
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, 1.0 - 0.9 * max(0, s - warmup) / max(1, cfg.steps - warmup))
    )
    peft_model.train()
    losses: list[float] = []
    order: list[int] = []
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        if len(order) < cfg.batch_size:
            fresh = list(range(len(encoded)))
            rng.shuffle(fresh)
            order += fresh
        picked = [encoded[i] for i in order[: cfg.batch_size]]
        del order[: cfg.batch_size]
        ids, mask, labels = collate(picked, cfg.batch_size, pad_id)[0]
        nll, count = token_nll(peft_model, ids, mask, labels)
        loss = nll / count.clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} at step {step}")
        losses.append(value)
        if progress is not None:
            progress(step + 1, value)
    peft_model.eval()
    seconds = time.perf_counter() - t0
    return TrainResult(
        steps=cfg.steps,
        seconds=seconds,
        seconds_per_step=seconds / max(1, cfg.steps),
        losses=losses,
        trainable_params=int(sum(p.numel() for p in params)),
        total_params=int(sum(p.numel() for p in peft_model.parameters())),
    )


def heldout_loss(model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]], *, batch_size: int = 8) -> float:
    """Mean NLL per reply token over ``examples`` (nan when empty)."""
    import torch

    if not examples:
        return float("nan")
    encoded = [encode_example(tokenizer, ex["messages"], 1024) for ex in examples]
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for ids, mask, labels in collate(encoded, batch_size, pad_id):
            nll, n = token_nll(model, ids, mask, labels)
            total += float(nll)
            count += int(n)
    if was_training:
        model.train()
    return total / max(1, count)


def generate_replies(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[dict[str, str]]],
    *,
    max_new_tokens: int = 40,
    batch_size: int = 8,
) -> list[str]:
    """Greedy replies for a list of chat prompts (batched with left padding)."""
    import torch

    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    out: list[str] = []
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            enc = [encode_prompt(tokenizer, p) for p in prompts[i : i + batch_size]]
            width = max(len(e) for e in enc)
            ids = torch.full((len(enc), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(enc), width), dtype=torch.long)
            for row, e in enumerate(enc):
                ids[row, width - len(e) :] = torch.tensor(e)
                mask[row, width - len(e) :] = 1
            gen = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            for row in range(len(enc)):
                out.append(tokenizer.decode(gen[row, width:], skip_special_tokens=True).strip())
    return out


def grounding_scores(examples: Sequence[dict[str, Any]], replies: Sequence[str]) -> dict[str, float]:
    """``grounding`` (all facts the reference uses) and ``grounding_held`` (held item only)."""
    scores: list[float] = []
    held_hits: list[float] = []
    for ex, reply in zip(examples, replies, strict=True):
        facts: dict[str, str] = ex.get("facts") or {}
        if not facts:
            continue
        low = reply.lower()
        scores.append(sum(1.0 for v in facts.values() if v.lower() in low) / len(facts))
        if "held" in facts:
            held_hits.append(1.0 if facts["held"].lower() in low else 0.0)
    return {
        "grounding": sum(scores) / len(scores) if scores else float("nan"),
        "grounding_held": sum(held_hits) / len(held_hits) if held_hits else float("nan"),
        "grounding_examples": float(len(scores)),
    }


def evaluate(
    model: Any,
    tokenizer: Any,
    heldout: Sequence[dict[str, Any]],
    *,
    max_grounding_examples: int = 32,
    max_new_tokens: int = 40,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Held-out ``loss``, ``perplexity`` and grounding scores (plus a few sample replies)."""
    loss = heldout_loss(model, tokenizer, heldout, batch_size=batch_size)
    sample = [ex for ex in heldout if ex.get("facts")][:max_grounding_examples]
    prompts = [ex["messages"][:-1] for ex in sample]
    replies = generate_replies(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    metrics: dict[str, Any] = {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)) if math.isfinite(loss) else float("nan"),
        "heldout_examples": len(heldout),
        **grounding_scores(sample, replies),
        "samples": [
            {"user": ex["messages"][-2]["content"], "reference": ex["messages"][-1]["content"], "reply": r}
            for ex, r in list(zip(sample, replies, strict=True))[:3]
        ],
    }
    return metrics
