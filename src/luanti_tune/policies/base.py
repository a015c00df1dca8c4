"""The contract between model families, the registry, the trainers and the inference engine.

A learned model family is split in three so that the engine can batch and swap runtimes:

* :class:`FamilyAdapter.featurize` turns a batch of observations (plus bounded per-agent
  memory, e.g. a target's recent trajectory) into named float32 numpy arrays;
* a forward function (a ``torch.nn.Module`` or its ONNX Runtime export) maps those arrays to
  named output arrays, one row per agent;
* :class:`FamilyAdapter.decode` turns output rows back into typed actions with a confidence.

For large batches the engine passes an :class:`~luanti_tune.policies.batch.ObservationBatch`
(still a ``Sequence[Observation]``; its columns avoid building an object per agent). The optional
hooks of an adapter are declared on :class:`FamilyAdapter` with defaults that do nothing, and the
engine calls them all: :meth:`~FamilyAdapter.decode_columns` (the decisions as
:class:`~luanti_tune.policies.batch.DecisionColumns` instead of ``decode``'s objects),
:meth:`~FamilyAdapter.warm_up` (called while a model is prepared, before it serves),
:meth:`~FamilyAdapter.example_inputs` (made-up inputs for the export checks),
:meth:`~FamilyAdapter.split_forward` (the module's forward as fixed pre-processing, a learned core
and fixed post-processing, so that ONNX Runtime runs only the core and the cheap elementwise ends
run as compiled loops; the engine checks the split runner against the whole PyTorch module like
any export), :meth:`~FamilyAdapter.target_names` and :meth:`~FamilyAdapter.sightings`.

Scripted policies implement :class:`Policy` directly and serve as baselines and as the
fallback when no model exists, the model errors, or its confidence is low; a policy that decides
a whole batch with array operations overrides :meth:`Policy.decide_columns`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from luanti_tune.schemas.agent import Action, Observation

if TYPE_CHECKING:
    from luanti_tune.policies.batch import DecisionColumns

#: Per-agent memory handed to adapters: ``memory[agent_id]`` is a dict the adapter owns.
#: The engine bounds it (LRU/TTL); adapters must tolerate a missing or fresh entry.
AgentMemory = MutableMapping[str, dict[str, Any]]


@dataclass(frozen=True)
class Decision:
    """One agent's action and how confident the deciding policy is in it (0..1)."""

    action: Action
    confidence: float = 1.0


@dataclass(frozen=True)
class SplitForward:
    """``module(*inputs)`` as ``post(core(pre(inputs)))`` (see the module documentation).

    ``pre(inputs) -> (core_inputs, context)`` and ``post(core_outputs, context) -> outputs`` map
    named arrays (the adapter's input and output names outside, ``core_inputs``/``core_outputs``
    inside); ``core`` is the ``torch.nn.Module`` exported to ONNX, called positionally.
    """

    core: Any
    core_inputs: tuple[str, ...]
    core_outputs: tuple[str, ...]
    pre: Callable[[dict[str, np.ndarray]], tuple[dict[str, np.ndarray], Any]]
    post: Callable[[dict[str, np.ndarray], Any], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Sightings:
    """What agents saw of their targets when they decided (one row per agent with a named target):
    the agents, the server step of each decision, the target's name, its absolute position and the
    velocity the model was given (``[m, 2]`` x/z arrays), and the agent's own position. The engine
    records them (``agent.track`` events) so that training sees exactly what serving saw."""

    agents: Sequence[str]
    ticks: np.ndarray
    targets: Sequence[str]
    target_xz: np.ndarray
    target_vel: np.ndarray
    agent_xz: np.ndarray

    def __len__(self) -> int:
        return len(self.agents)


class Policy(abc.ABC):
    """Anything that decides actions for a batch of observations (all of one kind)."""

    name: str = "policy"
    version: str = "0"

    @abc.abstractmethod
    def decide(self, observations: Sequence[Observation], memory: AgentMemory) -> list[Decision]:
        """One decision per observation, in order."""

    def decide_columns(self, observations: Sequence[Observation], memory: AgentMemory) -> DecisionColumns | None:
        """:meth:`decide`'s decisions as columns, one row per observation; ``None`` (the default):
        the policy decides with :meth:`decide` only."""
        return None


class FamilyAdapter(abc.ABC):
    """Observation <-> tensor translation of one learned model family."""

    family: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    @abc.abstractmethod
    def featurize(self, observations: Sequence[Observation], memory: AgentMemory) -> dict[str, np.ndarray]:
        """Named float32 arrays with a leading batch dimension ``len(observations)``."""

    @abc.abstractmethod
    def decode(self, observations: Sequence[Observation], outputs: dict[str, np.ndarray]) -> list[Decision]:
        """One decision per observation from the forward outputs."""

    def decode_columns(
        self, observations: Sequence[Observation], outputs: dict[str, np.ndarray]
    ) -> DecisionColumns | None:
        """:meth:`decode`'s decisions as columns (no object per agent); ``None`` (the default): the
        engine calls :meth:`decode`."""
        return None

    def warm_up(self) -> None:
        """Prepare what the first batch would otherwise wait for (e.g. compile the family's loops);
        the engine calls it while preparing a model, before the model serves. Default: nothing."""
        return None

    def example_inputs(self, batch: int = 4) -> dict[str, np.ndarray] | None:
        """``batch`` rows of made-up model inputs (named as :attr:`input_names`) for export checks;
        ``None`` (the default): the family has none."""
        return None

    def split_forward(self, module: Any) -> SplitForward | None:
        """``module``'s forward split into fixed ends around a learned core (see
        :class:`SplitForward`); ``None`` (the default): the whole module is exported."""
        return None

    def target_names(self, observations: Sequence[Observation]) -> Sequence[str | None] | None:
        """Each observation's target player (``None``: no named target), so the engine can hand an
        agent to the champion of the player it chases (``pursuit@alice``); ``None`` (the default):
        the family has no per-target models."""
        return None

    def sightings(self) -> Sightings | None:
        """What the last :meth:`featurize` saw of each agent's target, for recording; ``None``
        (the default) when the family has nothing to record."""
        return None
