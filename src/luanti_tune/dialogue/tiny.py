"""A tiny Llama-architecture chat model and tokenizer built locally (tests and quick runs).

The tokenizer is a byte-level BPE trained on the given texts with ChatML special tokens and the
same chat template as SmolLM2, so everything downstream (prompt building, LoRA, serving) treats
it exactly like the real base model. ``pretrain_steps`` > 0 gives the model a little generic
chat ability first (full-parameter training on generic replies), so that it is a real "base"
that later LoRA fine-tuning must improve on.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|pad|>", "<|im_start|>", "<|im_end|>")


def train_tokenizer(texts: Sequence[str], vocab_size: int = 1024) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` with ChatML special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def tiny_config(vocab_size: int, *, hidden: int = 64, layers: int = 2, heads: int = 4) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )


def generic_examples(examples: Sequence[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """The same prompts paired with the replies of *other* examples (the base model's "pretraining").

    The base learns how NPCs talk (vocabulary, format, end of turn) but not to use the context:
    the facts in its target replies are unrelated to the prompt it sees.
    """
    rng = random.Random(seed)
    replies = [ex["messages"][-1]["content"] for ex in examples]
    rng.shuffle(replies)
    out = []
    for ex, reply in zip(examples, replies, strict=True):
        msgs = [dict(m) for m in ex["messages"]]
        msgs[-1]["content"] = reply
        out.append({**ex, "messages": msgs, "facts": {}})
    return out


def build_tiny_model(
    out_dir: Path,
    examples: Sequence[dict[str, Any]],
    *,
    seed: int = 0,
    vocab_size: int = 1024,
    hidden: int = 64,
    layers: int = 2,
    pretrain_steps: int = 0,
    lr: float = 3e-3,
) -> Path:
    """Build (and optionally pretrain on generic replies) a tiny chat model; save to ``out_dir``."""
    import torch
    from transformers import LlamaForCausalLM

    from luanti_tune.dialogue.lora import LoraTrainConfig, collate, encode_example, token_nll

    texts = [prompt_text_full(ex["messages"]) for ex in examples] + list(CORPUS_EXTRA)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    torch.manual_seed(seed)
    cfg = tiny_config(len(tokenizer), hidden=hidden, layers=layers)
    cfg.pad_token_id = tokenizer.pad_token_id
    cfg.eos_token_id = tokenizer.eos_token_id
    cfg.bos_token_id = tokenizer.bos_token_id
    model = LlamaForCausalLM(cfg)
    if pretrain_steps > 0:
        rng = random.Random(seed)
        generic = generic_examples(examples, seed)
        tcfg = LoraTrainConfig(steps=pretrain_steps, seed=seed)
        encoded = [encode_example(tokenizer, ex["messages"], tcfg.max_len) for ex in generic]
        opt = torch.optim.AdamW(model.parameters(), lr=lr)
        model.train()
        for _ in range(pretrain_steps):
            picked = rng.sample(encoded, min(16, len(encoded)))
            ids, mask, labels = collate(picked, len(picked), int(tokenizer.pad_token_id))[0]
            nll, n = token_nll(model, ids, mask, labels)
            loss = nll / n.clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


CORPUS_EXTRA = (
    "Hello there, how are you today? I am fine, thank you.",
    "It is night. Stay near the light.",
)


def prompt_text_full(messages: Sequence[dict[str, str]]) -> str:
    """ChatML rendering of a whole conversation (tokenizer training text)."""
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
