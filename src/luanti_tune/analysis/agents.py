"""Emergent-behaviour monitoring of agents, per model version and over time.

Input: ``agent.act`` (with ``payload.model``/``payload.version``, the acting agent's ``pos`` and,
when the deciding policy sets it, the assigned ``target``), ``agent.result``, ``agent.obs`` (gives
each agent's ``team``) and ``reward`` events, as wire dicts in store order.

Per model version the :class:`BehaviourMonitor` keeps:

* the action distribution (tokens: action type, ``move`` with its compass sector) and its
  Shannon entropy in bits, overall and per time bucket (``window_s`` of wall time);
* frequent action n-grams per agent stream, and which ones are *new*: frequent in this version
  (share >= ``min_share``) but rare in the previous version of the same model (< half of that);
* team spacing: mean distance of an acting agent to its teammates' latest positions;
* role switches: how often an agent's target changes between consecutive decisions (the event's
  ``target``, an ``attack`` target, or the seen target a ``move`` heads for);
* success: share of ``agent.result`` with ``ok`` and mean ``reward``; fallback share.

:class:`BehaviourCollector` exposes the figures as Prometheus metrics; give it a store and it pulls
new agent events on every scrape (bounded per scrape), so the service only has to register it::

    from prometheus_client import REGISTRY
    REGISTRY.register(BehaviourCollector(BehaviourMonitor(), store=store))
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

AGENT_EVENT_TYPES: tuple[str, ...] = ("agent.act", "agent.result", "agent.obs", "reward")
SECTORS = ("n", "ne", "e", "se", "s", "sw", "w", "nw")
UNKNOWN_MODEL = "unknown"


def action_token(action: Mapping[str, Any]) -> str:
    """Coarse token of one action: its type, plus the compass sector for ``move``."""
    kind = str(action.get("type", "?"))
    if kind == "move":
        d = (action.get("args") or {}).get("dir") or {}
        x, z = float(d.get("x", 0.0)), float(d.get("z", 0.0))
        if math.hypot(x, z) < 1e-6:
            return "move:0"
        ang = math.atan2(x, z)  # 0 = +z ("north"), clockwise towards +x
        return "move:" + SECTORS[int(round(ang / (math.pi / 4))) % 8]
    return kind


def entropy_bits(counts: Mapping[Any, int] | Counter[Any]) -> float:
    total = sum(counts.values())
    if total <= 0:
        return 0.0
    p = np.array([c / total for c in counts.values() if c > 0])
    return float(-(p * np.log2(p)).sum())


@dataclass
class VersionStats:
    model: str
    version: str
    order: int
    acts: int = 0
    tokens: Counter[str] = field(default_factory=Counter)
    ngrams: Counter[tuple[str, ...]] = field(default_factory=Counter)
    timeline: dict[int, Counter[str]] = field(default_factory=dict)
    results: int = 0
    results_ok: int = 0
    reward_sum: float = 0.0
    rewards: int = 0
    spacing_sum: float = 0.0
    spacing_n: int = 0
    role_obs: int = 0
    role_switches: int = 0
    fallbacks: int = 0
    first_s: float = math.inf
    last_s: float = -math.inf

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.version)

    def ngram_shares(self) -> dict[tuple[str, ...], float]:
        total = sum(self.ngrams.values())
        return {g: c / total for g, c in self.ngrams.items()} if total else {}


@dataclass
class _AgentState:
    recent: deque[str]
    version: tuple[str, str] | None = None
    target: str | None = None
    #: targets seen in the agent's last observation: (key, rel x, rel z)
    seen: list[tuple[str, float, float]] = field(default_factory=list)


class BehaviourMonitor:
    """Incremental behaviour statistics; feed events with :meth:`update`, read :meth:`summary`."""

    def __init__(
        self,
        n: int = 3,
        window_s: float = 60.0,
        min_share: float = 0.02,
        min_count: int = 20,
        max_versions: int = 50,
        max_buckets: int = 240,
        max_agents: int = 100_000,
    ) -> None:
        if n < 1:
            raise ValueError("n must be >= 1")
        self.n = n
        self.window_s = window_s
        self.min_share = min_share
        self.min_count = min_count
        self.max_versions = max_versions
        self.max_buckets = max_buckets
        self.max_agents = max_agents
        self.versions: dict[tuple[str, str], VersionStats] = {}
        self._agents: dict[str, _AgentState] = {}
        self._teams: dict[str, str] = {}
        self._team_pos: dict[str, dict[str, tuple[np.ndarray, float]]] = {}
        self.events_seen = 0

    # ------------------------------------------------------------------ feeding
    def update(self, events: Iterable[Mapping[str, Any]]) -> int:
        n = 0
        for ev in events:
            kind = ev.get("type")
            if kind == "agent.act":
                self._on_act(ev)
            elif kind == "agent.result":
                self._on_result(ev)
            elif kind == "agent.obs":
                self._on_obs(ev)
            elif kind == "reward":
                self._on_reward(ev)
            else:
                continue
            n += 1
        self.events_seen += n
        return n

    def _on_obs(self, ev: Mapping[str, Any]) -> None:
        payload = ev.get("payload") or {}
        agent = str(ev["actor"]["name"])
        if payload.get("team"):
            self._remember_team(agent, str(payload["team"]))
        pos = payload.get("pos") or {}
        wanted = set(payload.get("targets") or ())
        seen = []
        for e in payload.get("entities") or ():
            rel = e.get("rel") or {}
            if e.get("kind") == "item":  # items share names: key them by position
                x, z = round(pos.get("x", 0) + rel.get("x", 0)), round(pos.get("z", 0) + rel.get("z", 0))
                key = f"{e.get('name')}@{x},{z}"
            elif e.get("name") and (e.get("name") in wanted or (not wanted and e.get("kind") == "player")):
                key = str(e["name"])
            else:
                continue
            seen.append((key, float(rel.get("x", 0.0)), float(rel.get("z", 0.0))))
        self._agent(agent).seen = seen

    def _remember_team(self, agent: str, team: str) -> None:
        if len(self._teams) >= self.max_agents and agent not in self._teams:
            self._teams.pop(next(iter(self._teams)))
        self._teams[agent] = team

    def _agent(self, name: str) -> _AgentState:
        st = self._agents.get(name)
        if st is None:
            if len(self._agents) >= self.max_agents:
                self._agents.pop(next(iter(self._agents)))
            st = self._agents[name] = _AgentState(deque(maxlen=max(self.n - 1, 1)))
        return st

    def _stats(self, model: str, version: str) -> VersionStats:
        key = (model, version)
        vs = self.versions.get(key)
        if vs is None:
            if len(self.versions) >= self.max_versions:
                oldest = min(self.versions.values(), key=lambda v: v.order)
                del self.versions[oldest.key]
            order = max((v.order for v in self.versions.values()), default=-1) + 1
            vs = self.versions[key] = VersionStats(model, version, order)
        return vs

    def _on_act(self, ev: Mapping[str, Any]) -> None:
        payload = ev.get("payload") or {}
        action = payload.get("action") or {}
        agent = str(ev["actor"]["name"])
        vs = self._stats(str(payload.get("model") or UNKNOWN_MODEL), str(payload.get("version") or "0"))
        t = float(ev["time"]["wall_us"]) / 1e6
        vs.first_s = min(vs.first_s, t)
        vs.last_s = max(vs.last_s, t)
        tok = action_token(action)
        vs.acts += 1
        vs.tokens[tok] += 1
        if payload.get("fallback"):
            vs.fallbacks += 1
        bucket = int(t // self.window_s)
        vs.timeline.setdefault(bucket, Counter())[tok] += 1
        if len(vs.timeline) > self.max_buckets:
            del vs.timeline[min(vs.timeline)]
        st = self._agent(agent)
        if st.version != vs.key:  # a new model took over this agent: sequences restart
            st.recent.clear()
            st.target = None
            st.version = vs.key
        if self.n == 1:
            vs.ngrams[(tok,)] += 1
        elif len(st.recent) == self.n - 1:
            vs.ngrams[(*st.recent, tok)] += 1
        st.recent.append(tok)
        self._role(vs, st, ev, action)
        self._spacing(vs, agent, ev.get("pos"), t)

    def _role(self, vs: VersionStats, st: _AgentState, ev: Mapping[str, Any], action: Mapping[str, Any]) -> None:
        target = (ev.get("target") or {}).get("name")
        if target is None and action.get("type") == "attack":
            target = (action.get("args") or {}).get("target")
        if target is None and action.get("type") == "move":
            target = _heading_target(action, st.seen)
        if target is None:
            return
        if st.target is not None:
            vs.role_obs += 1
            if target != st.target:
                vs.role_switches += 1
        st.target = str(target)

    def _spacing(self, vs: VersionStats, agent: str, pos: Mapping[str, float] | None, t: float) -> None:
        team = self._teams.get(agent)
        if team is None or pos is None:
            return
        p = np.array([float(pos["x"]), float(pos["y"]), float(pos["z"])])
        mates = self._team_pos.setdefault(team, {})
        dists = [float(np.linalg.norm(p - q)) for a, (q, tq) in mates.items() if a != agent and t - tq <= 2.0]
        if dists:
            vs.spacing_sum += float(np.mean(dists))
            vs.spacing_n += 1
        mates[agent] = (p, t)

    def _owner(self, ev: Mapping[str, Any]) -> VersionStats | None:
        st = self._agents.get(str((ev.get("actor") or {}).get("name")))
        if st is None or st.version is None or st.version not in self.versions:
            return None
        return self.versions[st.version]

    def _on_result(self, ev: Mapping[str, Any]) -> None:
        vs = self._owner(ev)
        if vs is not None:
            vs.results += 1
            vs.results_ok += bool((ev.get("payload") or {}).get("ok"))

    def _on_reward(self, ev: Mapping[str, Any]) -> None:
        vs = self._owner(ev)
        if vs is not None:
            vs.rewards += 1
            vs.reward_sum += float((ev.get("payload") or {}).get("value", 0.0))

    # ------------------------------------------------------------------ reading
    def ordered(self) -> list[VersionStats]:
        return sorted(self.versions.values(), key=lambda v: v.order)

    def previous(self, vs: VersionStats) -> VersionStats | None:
        earlier = [v for v in self.ordered() if v.model == vs.model and v.order < vs.order]
        return earlier[-1] if earlier else None

    def new_ngrams(self, vs: VersionStats) -> list[tuple[tuple[str, ...], float, float]]:
        """``(ngram, share now, share in the previous version)``, most frequent first."""
        base = self.previous(vs)
        if base is None or not base.ngrams:
            return []
        now, before = vs.ngram_shares(), base.ngram_shares()
        out = [
            (g, s, before.get(g, 0.0))
            for g, s in now.items()
            if s >= self.min_share and vs.ngrams[g] >= self.min_count and before.get(g, 0.0) < self.min_share / 2
        ]
        return sorted(out, key=lambda r: -r[1])

    def entropy_timeline(self, vs: VersionStats) -> list[tuple[float, float, int]]:
        """``(bucket start wall seconds, entropy bits, acts)`` per time bucket."""
        return [(b * self.window_s, entropy_bits(c), sum(c.values())) for b, c in sorted(vs.timeline.items())]

    def summary(self) -> list[dict[str, Any]]:
        rows = []
        for vs in self.ordered():
            new = self.new_ngrams(vs)
            rows.append(
                {
                    "model": vs.model,
                    "version": vs.version,
                    "acts": vs.acts,
                    "entropy_bits": round(entropy_bits(vs.tokens), 4),
                    "actions": dict(vs.tokens.most_common()),
                    "top_ngrams": [" ".join(g) for g, _ in vs.ngrams.most_common(3)],
                    "new_ngrams": [" ".join(g) for g, _, _ in new[:5]],
                    "new_ngram_count": len(new),
                    "success_rate": round(vs.results_ok / vs.results, 4) if vs.results else None,
                    "reward_mean": round(vs.reward_sum / vs.rewards, 4) if vs.rewards else None,
                    "team_spacing": round(vs.spacing_sum / vs.spacing_n, 3) if vs.spacing_n else None,
                    "role_switch_rate": round(vs.role_switches / vs.role_obs, 4) if vs.role_obs else None,
                    "fallback_rate": round(vs.fallbacks / vs.acts, 4) if vs.acts else None,
                    "first_s": vs.first_s if vs.acts else None,
                    "last_s": vs.last_s if vs.acts else None,
                }
            )
        return rows


def _heading_target(action: Mapping[str, Any], seen: list[tuple[str, float, float]]) -> str | None:
    """The seen target a ``move`` heads for (direction within ~25 degrees; nearest first)."""
    d = (action.get("args") or {}).get("dir") or {}
    dx, dz = float(d.get("x", 0.0)), float(d.get("z", 0.0))
    n = math.hypot(dx, dz)
    if n < 1e-6 or not seen:
        return None
    best: tuple[float, str] | None = None
    for key, rx, rz in seen:
        dist = math.hypot(rx, rz)
        if dist < 1e-6:
            continue
        if (dx * rx + dz * rz) / (n * dist) >= 0.9 and (best is None or dist < best[0]):
            best = (dist, key)
    return None if best is None else best[1]


# ----------------------------------------------------------------------------- Prometheus


class BehaviourCollector:
    """A ``prometheus_client`` custom collector over a :class:`BehaviourMonitor`.

    With ``store`` it pulls new agent events (``after_id`` cursor, at most ``poll_limit`` per
    scrape) before exporting, so registering it is all a service needs to do.
    """

    def __init__(self, monitor: BehaviourMonitor | None = None, store: Any = None, poll_limit: int = 5_000) -> None:
        self.monitor = monitor or BehaviourMonitor()
        self.store = store
        self.poll_limit = poll_limit
        self.cursor = 0
        self._lock = threading.Lock()

    def poll(self) -> int:
        """Feed events stored since the last poll; returns how many agent events were read."""
        if self.store is None:
            return 0
        from luanti_tune.store.base import EventQuery

        q = EventQuery(types=AGENT_EVENT_TYPES, after_id=self.cursor, limit=self.poll_limit)
        n = 0
        with self._lock:
            for ev in self.store.iter_events(q):
                self.cursor = max(self.cursor, int(ev.get("_id", self.cursor)))
                n += self.monitor.update([ev])
        return n

    def describe(self) -> list[Any]:
        return []  # metrics are dynamic; an empty describe keeps registration cheap

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        try:
            self.poll()
        except Exception:  # a scrape must never fail because the store hiccups
            import logging

            logging.getLogger(__name__).warning("behaviour collector could not poll the store", exc_info=True)
        labels = ["model", "version"]
        acts = CounterMetricFamily(
            "luanti_tune_agent_actions", "Agent actions by model version and action token", labels=[*labels, "action"]
        )
        gauges = {
            "entropy": GaugeMetricFamily(
                "luanti_tune_agent_action_entropy_bits", "Entropy of the action distribution", labels=labels
            ),
            "new": GaugeMetricFamily(
                "luanti_tune_agent_new_frequent_ngrams",
                "Frequent action n-grams absent from the previous version",
                labels=labels,
            ),
            "success": GaugeMetricFamily(
                "luanti_tune_agent_success_rate", "Share of agent.result events with ok", labels=labels
            ),
            "reward": GaugeMetricFamily("luanti_tune_agent_reward_mean", "Mean reward per reward event", labels=labels),
            "spacing": GaugeMetricFamily(
                "luanti_tune_agent_team_spacing_nodes", "Mean distance to teammates", labels=labels
            ),
            "roles": GaugeMetricFamily(
                "luanti_tune_agent_role_switch_rate", "Share of decisions that change the target", labels=labels
            ),
            "fallback": GaugeMetricFamily(
                "luanti_tune_agent_fallback_rate", "Share of actions decided by a fallback", labels=labels
            ),
        }
        with self._lock:
            for row in self.monitor.summary():
                lv = [row["model"], row["version"]]
                for tok, c in row["actions"].items():
                    acts.add_metric([*lv, tok], c)
                gauges["entropy"].add_metric(lv, row["entropy_bits"])
                gauges["new"].add_metric(lv, row["new_ngram_count"])
                for key, name in (
                    ("success", "success_rate"),
                    ("reward", "reward_mean"),
                    ("spacing", "team_spacing"),
                    ("roles", "role_switch_rate"),
                    ("fallback", "fallback_rate"),
                ):
                    if row[name] is not None:
                        gauges[key].add_metric(lv, row[name])
        yield acts
        yield from gauges.values()


def plot_agents(monitor: BehaviourMonitor, out_dir: Any) -> list[Any]:
    """``agents_entropy.png`` (entropy over time per version) and ``agents_actions.png``."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    versions = monitor.ordered()
    paths = []
    fig, ax = plt.subplots(figsize=(8, 4))
    t0 = min((vs.first_s for vs in versions if vs.acts), default=0.0)
    for vs in versions:
        tl = monitor.entropy_timeline(vs)
        if tl:
            xs = [(t - t0) / 60 for t, _, _ in tl]
            ax.plot(xs, [e for _, e, _ in tl], marker="o", label=f"{vs.model} v{vs.version}")
    ax.set_xlabel("minutes")
    ax.set_ylabel("action entropy (bits)")
    if versions:
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "agents_entropy.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    tokens = sorted({t for vs in versions for t in vs.tokens})
    fig, ax = plt.subplots(figsize=(8, 4))
    bottom = np.zeros(len(versions))
    for tok in tokens:
        share = np.array([vs.tokens[tok] / max(vs.acts, 1) for vs in versions])
        ax.bar([f"{vs.model}\nv{vs.version}" for vs in versions], share, bottom=bottom, label=tok)
        bottom += share
    ax.set_ylabel("share of actions")
    if tokens:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(out / "agents_actions.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths
