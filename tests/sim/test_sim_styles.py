"""Play styles really differ (a simple classifier tells them apart); held-out styles can be built."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from luanti_tune.sim.session import SessionConfig, generate_events
from luanti_tune.sim.styles import HELDOUT_STYLES, STYLES, TRAIN_STYLES, PlayerStyle, make_style, random_style

WINDOW = 60  # player.move events (5.4 s of play)


def movement_features(moves: list[dict[str, Any]]) -> np.ndarray:
    """Per-window features computed only from player.move events (what the mod sends)."""
    pos = np.array([[m["pos"]["x"], m["pos"]["z"]] for m in moves])
    vel = np.array([[m["payload"]["velocity"]["x"], m["payload"]["velocity"]["z"]] for m in moves])
    yaw = np.array([m["payload"]["yaw"] for m in moves])
    ctrl = [m["payload"]["controls"] for m in moves]
    speed = np.linalg.norm(vel, axis=1)
    heading = np.arctan2(vel[:, 1], vel[:, 0])
    turn = np.abs(np.angle(np.exp(1j * np.diff(heading))))[speed[1:] > 0.5]
    path = np.linalg.norm(np.diff(pos, axis=0), axis=1).sum()
    net = np.linalg.norm(pos[-1] - pos[0])
    look = np.stack([-np.sin(yaw), np.cos(yaw)], axis=1)
    align = (look * vel).sum(1) / np.maximum(speed, 1e-6)
    side = np.mean([c.get("left", False) or c.get("right", False) for c in ctrl])
    signed_turn = np.angle(np.exp(1j * np.diff(heading)))[speed[1:] > 0.5]
    return np.array(
        [
            speed.mean(),
            speed.std(),
            np.mean(speed < 0.3),
            turn.mean() if len(turn) else 0.0,
            np.mean(turn > 0.3) if len(turn) else 0.0,
            abs(signed_turn.mean()) if len(signed_turn) else 0.0,
            net / max(path, 1e-6),
            path,
            align[speed > 0.5].mean() if (speed > 0.5).any() else 0.0,
            side,
            np.mean([c.get("jump", False) for c in ctrl]),
        ]
    )


def windows(seed: int, minutes: float) -> tuple[list[np.ndarray], list[str]]:
    cfg = SessionConfig(players=len(TRAIN_STYLES), styles=TRAIN_STYLES, minutes=minutes, seed=seed)
    per_player: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in generate_events(cfg):
        if ev["type"] == "player.move":
            per_player[ev["actor"]["name"]].append(ev)
    X, y = [], []
    for name, moves in per_player.items():
        style = name.split("-", 1)[1]
        for k in range(0, len(moves) - WINDOW + 1, WINDOW):
            X.append(movement_features(moves[k : k + WINDOW]))
            y.append(style)
    return X, y


def test_classifier_separates_styles_well_above_chance() -> None:
    from sklearn.ensemble import RandomForestClassifier

    X_train, y_train = [], []
    for seed in (1, 2, 3):
        X, y = windows(seed, 0.5)
        X_train += X
        y_train += y
    X_test, y_test = windows(99, 0.5)  # a different world and different noise
    clf = RandomForestClassifier(n_estimators=100, random_state=0).fit(np.array(X_train), y_train)
    acc = float(np.mean(clf.predict(np.array(X_test)) == np.array(y_test)))
    chance = 1.0 / len(TRAIN_STYLES)
    assert acc > 0.6 > 3 * chance, acc


def test_held_out_and_custom_styles() -> None:
    assert set(HELDOUT_STYLES).isdisjoint(TRAIN_STYLES)
    assert set(HELDOUT_STYLES) <= set(STYLES)
    faster = make_style("strafer", period_s=0.3)
    assert faster.name == "strafer" and faster.period_s == 0.3 and STYLES["strafer"].period_s != 0.3
    named = make_style("quick-strafer", base="strafer", period_s=0.3)
    assert named.name == "quick-strafer" and named.pattern == "strafe"
    new = make_style("wobbler", pattern="circle", radius=3.0)
    assert isinstance(new, PlayerStyle) and new.radius == 3.0
    assert random_style(5) == random_style(5) and random_style(5) != random_style(6)
    with pytest.raises(KeyError, match="unknown style"):
        make_style("nope")
    with pytest.raises(ValueError, match="unknown pattern"):
        make_style("x", pattern="teleport")
    with pytest.raises(TypeError):
        make_style("strafer", warp_speed=9)
    with pytest.raises(ValueError, match="style name"):
        make_style("two words", pattern="circle")
    with pytest.raises(ValueError, match="radius"):
        make_style("neg", pattern="circle", radius=-2.0)
    # a held-out style plays in a session like any other
    events = list(generate_events(SessionConfig(players=2, styles=(new, random_style(3)), minutes=0.1, seed=0)))
    names = {e["actor"]["name"] for e in events if e["type"] == "player.move"}
    assert names == {"p00-wobbler", "p01-random-3"}
