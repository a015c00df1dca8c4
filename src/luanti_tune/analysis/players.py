"""Player interaction patterns: behaviour features per player, play-style clustering, style labels.

Pipeline (``luanti-tune analyze players``)::

    events (store) --PlayerTrace--> features (FEATURES) --fit_styles--> StyleModel (k-means)
                                                           --StyleBook--> styles.json

The stored :class:`StyleBook` (``<data_dir>/analysis/styles.json``, plain JSON, no pickle) holds
the fitted model (standardisation, centroids, human-readable style names) and one label per
player. Trainers that adapt per style read it with the small API::

    from luanti_tune.analysis.players import load_style_book, style_of
    style_of("alice", settings)            # -> "strafer" | None (unknown player / no file)
    book = load_style_book(settings)       # StyleBook | None
    book.players_by_style()["strafer"]     # -> ["alice", ...]
    book.classify_events(events)           # label players not seen at fit time
    players_of_styles(["strafer"], settings)  # -> players to adapt to

Per-style adaptation: ``luanti-tune train pursuit --style strafer [--per-player]`` fine-tunes the
pursuit model on the players labelled ``strafer`` (resolved through :func:`players_of_styles`).
``luanti-tune dialogue train --style builder`` does the same for the NPC dialogue model, whose
player context also carries the stored label (``luanti_tune.dialogue.context.player_styles``).

Nearest-centroid prediction is pure numpy, so readers need neither scikit-learn nor the fit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from luanti_tune.errors import ConfigError

log = logging.getLogger(__name__)

STYLES_SCHEMA = "luanti.styles/1"

#: Behaviour features, in matrix column order.
FEATURES: tuple[str, ...] = (
    "speed_mean",  # horizontal speed, nodes/s
    "speed_std",
    "still_frac",  # share of samples standing still
    "strafe_frac",  # mean |sin(angle between walking direction and facing)| while moving
    "turn_rate",  # rad/s of walking-direction change while moving
    "turn_consistency",  # |sum of signed turns| / sum of |turns| at 1 s: 1 = circling, 0 = both ways
    "heading_flip_rate",  # sign changes of turning per minute moving (zig-zag)
    "sharp_turn_rate",  # turns of 0.6..2.5 rad within 0.2 s per minute moving (zig-zag corners)
    "reversal_rate",  # direction reversals (> 2.5 rad) per minute moving (strafing back and forth)
    "alternating_turn_rate",  # sharp turns answered by a sharp turn the other way within 1.5 s, per minute
    "jump_frac",  # share of samples with the jump control held
    "vertical_speed",  # mean |vertical velocity|
    "straightness",  # net displacement / path length over 2 s windows
    "straightness_10s",  # the same over 10 s windows
    "gyration",  # radius of gyration of visited positions, nodes
    "cells_per_min",  # distinct 4x4 columns visited per minute (exploration)
    "dig_per_min",
    "place_per_min",
    "place_frac",  # place / (dig + place)
    "chat_per_min",
    "chat_len",  # mean message length, characters
    "punch_per_min",  # combat involvement (punching or punched)
    "hp_loss_per_min",
    "deaths_per_min",
)

#: Heavy-tailed features compressed with log1p before standardisation.
LOG_FEATURES: frozenset[str] = frozenset(
    {
        "turn_rate",
        "heading_flip_rate",
        "sharp_turn_rate",
        "reversal_rate",
        "alternating_turn_rate",
        "gyration",
        "cells_per_min",
        "dig_per_min",
        "place_per_min",
        "chat_per_min",
        "chat_len",
        "punch_per_min",
        "hp_loss_per_min",
        "deaths_per_min",
    }
)

#: Features the clustering uses (the others are reported but are mostly chance: falls, lava, jumps).
CLUSTER_FEATURES: tuple[str, ...] = (
    "speed_mean",
    "speed_std",
    "still_frac",
    "strafe_frac",
    "turn_rate",
    "turn_consistency",
    "sharp_turn_rate",
    "reversal_rate",
    "alternating_turn_rate",
    "straightness",
    "straightness_10s",
    "gyration",
    "cells_per_min",
    "dig_per_min",
    "place_per_min",
    "chat_per_min",
    "punch_per_min",
)

#: Feature whose high value names a style (used to give clusters readable names).
DESCRIPTORS: dict[str, str] = {
    "strafe_frac": "sidestepper",
    "alternating_turn_rate": "zigzag",
    "turn_consistency": "circler",
    "reversal_rate": "strafer",
    "still_frac": "camper",
    "place_per_min": "builder",
    "cells_per_min": "explorer",
    "chat_per_min": "chatter",
    "dig_per_min": "miner",
    "punch_per_min": "fighter",
    "speed_mean": "runner",
}

PLAYER_EVENT_TYPES: tuple[str, ...] = (
    "player.move",
    "player.hp",
    "player.die",
    "player.punch",
    "node.dig",
    "node.place",
    "chat.msg",
)

MOVING_SPEED = 0.5  # nodes/s: slower counts as standing still
RESAMPLE_S = 0.5  # movement is resampled on this grid (sampling-rate independent features)
TURN_RESAMPLE_S = 0.2  # finer grid for turning statistics (zig-zag corners come every ~0.7 s)
TURN_MIN = 0.15  # rad per resampled step: smaller heading changes are not turns
CELL = 4.0  # exploration grid, nodes


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


@dataclass
class PlayerTrace:
    """Everything about one player needed for its features (built from a stream of events)."""

    name: str
    t: list[float] = field(default_factory=list)
    pos: list[tuple[float, float, float]] = field(default_factory=list)
    vel: list[tuple[float, float, float]] = field(default_factory=list)
    yaw: list[float] = field(default_factory=list)
    jump: list[bool] = field(default_factory=list)
    t_min: float = math.inf
    t_max: float = -math.inf
    digs: int = 0
    places: int = 0
    chats: int = 0
    chat_chars: int = 0
    punches: int = 0
    hp_loss: float = 0.0
    deaths: int = 0
    n_events: int = 0

    @property
    def minutes(self) -> float:
        return max(self.t_max - self.t_min, 1.0) / 60.0

    @property
    def n_moves(self) -> int:
        return len(self.t)

    def add(self, event: Mapping[str, Any]) -> None:
        """Account one wire event whose actor is this player."""
        t = float(event["time"]["game_s"])
        self.t_min = min(self.t_min, t)
        self.t_max = max(self.t_max, t)
        self.n_events += 1
        kind = event["type"]
        payload = event.get("payload") or {}
        if kind == "player.move":
            self._add_move(t, event.get("pos"), payload)
        elif kind == "node.dig":
            self.digs += 1
        elif kind == "node.place":
            self.places += 1
        elif kind == "chat.msg":
            self.chats += 1
            self.chat_chars += len(str(payload.get("message", "")))
        elif kind == "player.punch":
            self.punches += 1
        elif kind == "player.hp":
            self.hp_loss += max(0.0, -float(payload.get("delta", 0.0)))
        elif kind == "player.die":
            self.deaths += 1

    def _add_move(self, t: float, pos: Mapping[str, float] | None, payload: Mapping[str, Any]) -> None:
        if pos is None:
            return
        v = payload.get("velocity") or {}
        self.t.append(t)
        self.pos.append((float(pos["x"]), float(pos["y"]), float(pos["z"])))
        self.vel.append((float(v.get("x", 0.0)), float(v.get("y", 0.0)), float(v.get("z", 0.0))))
        self.yaw.append(float(payload.get("yaw", 0.0)))
        self.jump.append(bool((payload.get("controls") or {}).get("jump", False)))

    def features(self) -> np.ndarray:
        """The :data:`FEATURES` vector of this player (float64)."""
        f = dict.fromkeys(FEATURES, 0.0)
        f.update(self._movement_features())
        minutes = self.minutes
        f["dig_per_min"] = self.digs / minutes
        f["place_per_min"] = self.places / minutes
        f["place_frac"] = self.places / (self.digs + self.places) if self.digs + self.places else 0.5
        f["chat_per_min"] = self.chats / minutes
        f["chat_len"] = self.chat_chars / self.chats if self.chats else 0.0
        f["punch_per_min"] = self.punches / minutes
        f["hp_loss_per_min"] = self.hp_loss / minutes
        f["deaths_per_min"] = self.deaths / minutes
        return np.array([f[k] for k in FEATURES], dtype=np.float64)

    def _movement_features(self) -> dict[str, float]:
        if len(self.t) < 3:
            return {"still_frac": 1.0, "straightness": 0.0}
        order = np.argsort(np.asarray(self.t), kind="stable")
        t = np.asarray(self.t)[order]
        pos = np.asarray(self.pos)[order]
        vel = np.asarray(self.vel)[order]
        yaw = np.asarray(self.yaw)[order]
        out: dict[str, float] = {
            "jump_frac": float(np.mean(self.jump)),
            "vertical_speed": float(np.abs(vel[:, 1]).mean()),
        }
        # Resample positions on a fixed grid so that features do not depend on the sampling rate
        # (the mod samples differently from the simulator) and per-sample jitter averages out.
        if t[-1] - t[0] < 2 * RESAMPLE_S:
            out.update({"still_frac": 1.0})
            return out
        grid = np.arange(t[0], t[-1], RESAMPLE_S)
        xz = np.stack([np.interp(grid, t, pos[:, 0]), np.interp(grid, t, pos[:, 2])], axis=1)
        step = np.diff(xz, axis=0)
        speed = np.hypot(step[:, 0], step[:, 1]) / RESAMPLE_S
        moving = speed > MOVING_SPEED
        out.update(
            {
                "speed_mean": float(speed.mean()),
                "speed_std": float(speed.std()),
                "still_frac": float(1.0 - moving.mean()),
            }
        )
        # Luanti yaw convention: facing direction is (-sin yaw, cos yaw) in (x, z).
        heading = np.arctan2(-step[:, 0], step[:, 1])
        if moving.any():
            nearest = np.clip(np.searchsorted(t, grid[:-1] + RESAMPLE_S / 2), 0, len(t) - 1)
            out["strafe_frac"] = float(np.abs(np.sin(heading[moving] - yaw[nearest][moving])).mean())
        out.update(_turning(t, pos))
        out.update(_exploration(grid, xz))
        return out


def _turning(t: np.ndarray, pos: np.ndarray) -> dict[str, float]:
    """Turning statistics on a finer grid (``TURN_RESAMPLE_S``) than the other movement features."""
    grid = np.arange(t[0], t[-1], TURN_RESAMPLE_S)
    if len(grid) < 4:
        return {}
    xz = np.stack([np.interp(grid, t, pos[:, 0]), np.interp(grid, t, pos[:, 2])], axis=1)
    step = np.diff(xz, axis=0)
    moving = np.hypot(step[:, 0], step[:, 1]) / TURN_RESAMPLE_S > MOVING_SPEED
    heading = np.arctan2(-step[:, 0], step[:, 1])
    pair = moving[1:] & moving[:-1]
    if pair.sum() < 2:
        return {}
    dh = _wrap(np.diff(heading))[pair]
    moving_s = float(pair.sum()) * TURN_RESAMPLE_S
    abs_sum = float(np.abs(dh).sum())
    turning = dh[np.abs(dh) > TURN_MIN]
    flips = int(np.count_nonzero(np.diff(np.sign(turning)))) if turning.size > 1 else 0
    per_min = max(moving_s / 60.0, 1e-6)
    sharp = (np.abs(dh) > 0.6) & (np.abs(dh) <= 2.5)
    # zig-zag corners: a sharp turn followed within 1.5 s by a sharp turn the other way
    when = np.nonzero(pair)[0][sharp]
    sign = np.sign(dh[sharp])
    alternating = (np.diff(when) * TURN_RESAMPLE_S <= 1.5) & (sign[1:] != sign[:-1]) if when.size > 1 else np.zeros(0)
    return {
        "alternating_turn_rate": float(np.count_nonzero(alternating)) / per_min,
        "turn_rate": abs_sum / max(moving_s, 1e-6),
        "turn_consistency": _turn_consistency(t, pos),
        "heading_flip_rate": flips / per_min,
        "sharp_turn_rate": float(np.count_nonzero(sharp)) / per_min,
        "reversal_rate": float(np.count_nonzero(np.abs(dh) > 2.5)) / per_min,
    }


def _turn_consistency(t: np.ndarray, pos: np.ndarray) -> float:
    """|sum of signed heading changes| / sum of |changes| on a 1 s grid, reversals excluded:
    ~1 when circling one way, ~0 when turning both ways (noise averages out at this scale)."""
    grid = np.arange(t[0], t[-1], 1.0)
    if len(grid) < 4:
        return 0.0
    xz = np.stack([np.interp(grid, t, pos[:, 0]), np.interp(grid, t, pos[:, 2])], axis=1)
    step = np.diff(xz, axis=0)
    moving = np.hypot(step[:, 0], step[:, 1]) > MOVING_SPEED
    dh = _wrap(np.diff(np.arctan2(-step[:, 0], step[:, 1])))[moving[1:] & moving[:-1]]
    dh = dh[np.abs(dh) < 2.0]
    total = float(np.abs(dh).sum())
    return abs(float(dh.sum())) / total if total > 1e-9 else 0.0


def _exploration(t: np.ndarray, xz: np.ndarray) -> dict[str, float]:
    steps = np.linalg.norm(np.diff(xz, axis=0), axis=1)
    path = float(steps.sum())
    cells = np.unique(np.floor(xz / CELL).astype(np.int64), axis=0).shape[0]
    minutes = max(float(t[-1] - t[0]), 1.0) / 60.0
    # straightness over 2 s windows (1 = keeps going one way, ~0.6 = zig-zag, ~0 = back and forth)
    # and over 10 s windows (wandering vs staying around one place)
    csum = np.concatenate([[0.0], np.cumsum(steps)])

    def straight(window_s: float) -> float:
        w = max(1, int(round(window_s / RESAMPLE_S)))
        if len(xz) <= w:
            return float(np.linalg.norm(xz[-1] - xz[0])) / path if path > 1e-6 else 0.0
        net = np.linalg.norm(xz[w:] - xz[:-w], axis=1)
        travelled = csum[w:] - csum[:-w]
        ok = travelled > 0.5 * window_s  # only windows spent mostly moving
        return float(np.median(net[ok] / travelled[ok])) if ok.any() else 0.0  # median: robust to bumps

    return {
        "straightness": straight(2.0),
        "straightness_10s": straight(10.0),
        "gyration": float(np.sqrt(((xz - xz.mean(axis=0)) ** 2).sum(axis=1).mean())),
        "cells_per_min": cells / minutes,
    }


def collect_traces(events: Iterable[Mapping[str, Any]]) -> dict[str, PlayerTrace]:
    """Group player events by player name (agents and other actors are ignored)."""
    traces: dict[str, PlayerTrace] = {}
    for ev in events:
        actor = ev.get("actor") or {}
        kind = ev.get("type")
        if kind not in PLAYER_EVENT_TYPES:
            continue
        if actor.get("kind") == "player":
            name = str(actor["name"])
            traces.setdefault(name, PlayerTrace(name)).add(ev)
        target = ev.get("target") or {}
        if kind == "player.punch" and target.get("kind") == "player" and target.get("name"):
            victim = traces.setdefault(str(target["name"]), PlayerTrace(str(target["name"])))
            victim.punches += 1
    return traces


def feature_matrix(traces: Mapping[str, PlayerTrace], min_moves: int = 20) -> tuple[list[str], np.ndarray, list[str]]:
    """``(players, X, skipped)``: one row per player with at least ``min_moves`` move samples."""
    players = sorted(n for n, tr in traces.items() if tr.n_moves >= min_moves)
    skipped = sorted(n for n, tr in traces.items() if tr.n_moves < min_moves)
    X = np.stack([traces[p].features() for p in players]) if players else np.zeros((0, len(FEATURES)))
    return players, X, skipped


# ----------------------------------------------------------------------------- model


@dataclass
class StyleModel:
    """Standardisation + k-means centroids + names; predicts by nearest centroid (numpy only)."""

    features: list[str]
    log_features: list[str]
    mean: np.ndarray
    scale: np.ndarray
    centroids: np.ndarray  # (k, d) in standardised space
    names: list[str]
    silhouette: float = float("nan")

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Full :data:`FEATURES` rows -> standardised rows of this model's features."""
        X = np.asarray(X, dtype=np.float64)[:, [FEATURES.index(f) for f in self.features]].copy()
        for i, name in enumerate(self.features):
            if name in self.log_features:
                X[:, i] = np.log1p(np.maximum(X[:, i], 0.0))
        return (X - self.mean) / self.scale

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cluster index and a confidence in [0, 1] (margin between nearest and second centroid)."""
        Z = self.transform(X)
        d = np.linalg.norm(Z[:, None, :] - self.centroids[None, :, :], axis=2)
        order = np.argsort(d, axis=1)
        idx = order[:, 0]
        d1 = d[np.arange(len(Z)), idx]
        d2 = d[np.arange(len(Z)), order[:, 1]] if d.shape[1] > 1 else d1 + 1.0
        return idx, (d2 - d1) / (d2 + d1 + 1e-9)

    def to_json(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "log_features": self.log_features,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "centroids": self.centroids.tolist(),
            "names": self.names,
            "silhouette": None if math.isnan(self.silhouette) else self.silhouette,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> StyleModel:
        model = cls(
            features=list(d["features"]),
            log_features=list(d["log_features"]),
            mean=np.asarray(d["mean"], dtype=np.float64),
            scale=np.asarray(d["scale"], dtype=np.float64),
            centroids=np.asarray(d["centroids"], dtype=np.float64),
            names=list(d["names"]),
            silhouette=float("nan") if d.get("silhouette") is None else float(d["silhouette"]),
        )
        unknown = [f for f in model.features if f not in FEATURES]
        if unknown or len(model.mean) != len(model.features) or model.centroids.shape[1] != len(model.features):
            raise ConfigError("styles file was built with a different feature set; rerun `analyze players`")
        return model


def fit_styles(X: np.ndarray, k: int | None = None, seed: int = 0, k_max: int = 10) -> StyleModel:
    """Fit play styles on a feature matrix; ``k=None`` picks k by silhouette score over 2..k_max."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = X.shape[0]
    if n < 3:
        raise ConfigError(f"need at least 3 players with enough movement to cluster, got {n}")
    feats = list(CLUSTER_FEATURES)
    d = len(feats)
    logs = sorted(LOG_FEATURES & set(feats))
    L = StyleModel(feats, logs, np.zeros(d), np.ones(d), np.zeros((1, d)), [""]).transform(X)  # log only
    mean = L.mean(axis=0)
    scale = L.std(axis=0)
    scale[scale < 1e-9] = 1.0
    Z = (L - mean) / scale
    candidates = [k] if k is not None else list(range(2, min(k_max, n - 1) + 1))
    best: tuple[float, Any] | None = None
    for kk in candidates:
        if kk < 1 or kk > n:
            raise ConfigError(f"k must be within 1..{n} (number of players), got {kk}")
        km = KMeans(n_clusters=kk, n_init=10, random_state=seed).fit(Z)
        score = float(silhouette_score(Z, km.labels_)) if 1 < kk < n else float("nan")
        if best is None or (not math.isnan(score) and score > best[0]):
            best = (score, km)
    assert best is not None
    score, km = best
    centroids = np.asarray(km.cluster_centers_, dtype=np.float64)
    return StyleModel(
        features=feats,
        log_features=logs,
        mean=mean,
        scale=scale,
        centroids=centroids,
        names=name_clusters(centroids, feats),
        silhouette=score,
    )


def name_clusters(centroids: np.ndarray, features: Sequence[str]) -> list[str]:
    """Readable, unique names: each cluster gets the descriptor feature it stands out most on."""
    from scipy.optimize import linear_sum_assignment

    keys = [k for k in DESCRIPTORS if k in features]
    cols = [list(features).index(k) for k in keys]
    Zc = centroids[:, cols]  # standardised: z-scores of each cluster on each descriptor
    rows, assigned = linear_sum_assignment(-Zc)
    names = [f"style-{i}" for i in range(len(centroids))]
    for r, c in zip(rows, assigned, strict=True):
        if Zc[r, c] >= 0.5:
            names[r] = DESCRIPTORS[keys[c]]
        else:
            names[r] = f"mixed-{r}"
    return names


# ----------------------------------------------------------------------------- labels on disk


@dataclass
class StyleBook:
    """A fitted :class:`StyleModel` plus one stored label per player."""

    model: StyleModel
    players: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def style_of(self, player: str) -> str | None:
        entry = self.players.get(player)
        return None if entry is None else str(entry["style"])

    def players_by_style(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {name: [] for name in self.model.names}
        for player, entry in sorted(self.players.items()):
            out.setdefault(str(entry["style"]), []).append(player)
        return out

    def classify(self, X: np.ndarray) -> list[tuple[str, float]]:
        idx, conf = self.model.predict(X)
        return [(self.model.names[i], float(c)) for i, c in zip(idx, conf, strict=True)]

    def classify_events(self, events: Iterable[Mapping[str, Any]], min_moves: int = 20) -> dict[str, tuple[str, float]]:
        """Label every player in ``events`` with the stored model (no refit)."""
        players, X, _ = feature_matrix(collect_traces(events), min_moves=min_moves)
        if not players:
            return {}
        return dict(zip(players, self.classify(X), strict=True))

    def label(self, players: Sequence[str], X: np.ndarray, n_events: Sequence[int]) -> None:
        """Store (or overwrite) labels for ``players``."""
        now = time.time()
        for p, (style, conf), n in zip(players, self.classify(X), n_events, strict=True):
            self.players[p] = {"style": style, "confidence": round(conf, 4), "events": int(n), "updated": now}

    def to_json(self) -> dict[str, Any]:
        return {"schema": STYLES_SCHEMA, "model": self.model.to_json(), "players": self.players, "meta": self.meta}

    def save(self, path: Path) -> None:
        """Atomic write (temp file + rename): readers never see a half-written file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".styles-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_json(), fh, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> StyleBook:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"styles file {path} is not valid JSON: {exc}") from exc
        if data.get("schema") != STYLES_SCHEMA:
            raise ConfigError(f"styles file {path}: schema must be {STYLES_SCHEMA!r}, got {data.get('schema')!r}")
        return cls(StyleModel.from_json(data["model"]), dict(data.get("players", {})), dict(data.get("meta", {})))


def styles_path(settings: Any = None) -> Path:
    """Where the style book lives: ``<data_dir>/analysis/styles.json``."""
    if settings is None:
        from luanti_tune.config.settings import load_settings

        settings = load_settings()
    return Path(settings.data_dir) / "analysis" / "styles.json"


def load_style_book(settings: Any = None, path: Path | None = None) -> StyleBook | None:
    """The stored style book, or ``None`` when ``analyze players`` has not run yet."""
    p = path or styles_path(settings)
    return StyleBook.load(p) if p.exists() else None


def style_of(player: str, settings: Any = None, path: Path | None = None) -> str | None:
    """Stored play-style label of ``player`` (``None``: unknown player or no analysis yet)."""
    book = load_style_book(settings, path)
    return None if book is None else book.style_of(player)


# ----------------------------------------------------------------------------- analysis entry point


@dataclass
class PlayersReport:
    book: StyleBook
    players: list[str]
    X: np.ndarray
    labels: list[str]
    skipped: list[str]

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for lab in self.labels:
            counts[lab] = counts.get(lab, 0) + 1
        return {
            "players": len(self.players),
            "skipped": len(self.skipped),
            "styles": counts,
            "silhouette": None if math.isnan(self.book.model.silhouette) else round(self.book.model.silhouette, 4),
        }


def analyze_players(
    events: Iterable[Mapping[str, Any]],
    k: int | None = None,
    seed: int = 0,
    min_moves: int = 20,
    existing: StyleBook | None = None,
) -> PlayersReport:
    """Features -> clusters (or the ``existing`` model) -> labels for every player in ``events``."""
    traces = collect_traces(events)
    players, X, skipped = feature_matrix(traces, min_moves=min_moves)
    if existing is not None:
        book = StyleBook(existing.model, dict(existing.players), dict(existing.meta))
    else:
        book = StyleBook(fit_styles(X, k=k, seed=seed), meta={"seed": seed, "k": k, "fitted": time.time()})
    if players:
        book.label(players, X, [traces[p].n_events for p in players])
    labels = [book.players[p]["style"] for p in players]
    return PlayersReport(book, players, X, labels, skipped)


def plot_styles(report: PlayersReport, out_dir: Path) -> list[Path]:
    """Write ``styles_pca.png`` (players in the first two principal components, by style) and
    ``styles_profile.png`` (standardised feature profile of every style). Returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    model = report.book.model
    Z = model.transform(report.X) if len(report.players) else np.zeros((0, len(model.features)))
    paths: list[Path] = []
    fig, ax = plt.subplots(figsize=(7, 5))
    if len(Z) >= 2:
        centered = Z - Z.mean(axis=0)
        _, _, vt = np.linalg.svd(centered, full_matrices=False)
        P = centered @ vt[:2].T
        for name in sorted(set(report.labels)):
            sel = np.array([lab == name for lab in report.labels])
            ax.scatter(P[sel, 0], P[sel, 1], label=f"{name} ({int(sel.sum())})", s=18)
        ax.legend(fontsize=8)
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    ax.set_title("Players by play style")
    fig.tight_layout()
    paths.append(out_dir / "styles_pca.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 0.5 * len(model.names) + 2))
    im = ax.imshow(model.centroids, cmap="coolwarm", vmin=-3, vmax=3, aspect="auto")
    ax.set_yticks(range(len(model.names)), model.names)
    ax.set_xticks(range(len(model.features)), model.features, rotation=60, ha="right", fontsize=8)
    fig.colorbar(im, ax=ax, label="z-score")
    ax.set_title("Style profiles (standardised feature centroids)")
    fig.tight_layout()
    paths.append(out_dir / "styles_profile.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def players_of_styles(styles: Sequence[str], settings: Any = None, path: Path | None = None) -> list[str]:
    """Players labelled with any of ``styles`` (for per-style adaptation); clear errors otherwise."""
    book = load_style_book(settings, path)
    if book is None:
        raise ConfigError("no play styles stored yet: run `luanti-tune analyze players` first")
    groups = book.players_by_style()
    unknown = [s for s in styles if s not in groups]
    if unknown:
        raise ConfigError(f"unknown play style(s) {', '.join(unknown)}; known: {', '.join(sorted(groups))}")
    found = sorted({p for s in styles for p in groups[s]})
    if not found:
        raise ConfigError(f"no players are labelled {', '.join(styles)}")
    return found
