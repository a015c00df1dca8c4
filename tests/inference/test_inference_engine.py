"""Engine behaviour: offline parity, ONNX vs PyTorch, fallbacks, per-agent errors, bounded memory, logging."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from toyfamily import ToyAdapter, make_candidate, make_module, observations

from luanti_tune.inference.engine import EngineConfig, InferenceEngine, same_actions
from luanti_tune.inference.runtime import TorchRunner, checked_runner
from luanti_tune.inference.sessions import SessionStore
from luanti_tune.inference.source import ModelCandidate, StaticModelSource
from luanti_tune.policies.batch import ObservationBatch
from luanti_tune.schemas.agent import Observation


def offline(module: torch.nn.Module, obs: list[Observation], memory: dict | None = None) -> list:
    """The model's own prediction: featurize -> eager torch -> decode, outside the engine."""
    adapter = ToyAdapter()
    feats = adapter.featurize(obs, {} if memory is None else memory)
    with torch.no_grad():
        logits = module(torch.from_numpy(feats["x"])).numpy()
    return adapter.decode(obs, {"logits": logits})


@pytest.fixture(scope="module")
def toy_engine() -> InferenceEngine:
    return InferenceEngine(StaticModelSource([make_candidate(1)]), fallbacks={})


def test_engine_action_equals_offline_prediction_over_several_steps(toy_engine: InferenceEngine) -> None:
    served = toy_engine.models.by_kind["pursuit"]
    assert served.report.runtime == "onnx", served.report
    module = make_module(1)
    memory: dict = {}
    for step in range(3):  # per-agent memory (target deltas) must evolve identically
        obs = observations(300, seed=100 + step)
        got = toy_engine.decide(obs)
        want = offline(module, obs, memory)
        assert not got.errors and not got.fallback
        assert [a.model_dump() for a in got.actions] == [d.action.model_dump() for d in want]
        assert set(got.refs) == {("toy-pursuit", "v1")}
    # the check is not vacuous: the model does pick different actions for different agents
    assert len({a.model_dump_json() for a in got.actions}) > 2


def test_onnx_runtime_and_pytorch_pick_the_same_actions_on_a_test_set() -> None:
    adapter = ToyAdapter()
    for seed in (1, 2, 3):
        module = make_module(seed)
        obs = observations(500, seed=seed)
        feats = adapter.featurize(obs, {})
        runner, report = checked_runner(module, [feats], adapter.input_names, adapter.output_names)
        assert report.runtime == "onnx" and runner.kind == "onnx"
        test_obs = observations(2000, seed=1000 + seed)
        test = adapter.featurize(test_obs, {})
        torch_out = TorchRunner(module, adapter.input_names, adapter.output_names)(test)
        onnx_out = runner(test)
        assert same_actions(adapter.decode(test_obs, torch_out), adapter.decode(test_obs, onnx_out))
        assert np.array_equal(torch_out["logits"].argmax(1), onnx_out["logits"].argmax(1))


class BranchyNet(torch.nn.Module):
    """Data-dependent control flow: tracing bakes in one branch, so the ONNX graph is wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = make_module(5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        if bool(x[0, 0] > 0):
            return y
        return -y


def test_export_that_differs_from_pytorch_falls_back_to_pytorch() -> None:
    adapter = ToyAdapter()
    feats = adapter.featurize(observations(64, seed=9), {})
    feats["x"][0, 0] = 1.0  # trace takes the "y" branch; other samples flip it
    other = {"x": feats["x"].copy()}
    other["x"][0, 0] = -1.0
    runner, report = checked_runner(BranchyNet(), [feats, other], adapter.input_names, adapter.output_names)
    assert report.exported and report.runtime == "torch" and runner.kind == "torch"
    assert "differs" in (report.reason or "")


class NaNForSome(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = make_module(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        bad = (x[:, 3] > 3.0).unsqueeze(1)  # target far to +x: NaN row
        return torch.where(bad, torch.full_like(y, float("nan")), y)


class Exploding(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 100:
            raise RuntimeError("boom")
        return torch.zeros(x.shape[0], 9)


def test_fallbacks_are_counted_by_reason() -> None:
    obs = observations(400, seed=3)
    # no model at all
    eng = InferenceEngine(StaticModelSource([]), config=EngineConfig(onnx=False))
    r = eng.decide(obs)
    assert set(r.fallback.values()) == {"no_model"} and len(r.fallback) == 400
    assert all(a is not None for a in r.actions) and r.refs[0][0].startswith("scripted:")
    assert eng.fallback_counts == {"no_model": 400}

    # non-finite outputs for some rows: only those agents fall back
    cand = ModelCandidate("pursuit", "nan", "v1", NaNForSome(), ToyAdapter())
    eng = InferenceEngine(StaticModelSource([cand]), config=EngineConfig(onnx=False))
    r = eng.decide(obs)
    far = {i for i, o in enumerate(obs) if o.entities[0].rel.x > 3.0}
    assert far and len(far) < len(obs)
    assert set(r.fallback) == far and set(r.fallback.values()) == {"model_error"}
    assert all(r.refs[i] == ("nan", "v1") for i in range(len(obs)) if i not in far)

    # model raises: the whole group is answered by the scripted policy
    cand = ModelCandidate("pursuit", "boom", "v1", Exploding(), ToyAdapter())
    eng = InferenceEngine(StaticModelSource([cand]), config=EngineConfig(onnx=False))
    r = eng.decide(obs)
    assert len(r.fallback) == 400 and set(r.fallback.values()) == {"model_error"}
    assert eng.fallback_counts == {"model_error": 400}
    assert eng.decide(obs[:50]).fallback == {}  # small batches still run on the model

    # low confidence: threshold from the candidate (manifest) overrides the engine's
    module = make_module(1)
    eng = InferenceEngine(StaticModelSource([make_candidate(1, min_confidence=0.6)]), config=EngineConfig(onnx=False))
    r = eng.decide(obs)
    conf = [d.confidence for d in offline(module, obs)]
    low = {i for i, c in enumerate(conf) if c < 0.6}
    assert low and len(low) < len(obs)
    assert set(r.fallback) == low and set(r.fallback.values()) == {"low_confidence"}


def test_fallback_metric_is_exported() -> None:
    from prometheus_client import REGISTRY

    before = REGISTRY.get_sample_value("fallback_total", {"reason": "no_model", "family": "team"}) or 0.0
    InferenceEngine(None).decide(observations(7, kind="team"))
    assert REGISTRY.get_sample_value("fallback_total", {"reason": "no_model", "family": "team"}) == before + 7


class PickyAdapter(ToyAdapter):
    def featurize(self, observations, memory):  # type: ignore[no-untyped-def]
        for o in observations:
            if o.agent.startswith("bad"):
                raise ValueError("this family needs a visible target")
        return super().featurize(observations, memory)


def test_bad_observation_yields_an_error_for_that_agent_only() -> None:
    obs = observations(50, seed=4)
    raw = [o.model_dump() for o in obs]
    raw[7]["agent"] = "bad-7"
    raw[31]["agent"] = "bad-31"
    obs = [Observation.model_validate(r) for r in raw]
    cand = ModelCandidate("pursuit", "picky", "v1", make_module(1), PickyAdapter())
    eng = InferenceEngine(StaticModelSource([cand]), config=EngineConfig(onnx=False), fallbacks={})
    r = eng.decide(obs)
    assert set(r.errors) == {7, 31} and r.actions[7] is None and r.actions[31] is None
    assert "visible target" in r.errors[7]["msg"] and r.errors[7]["loc"] == "observations[7]"
    good = [o for i, o in enumerate(obs) if i not in (7, 31)]
    want = offline(make_module(1), good)
    got = [a for i, a in enumerate(r.actions) if i not in (7, 31)]
    assert [a.model_dump() for a in got] == [d.action.model_dump() for d in want]


def test_mixed_kinds_are_grouped_one_forward_pass_per_family() -> None:
    calls: list[int] = []

    class Counting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = make_module(1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(x.shape[0])
            return self.lin(x)

    cand = ModelCandidate("pursuit", "count", "v1", Counting(), ToyAdapter())
    eng = InferenceEngine(StaticModelSource([cand]), config=EngineConfig(onnx=False))
    calls.clear()
    obs = observations(30, seed=1) + observations(20, seed=2, kind="navigation") + observations(30, seed=3)
    r = eng.decide(obs)
    assert calls == [60]  # one pass for the 60 pursuit agents
    assert [r.refs[i] for i in (0, 45, 79)] == [("count", "v1"), r.refs[45], ("count", "v1")]
    assert set(r.fallback) == set(range(30, 50)) and r.refs[45][0].startswith("scripted:")


def test_session_store_lru_and_ttl() -> None:
    now = [0.0]
    s = SessionStore(max_agents=3, ttl_s=10.0, clock=lambda: now[0])
    for a in "abcd":
        s[a] = {"v": a}
    s.enforce()
    assert list(s) == ["b", "c", "d"]
    s.touch(["b"])
    s["e"] = {}
    s.enforce()
    assert sorted(s) == ["b", "d", "e"]  # c was least recently used
    now[0] = 5.0
    s.touch(["d"])
    now[0] = 12.0
    s.enforce()
    assert list(s) == ["d"]  # b and e expired, d was seen at t=5


def test_session_store_bookkeeping_stays_bounded_and_ttl_is_exact() -> None:
    now = [0.0]
    s = SessionStore(max_agents=10, ttl_s=10.0, clock=lambda: now[0])
    for step in range(200):  # 100 new ids per batch, most never get an entry
        ids = [f"a{step}-{i}" for i in range(100)]
        s.touch(ids)
        for a in ids[:3]:
            s[a] = {}
        s.enforce()
        assert len(s) <= 10
    assert len(s._seen) <= 2 * 10 + 1024 + 100
    s.touch(list(s))  # all seen at t=0 ...
    now[0] = 9.0
    keep = next(iter(s))
    s.touch([keep])  # ... but one again at t=9
    now[0] = 10.5
    assert s.enforce() == 9 and list(s) == [keep]  # expired exactly after ttl_s
    now[0] = 19.5
    assert s.enforce() == 1 and len(s) == 0


def test_session_store_repeated_batches_keep_exact_recency_and_ttl() -> None:
    now = [0.0]
    s = SessionStore(max_agents=4, ttl_s=10.0, clock=lambda: now[0])
    batch = ["a", "b", "c"]
    s.touch(batch)
    for a in batch:
        s[a] = {}
    s.touch(batch)  # the same agents again: their shared stamp is refreshed in place
    s["d"] = {}
    now[0] = 6.0
    s.touch(list(batch))  # an equal list (not the same object): the fast path too
    now[0] = 12.0
    assert s.enforce() == 1 and sorted(s) == ["a", "b", "c"]  # d expired (t=0), a/b/c seen at t=6
    s.touch(["b", "c"])  # another batch rebinds some of them ...
    now[0] = 13.0
    s.touch(["a", "b"])
    s.touch(["a", "b"])  # ... and a repeated touch must not refresh c with them
    s["e"] = {}
    s["f"] = {}  # the store overflows by one: c (t=12) is now the least recently used
    assert s.enforce() == 1 and sorted(s) == ["a", "b", "e", "f"]
    now[0] = 22.5
    assert s.enforce() == 0
    now[0] = 23.5
    assert s.enforce() == 4 and len(s) == 0


def test_touch_hands_back_the_previous_list_for_the_same_agents() -> None:
    """``touch`` returns the previous touch's list for the same agents (so a batch can share it),
    a list of its own otherwise; a batch only takes a list that matches its agents."""
    s = SessionStore()
    first = s.touch(["a", "b", "c"])
    assert first == ["a", "b", "c"]
    again = s.touch(["a", "b", "c"])
    assert again is first
    other = s.touch(["a", "c", "b"])  # another order: another list
    assert other == ["a", "c", "b"] and other is not first
    batch = ObservationBatch(observations(3, seed=0))
    shared = list(batch.agents)
    batch.share_agents(shared)
    assert batch.agents is shared
    for wrong in (shared[:2], [*shared[:2], "someone-else"], ["someone-else", *shared[1:]]):
        with pytest.raises(ValueError, match="equal to the batch's agents"):
            batch.share_agents(wrong)
    assert batch.agents is shared


def test_memory_stays_bounded_with_churning_agents() -> None:
    cfg = EngineConfig(onnx=False, session_max_agents=500, session_ttl_s=3600)
    eng = InferenceEngine(StaticModelSource([make_candidate(1)]), config=cfg)
    sizes = []
    base = observations(200, seed=0)
    for step in range(60):  # 60 x 200 = 12000 distinct agent ids, 24x the bound
        obs = [o.model_copy(update={"agent": f"churn-{step}-{i}"}) for i, o in enumerate(base)]
        eng.decide(obs)
        sizes.append(eng.session_sizes()["model:pursuit"])
    assert max(sizes) <= 500 and sizes[-1] == 500
    assert eng._sessions["pursuit"].evicted == 60 * 200 - 500
    # a returning agent that was evicted starts with fresh memory instead of failing
    assert not eng.decide(observations(5, seed=0)).errors


def test_decisions_are_logged_as_agent_act_events(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from luanti_tune.inference.decision_log import DecisionLogger
    from luanti_tune.store.base import EventQuery, open_store

    store = open_store(f"sqlite:///{tmp_path / 'ev.db'}")
    try:
        logger = DecisionLogger(store, sample_rate=0.25, seed=1)
        eng = InferenceEngine(StaticModelSource([make_candidate(1)]), decision_log=logger)
        eng.decide(observations(400, seed=5))
        eng.decide(observations(100, seed=6, kind="team"))
        eng.close()
        rows = list(store.iter_events(EventQuery(types=("agent.act",))))
        assert 60 < len(rows) < 190  # ~25% of 500
        models = {r["payload"].get("model") for r in rows}
        assert "toy-pursuit" in models
        fb = [r for r in rows if r["payload"].get("fallback")]
        assert fb and all(r["payload"]["fallback"] == "no_model" for r in fb)
        assert all(
            r["actor"]["kind"] == "agent" and r["payload"]["action"]["agent"] == r["actor"]["name"] for r in rows
        )
    finally:
        store.close()


class BatchOnlyBroken(ToyAdapter):
    def featurize(self, observations, memory):  # type: ignore[no-untyped-def]
        if len(observations) > 1:
            raise RuntimeError("vectorised path broken")
        return super().featurize(observations, memory)


def test_featurize_failing_for_no_single_agent_falls_back_as_model_error() -> None:
    cand = ModelCandidate("pursuit", "broken", "v1", make_module(1), BatchOnlyBroken())
    eng = InferenceEngine(StaticModelSource([cand]), config=EngineConfig(onnx=False))
    r = eng.decide(observations(20, seed=8))
    assert not r.errors and len(r.fallback) == 20 and set(r.fallback.values()) == {"model_error"}


def test_batch_in_flight_during_a_swap_finishes_on_the_old_model() -> None:
    import threading

    entered, release = threading.Event(), threading.Event()

    class Slow(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = make_module(1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            entered.set()
            release.wait(10)
            return self.lin(x)

    source = StaticModelSource([ModelCandidate("pursuit", "toy-pursuit", "old", Slow(), ToyAdapter())])
    eng = InferenceEngine(source, config=EngineConfig(onnx=False), fallbacks={})
    entered.clear()
    obs = observations(50, seed=12)
    out: list = []
    t = threading.Thread(target=lambda: out.append(eng.decide(obs)))
    t.start()
    assert entered.wait(10)
    source.set(make_candidate(2, version="new"))
    assert eng.refresh()  # swaps while the batch is inside the old model's forward pass
    assert eng.models.by_kind["pursuit"].version == "new"
    release.set()
    t.join(10)
    (old,) = out
    assert set(old.refs) == {("toy-pursuit", "old")}
    want_old = offline(make_module(1), obs)
    assert [a.model_dump() for a in old.actions] == [d.action.model_dump() for d in want_old]
    fresh = [o.model_copy(update={"agent": f"fresh-{i}"}) for i, o in enumerate(obs)]
    new = eng.decide(fresh)
    assert set(new.refs) == {("toy-pursuit", "new")}
    assert [a.model_dump() for a in new.actions] == [d.action.model_dump() for d in offline(make_module(2), fresh)]


def test_swapped_out_models_are_released() -> None:
    """Only the ``keep_prepared`` most recent models stay alive over many swaps (no leak, even
    though the engine freezes the garbage collector's view after each load)."""
    import weakref

    engine = InferenceEngine(StaticModelSource([make_candidate(1)]), config=EngineConfig(keep_prepared=2), fallbacks={})
    obs = observations(20)
    refs = []
    for k in range(2, 10):
        cand = make_candidate(k, version=f"v{k}")
        refs.append((weakref.ref(cand.module), weakref.ref(cand.adapter)))
        engine.source = StaticModelSource([cand])
        assert engine.refresh(force=True)
        assert set(engine.decide(obs).refs) == {("toy-pursuit", f"v{k}")}
        del cand
    alive = [i for i, (m, a) in enumerate(refs) if m() is not None or a() is not None]
    assert alive == [6, 7]


def test_engine_defaults_are_the_settings_defaults() -> None:
    """One declaration: an engine built without a configuration runs as the service's would."""
    from luanti_tune.config.settings import Settings

    settings = Settings()
    default, mapped = EngineConfig(), EngineConfig.from_settings(settings)
    assert default == mapped
    assert (default.session_max_agents, default.session_ttl_s, default.export_process) == (
        settings.act_session_max_agents,
        settings.act_session_ttl_s,
        settings.act_export_process,
    )
    custom = Settings(act_session_max_agents=7, act_session_ttl_s=9.0, act_onnx=False, seed=3)
    config = EngineConfig.from_settings(custom, keep_prepared=1)
    assert (config.session_max_agents, config.session_ttl_s, config.onnx, config.seed) == (7, 9.0, False, 3)
    assert config.keep_prepared == 1


def test_adapter_hooks_have_defaults_the_engine_calls() -> None:
    """An adapter with only featurize/decode (the toy family) serves: every optional hook is
    declared on FamilyAdapter with a default, none is looked up by name."""
    adapter = ToyAdapter()
    assert adapter.decode_columns([], {}) is None
    assert adapter.example_inputs(4) is None
    assert adapter.split_forward(make_module(1)) is None
    assert adapter.warm_up() is None
    assert adapter.target_names([]) is None and adapter.sightings() is None
    eng = InferenceEngine(StaticModelSource([make_candidate(1)]), config=EngineConfig(onnx=False), fallbacks={})
    try:
        result = eng.decide(observations(10))
        assert result.refs == [("toy-pursuit", "v1")] * 10 and not result.blocks
    finally:
        eng.close()
