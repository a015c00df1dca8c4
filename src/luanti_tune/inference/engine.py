"""The inference engine: one forward pass per model family for a whole batch of agents.

``decide(observations)`` groups observations by kind, runs each group through its family's
featurize -> forward (ONNX Runtime or eager PyTorch) -> decode, and answers agents the model
cannot (no model, model error, low confidence) with a scripted fallback policy. A batch reads the
served model set once, so it never mixes versions; a hot swap replaces that set atomically while
batches in flight finish on the old one.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from luanti_tune.config.settings import Settings
from luanti_tune.inference.decision_log import DecisionLogger, LogItem
from luanti_tune.inference.fallback import ChaseOrWait, default_fallbacks
from luanti_tune.inference.metrics import metrics
from luanti_tune.inference.result import BatchResult, ModelRef
from luanti_tune.inference.runtime import (
    Exported,
    ExportReport,
    RegistryExport,
    Runner,
    checked_runner,
    export_in_subprocess,
    split_of,
)
from luanti_tune.inference.sessions import SessionStore
from luanti_tune.inference.source import ModelCandidate, ModelSource
from luanti_tune.policies.base import Decision, FamilyAdapter, Policy
from luanti_tune.policies.batch import DecisionColumns, ObservationBatch
from luanti_tune.schemas.agent import Observation

log = logging.getLogger(__name__)

__all__ = ["BatchResult", "EngineConfig", "InferenceEngine", "ModelRef", "ModelSet", "ServedModel"]

NO_MODEL = "no_model"
MODEL_ERROR = "model_error"
LOW_CONFIDENCE = "low_confidence"


#: Batches between two refreshes of the sample observations kept per kind (export checks).
RECENT_EVERY = 64


def _setting(name: str) -> Any:
    """The default of :class:`Settings` field ``name`` (the engine's defaults are the service's)."""
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class EngineConfig:
    """How the engine serves; the fields that are settings default to :class:`Settings`' defaults
    (:meth:`from_settings` maps a whole settings object)."""

    min_confidence: float = _setting("act_min_confidence")
    session_max_agents: int = _setting("act_session_max_agents")
    session_ttl_s: float = _setting("act_session_ttl_s")
    onnx: bool = _setting("act_onnx")
    threads: int = _setting("act_threads")
    atol: float = 1e-4
    rtol: float = 1e-3
    check_samples: int = 256
    poll_interval_s: float = _setting("act_poll_s")
    seed: int = _setting("seed")
    #: Move everything alive after a model load into the GC's permanent generation: with torch
    #: and onnxruntime imported, a full collection otherwise stalls a batch for ~100 ms.
    freeze_gc: bool = True
    #: Prepared (exported, checked) models kept for instant swaps back, e.g. on rollback.
    keep_prepared: int = 4
    #: Export registry champions to ONNX in a child process: ``torch.onnx.export`` holds the GIL
    #: for tens of milliseconds at a time, which stalls the batches decided during a swap.
    export_process: bool = _setting("act_export_process")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> EngineConfig:
        """The engine configuration of ``settings`` (``overrides``: other fields)."""
        values: dict[str, Any] = {
            "min_confidence": settings.act_min_confidence,
            "session_max_agents": settings.act_session_max_agents,
            "session_ttl_s": settings.act_session_ttl_s,
            "onnx": settings.act_onnx,
            "threads": settings.act_threads,
            "poll_interval_s": settings.act_poll_s,
            "seed": settings.seed,
            "export_process": settings.act_export_process,
        }
        return cls(**{**values, **overrides})


@dataclass(frozen=True)
class ServedModel:
    family: str
    name: str
    version: str
    adapter: FamilyAdapter
    runner: Runner
    report: ExportReport
    min_confidence: float
    kinds: tuple[str, ...]
    module: Any = None
    #: a per-player champion (``pursuit@alice``) decides only for agents whose target is one of these
    players: tuple[str, ...] = ()

    @property
    def ref(self) -> ModelRef:
        return (self.name, self.version)


@dataclass(frozen=True)
class ModelSet:
    """An immutable snapshot of the served models; replaced as a whole on every swap."""

    generation: int
    revision: Hashable
    by_kind: Mapping[str, ServedModel]
    by_family: Mapping[str, ServedModel]
    #: per-player champions: kind -> target player -> model
    by_player: Mapping[str, Mapping[str, ServedModel]] = field(default_factory=dict)

    @classmethod
    def of(cls, generation: int, revision: Hashable, by_family: Mapping[str, ServedModel]) -> ModelSet:
        by_kind = {k: s for s in by_family.values() if not s.players for k in s.kinds}
        by_player: dict[str, dict[str, ServedModel]] = {}
        for s in by_family.values():
            for k in s.kinds:
                for p in s.players:
                    by_player.setdefault(k, {})[p] = s
        return cls(generation, revision, by_kind, by_family, by_player)


def _row_finite(outputs: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    ok = np.ones(n, dtype=bool)
    for arr in outputs.values():
        a = np.asarray(arr)
        if a.shape[:1] != (n,):
            raise ValueError(f"model output has shape {a.shape}, expected leading dimension {n}")
        if a.size and not np.isfinite(a).all():  # rarely: then find the rows
            ok &= np.isfinite(a.reshape(n, -1)).all(axis=1)
    return ok


def _close(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    return bool(a == b)


def actions_match(a: Sequence[Any], b: Sequence[Any], tol: float = 1e-3) -> bool:
    """Whether two action lists are the same actions (numbers equal within ``tol``)."""
    if len(a) != len(b):
        return False
    return all(x.type == y.type and _close(x.model_dump(), y.model_dump(), tol) for x, y in zip(a, b, strict=True))


def same_actions(a: Sequence[Decision], b: Sequence[Decision], tol: float = 1e-3) -> bool:
    """Whether two decision lists pick the same actions (numbers equal within ``tol``)."""
    return actions_match([d.action for d in a], [d.action for d in b], tol)


class InferenceEngine:
    """Batched decisions with hot swap and fallback. Thread-safe; batches run one at a time."""

    def __init__(
        self,
        source: ModelSource | None = None,
        *,
        config: EngineConfig | None = None,
        fallbacks: Mapping[str, Policy] | None = None,
        decision_log: DecisionLogger | None = None,
        registry: Any = None,
    ) -> None:
        """``registry``: the Prometheus registry for the engine's metrics (default: process-wide)."""
        self.source = source
        self.config = config or EngineConfig()
        self.fallbacks: dict[str, Policy] = dict(default_fallbacks() if fallbacks is None else fallbacks)
        self.last_resort: Policy = ChaseOrWait()
        self.decision_log = decision_log
        self._models = ModelSet(0, None, {}, {})
        self._run_lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._sessions: dict[str, SessionStore] = {}
        self._fb_sessions: dict[str, SessionStore] = {}
        self._recent: dict[str, ObservationBatch] = {}
        self._recent_batches: dict[str, int] = {}  # batches of each kind so far
        self._prepared: OrderedDict[tuple[str, str, str, str], ServedModel] = OrderedDict()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.stats: dict[str, int] = {"batches": 0, "agents": 0, "swaps": 0, "errors": 0}
        self.fallback_counts: dict[str, int] = {}
        self.load_errors: dict[str, str] = {}
        self._m = metrics(registry)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._batch_seconds = self._m.batch_seconds
        self._batch_agents = self._m.batch_agents
        if decision_log is not None:
            decision_log.metrics = self._m
        if source is not None:
            self.refresh(force=True)

    # ------------------------------------------------------------------ model set / hot swap
    @property
    def models(self) -> ModelSet:
        return self._models

    def refresh(self, force: bool = False) -> bool:
        """Reload champions if the source changed; swap atomically. Returns whether it swapped."""
        if self.source is None:
            return False
        with self._build_lock:
            current = self._models
            revision = self.source.revision()
            if not force and revision == current.revision:
                return False
            by_family: dict[str, ServedModel] = {}
            for family in self.source.families():
                try:
                    cand = self.source.load(family)
                except Exception as exc:  # noqa: BLE001 - keep serving what we have
                    self.load_errors[family] = f"{type(exc).__name__}: {exc}"
                    log.error("could not load champion of %s, keeping the served one: %s", family, exc)
                    if family in current.by_family:
                        by_family[family] = current.by_family[family]
                    continue
                if cand is None:
                    continue
                old = current.by_family.get(family)
                key = (family, cand.name, cand.version, cand.identity or f"id:{id(cand.module)}")
                cached = self._prepared.get(key)
                if cached is not None and (cand.identity is not None or cached.module is cand.module):
                    # e.g. a rollback to a recently served version: no re-export needed
                    self._prepared.move_to_end(key)
                    by_family[family] = cached
                    continue
                try:
                    by_family[family] = self._prepared[key] = self._prepare(cand)
                    while len(self._prepared) > self.config.keep_prepared:
                        self._prepared.popitem(last=False)
                except Exception as exc:  # noqa: BLE001
                    self.load_errors[family] = f"{type(exc).__name__}: {exc}"
                    log.error("could not prepare %s %s: %s", family, cand.version, exc)
                    if old is not None:
                        by_family[family] = old
            new = ModelSet.of(current.generation + 1, revision, by_family)
            changed = [
                f for f in set(by_family) | set(current.by_family) if by_family.get(f) is not current.by_family.get(f)
            ]
            self._models = new  # the atomic swap: batches read self._models once
            if self.config.freeze_gc:
                gc.freeze()
            for f in changed:
                self._m.swaps.labels(family=f).inc()
            self.stats["swaps"] += len(changed)
            if changed:
                log.info("serving %s", {f: s.ref for f, s in by_family.items()})
            return True

    def _prepare(self, cand: ModelCandidate) -> ServedModel:
        adapter = cand.adapter
        adapter.warm_up()  # e.g. compile the family's loops now rather than in the first batch
        kinds = cand.served_kinds
        obs_samples = list(cand.sample_observations) or list(self._recent.get(kinds[0], [])[:64])
        rng = np.random.default_rng(self.config.seed)
        if not obs_samples:
            from luanti_tune.inference.synthetic import synthetic_observations

            obs_samples = synthetic_observations(kinds[0], 64, rng, adapter)
        obs_samples = obs_samples[: self.config.check_samples]
        samples: list[dict[str, np.ndarray]] = []
        sample_obs: list[Sequence[Observation]] = []
        if obs_samples:
            feats = adapter.featurize(obs_samples, {})
            samples.append(feats)
            sample_obs.append(obs_samples)
            samples.append({k: v[:1] for k, v in feats.items()})
            sample_obs.append(obs_samples[:1])
            noisy = {k: (v + rng.normal(0, 1, v.shape)).astype(np.float32) for k, v in feats.items()}
            samples.append(noisy)
            sample_obs.append(obs_samples)
        try:
            example = adapter.example_inputs(32)
            if example is not None:
                samples.append({k: np.asarray(v, dtype=np.float32) for k, v in example.items()})
                sample_obs.append([])
        except Exception as exc:  # noqa: BLE001 - optional extra check data
            log.debug("example_inputs of %s failed: %s", cand.family, exc)

        def decisions_match(i: int, ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> bool:
            obs = sample_obs[i]
            if not obs:
                return True
            return same_actions(adapter.decode(obs, ref), adapter.decode(obs, got))

        split = split_of(adapter, cand.module) if self.config.onnx else None
        runner, report = checked_runner(
            cand.module,
            samples,
            adapter.input_names,
            adapter.output_names,
            atol=self.config.atol,
            rtol=self.config.rtol,
            threads=self.config.threads,
            same_decisions=decisions_match,
            prefer_onnx=self.config.onnx,
            exported=self._export_elsewhere(cand, samples, split is not None),
            split=split,
        )
        log.info(
            "prepared %s %s %s: runtime=%s (%s)", cand.family, cand.name, cand.version, report.runtime, report.reason
        )
        thr = self.config.min_confidence if cand.min_confidence is None else cand.min_confidence
        return ServedModel(
            cand.family, cand.name, cand.version, adapter, runner, report, thr, kinds, cand.module, cand.players
        )

    def _export_elsewhere(
        self, cand: ModelCandidate, samples: Sequence[dict[str, np.ndarray]], split: bool
    ) -> Exported | None:
        """The candidate's ONNX graphs exported in a child process (registry champions, when
        configured), or ``None`` to export in this process."""
        root = cand.meta.get("registry_root")
        if not (self.config.export_process and self.config.onnx and root and samples):
            return None
        adapter = cand.adapter
        try:
            job = RegistryExport(
                str(root),
                cand.family,
                cand.version,
                dict(samples[0]),
                adapter.input_names,
                adapter.output_names,
                split=split,
            )
            return export_in_subprocess(job)
        except Exception as exc:  # noqa: BLE001 - the in-process export still works
            log.warning("ONNX export in a child process failed (%s: %s); exporting here", type(exc).__name__, exc)
            return None

    def start(self) -> None:
        """Poll the source for promotions/rollbacks every ``poll_interval_s`` in a daemon thread."""
        if self._poller is not None or self.source is None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self.config.poll_interval_s):
                try:
                    self.refresh()
                except Exception:  # noqa: BLE001
                    log.exception("model refresh failed")

        self._poller = threading.Thread(target=loop, name="act-model-poll", daemon=True)
        self._poller.start()

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(5)
            self._poller = None
        if self.decision_log is not None:
            self.decision_log.close()

    # ------------------------------------------------------------------ deciding
    def _session(self, table: dict[str, SessionStore], kind: str) -> SessionStore:
        s = table.get(kind)
        if s is None:
            s = table[kind] = SessionStore(self.config.session_max_agents, self.config.session_ttl_s)
        return s

    def session_sizes(self) -> dict[str, int]:
        return {f"model:{k}": len(v) for k, v in self._sessions.items()} | {
            f"fallback:{k}": len(v) for k, v in self._fb_sessions.items()
        }

    def decide(self, observations: Sequence[Observation]) -> BatchResult:
        """One decision per observation, in order; see :class:`BatchResult`.

        ``observations`` may be an :class:`ObservationBatch` (e.g. straight from the wire decoder):
        columnar family adapters then never build a Python object per agent.
        """
        t0 = time.perf_counter()
        batch = ObservationBatch.of(observations)
        n = len(batch)
        models = self._models  # one snapshot for the whole batch: never mixes versions
        result = BatchResult.empty(n, models.generation)
        if n == 0:
            return result
        kinds = batch.kinds
        first = kinds[0]
        groups: Mapping[str, Sequence[int]]
        if kinds.count(first) == n:
            groups = {first: range(n)}  # the common case: one kind, no index list
        else:
            by_kind: dict[str, list[int]] = {}
            for i, k in enumerate(kinds):
                by_kind.setdefault(k, []).append(i)
            groups = by_kind
        with self._run_lock:
            for kind, idxs in groups.items():
                obs = batch if len(idxs) == n else batch.take(idxs)
                served = models.by_kind.get(kind)
                scoped = models.by_player.get(kind)
                if scoped:
                    self._run_routed(served, scoped, kind, idxs, obs, result)
                elif served is None:
                    self._fallback(kind, idxs, obs, NO_MODEL, result)
                else:
                    self._run_model(served, kind, idxs, obs, result)
                if served is not None:
                    result.versions[kind] = served.ref
                # sample inputs for checking the next export (a few rows: keeping the whole batch
                # alive would free it inside the next decide), refreshed now and then
                seen = self._recent_batches[kind] = self._recent_batches.get(kind, -1) + 1
                if seen % RECENT_EVERY == 0:
                    self._recent[kind] = obs.take(range(min(len(obs), 64)))
            result.seconds = time.perf_counter() - t0
            self.stats["batches"] += 1
            self.stats["agents"] += n
            if self.decision_log is not None:
                self._log(batch, result)
        self._batch_seconds.observe(result.seconds)
        self._batch_agents.observe(n)
        return result

    def _run_routed(
        self,
        served: ServedModel | None,
        scoped: Mapping[str, ServedModel],
        kind: str,
        idxs: Sequence[int],
        obs: ObservationBatch,
        result: BatchResult,
    ) -> None:
        """Agents whose target has a per-player champion are decided by it, the rest by ``served``
        (or the fallback); one forward pass per model."""
        any_model = next(iter(scoped.values()))
        try:
            names = any_model.adapter.target_names(obs)
        except Exception as exc:  # noqa: BLE001 - a bad observation: the population model sorts it out
            log.debug("target names of %s failed: %s", kind, exc)
            names = None
        groups: dict[int, tuple[ServedModel | None, list[int]]] = {}
        for j, name in enumerate(names if names is not None else [None] * len(idxs)):
            model = scoped.get(name, served) if name is not None else served
            groups.setdefault(id(model), (model, []))[1].append(j)
        for model, js in groups.values():
            sub = obs if len(js) == len(idxs) else obs.take(js)
            sub_idxs = [idxs[j] for j in js]
            if model is None:
                self._fallback(kind, sub_idxs, sub, NO_MODEL, result)
            else:
                self._run_model(model, kind, sub_idxs, sub, result)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once (``labels()`` takes a lock and builds a key)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _run_model(
        self, served: ServedModel, kind: str, idxs: Sequence[int], obs: ObservationBatch, result: BatchResult
    ) -> None:
        sessions = self._session(self._sessions, kind)
        # the same agents as the last batch: the batch takes the last batch's (equal) agents list,
        # so the adapter's own "same agents as last time?" checks compare identical strings
        obs.share_agents(sessions.touch(obs.agents))
        stage = self._m.stage_seconds
        t0 = time.perf_counter()
        try:
            try:
                feats = served.adapter.featurize(obs, sessions)
            except Exception as exc:  # noqa: BLE001 - find the agents whose observation is bad
                try:
                    idxs, obs, feats = self._isolate(served, idxs, obs, sessions, result, exc)
                except Exception as again:  # noqa: BLE001 - no single agent to blame: the family errs
                    log.warning("featurize of %s %s failed: %s", served.name, served.version, again)
                    self._fallback(kind, idxs, obs, MODEL_ERROR, result)
                    return
                if not idxs:
                    return
            if self.decision_log is not None:
                seen = served.adapter.sightings()
                if seen is not None:
                    self.decision_log.offer_sightings(seen)
            m = len(obs)
            t1 = time.perf_counter()
            columns: DecisionColumns | None = None
            decisions: list[Decision] = []
            try:
                outputs = served.runner(feats)
                t2 = time.perf_counter()
                finite = _row_finite(outputs, m)
                columns = served.adapter.decode_columns(obs, outputs)
                if columns is not None:
                    count = len(columns)
                else:
                    decisions = served.adapter.decode(obs, outputs)
                    count = len(decisions)
                t3 = time.perf_counter()
                if count != m:
                    raise ValueError(f"decode returned {count} decisions for {m} observations")
            except Exception as exc:  # noqa: BLE001 - the model errored: scripted policy answers
                log.warning("model %s %s failed on %d agents: %s", served.name, served.version, m, exc)
                self._fallback(kind, idxs, obs, MODEL_ERROR, result)
                return
            fam = served.family
            self._child(stage, fam, "featurize").observe(t1 - t0)
            self._child(stage, fam, "forward").observe(t2 - t1)
            self._child(stage, fam, "decode").observe(t3 - t2)
            self._record(served, kind, idxs, obs, result, finite, columns, decisions)
        finally:
            sessions.enforce()

    def _record(
        self,
        served: ServedModel,
        kind: str,
        idxs: Sequence[int],
        obs: ObservationBatch,
        result: BatchResult,
        finite: np.ndarray,
        columns: DecisionColumns | None,
        decisions: list[Decision],
    ) -> None:
        """Store the model's decisions; non-finite and unsure rows go to the fallback policy."""
        m = len(obs)
        thr = served.min_confidence
        if columns is not None:
            conf = columns.confidence
        else:
            conf = np.fromiter((d.confidence for d in decisions), dtype=np.float64, count=m)
        low = ~(conf >= thr) & finite if thr > 0.0 else np.zeros(m, dtype=bool)
        ok = finite & ~low
        ref = served.ref
        refs = result.refs
        rows = np.arange(m) if idxs == range(m) else np.asarray(idxs, dtype=np.intp)
        if ok.all():
            keep = rows
            if m == len(refs):
                result.refs = [ref] * m
            else:
                for i in idxs:
                    refs[i] = ref
        else:
            keep = rows[ok]
            for i in keep.tolist():
                refs[i] = ref
        if columns is not None:
            if len(keep):  # no empty blocks: readers look rows up in them
                result.blocks.append((keep, columns if len(keep) == m else columns.take(np.flatnonzero(ok))))
        else:
            typed = result.typed
            for i, j in zip(keep.tolist(), np.flatnonzero(ok).tolist(), strict=True):
                typed[i] = decisions[j].action
        self._child(self._m.decisions, served.family, served.runner.kind).inc(len(keep))
        for reason, mask in ((MODEL_ERROR, ~finite), (LOW_CONFIDENCE, low)):
            if mask.any():
                js = np.flatnonzero(mask).tolist()
                self._fallback(kind, [idxs[j] for j in js], obs.take(js), reason, result)

    def _isolate(
        self,
        served: ServedModel,
        idxs: Sequence[int],
        obs: ObservationBatch,
        sessions: SessionStore,
        result: BatchResult,
        exc: Exception,
    ) -> tuple[list[int], ObservationBatch, dict[str, np.ndarray]]:
        """Featurize failed for the batch: answer the agents whose own observation fails with an error."""
        good_i: list[int] = []
        good_j: list[int] = []
        for j, i in enumerate(idxs):
            try:
                served.adapter.featurize(obs.take([j]), {})
            except Exception as one:  # noqa: BLE001
                self._error(result, i, served.family, f"{served.family} cannot use this observation: {one}")
            else:
                good_i.append(i)
                good_j.append(j)
        if not good_i:
            return [], obs.take([]), {}
        if len(good_i) == len(idxs):  # no single agent is to blame: the batch path is broken
            raise exc
        good = obs.take(good_j)
        return good_i, good, served.adapter.featurize(good, sessions)

    def _error(self, result: BatchResult, i: int, family: str, msg: str) -> None:
        result.errors[i] = {"loc": f"observations[{i}]", "msg": msg[:300]}
        result.typed[i] = None
        result.refs[i] = None
        self.stats["errors"] += 1
        self._m.agent_errors.labels(family=family).inc()

    def _fallback(
        self, kind: str, idxs: Sequence[int], obs: Sequence[Observation], reason: str, result: BatchResult
    ) -> None:
        """Rows ``idxs`` (increasing) decided by the kind's scripted policy (else the last resort),
        as one columnar block when the policy decides in columns."""
        policy = self.fallbacks.get(kind, self.last_resort)
        batch = ObservationBatch.of(obs)
        sessions = self._session(self._fb_sessions, kind)
        sessions.touch(batch.agents)
        try:
            try:
                columns, decisions = self._scripted(policy, batch, sessions)
            except Exception as exc:  # noqa: BLE001 - the last resort answers
                if policy is self.last_resort:
                    raise
                log.warning("fallback policy %s failed: %s", policy.name, exc)
                policy = self.last_resort
                columns, decisions = self._scripted(policy, batch, sessions)
        except Exception as exc:  # noqa: BLE001
            for i in idxs:
                self._error(result, i, kind, f"no policy could decide: {exc}")
            return
        finally:
            sessions.enforce()
        ref = (f"scripted:{policy.name}", str(policy.version))
        if columns is not None:
            result.blocks.append((np.asarray(idxs, dtype=np.intp), columns))
        else:
            for i, d in zip(idxs, decisions, strict=True):
                result.typed[i] = d.action
        if len(idxs) == len(result.refs):
            result.refs = [ref] * len(idxs)
        else:
            for i in idxs:
                result.refs[i] = ref
        result.fallback.update(dict.fromkeys(idxs, reason))
        self.fallback_counts[reason] = self.fallback_counts.get(reason, 0) + len(idxs)
        self._child(self._m.fallback, reason, kind).inc(len(idxs))

    @staticmethod
    def _scripted(
        policy: Policy, batch: ObservationBatch, sessions: SessionStore
    ) -> tuple[DecisionColumns | None, list[Decision]]:
        """``policy``'s decisions for ``batch``: columns when it decides in columns, else objects."""
        columns = policy.decide_columns(batch, sessions)
        if columns is not None:
            if len(columns) != len(batch):
                raise ValueError(f"{policy.name} decided {len(columns)} of {len(batch)} agents")
            return columns, []
        decisions = policy.decide(batch, sessions)
        if len(decisions) != len(batch):
            raise ValueError(f"{policy.name} decided {len(decisions)} of {len(batch)} agents")
        return None, decisions

    def _log(self, batch: ObservationBatch, result: BatchResult) -> None:
        assert self.decision_log is not None
        picks = [i for i in self.decision_log.sample(len(batch)) if i not in result.errors]
        if not picks:
            return
        items: list[LogItem] = []
        cols = batch.cols
        for i, action in zip(picks, result.wire_rows(picks), strict=True):
            if action is None:
                continue
            ref = result.refs[i]
            if cols is not None:  # read the columns: no Observation built
                agent, tick = cols.agent[i], int(cols.tick[i])
                x, y, z = cols.pos[i].tolist()
            else:
                o = batch.items[i]
                agent, tick = o.agent, o.tick
                x, y, z = o.pos.x, o.pos.y, o.pos.z
            items.append(
                (
                    agent,
                    tick,
                    {"x": x, "y": y, "z": z},
                    action,
                    ref[0] if ref else None,
                    ref[1] if ref else None,
                    result.fallback.get(i),
                )
            )
        self.decision_log.offer(items)
