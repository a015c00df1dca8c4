"""World and physics behave like Luanti where it matters: speed, gravity, walls, damage, sight."""

from __future__ import annotations

import numpy as np
import pytest

from luanti_tune.schemas.common import NODE_CODES
from luanti_tune.sim.physics import DT, WALK_SPEED, Bodies
from luanti_tune.sim.world import AIR, LAVA, SAND, STONE, World, WorldConfig

FLAT = WorldConfig(size_x=24, size_y=16, size_z=24, terrain="flat", base_height=3, river=False)


def flat_world() -> World:
    return World(FLAT, seed=0)


def body_at(world: World, x: float, z: float, y: float | None = None) -> Bodies:
    b = Bodies(1)
    b.pos[0] = [x, FLAT.base_height + 0.5 if y is None else y, z]
    b.on_ground[0] = y is None
    return b


def run(world: World, b: Bodies, steps: int, move: tuple[float, float] = (0.0, 0.0)) -> list:
    infos = []
    for _ in range(steps):
        b.move[0] = move
        infos.append(b.step(world))
    return infos


def test_walk_speed_and_slow_ground() -> None:
    w = flat_world()
    b = body_at(w, 4, 12)
    run(w, b, 5, (1.0, 0.0))
    x0 = b.pos[0, 0]
    run(w, b, 20, (1.0, 0.0))
    speed = (b.pos[0, 0] - x0) / (20 * DT)
    assert speed == pytest.approx(WALK_SPEED, rel=0.05)
    assert b.pos[0, 1] == pytest.approx(FLAT.base_height + 0.5)
    # sand under the feet slows walking down
    w2 = flat_world()
    w2.nodes[:, FLAT.base_height, :] = SAND
    b2 = body_at(w2, 4, 12)
    run(w2, b2, 25, (1.0, 0.0))
    assert b2.pos[0, 0] - 4 < 0.7 * (b.pos[0, 0] - 4)


def test_wall_blocks_and_autojump_climbs_one_node() -> None:
    w = flat_world()
    h = FLAT.base_height
    w.nodes[10, h + 1 : h + 4, :] = STONE  # a 3-high wall at x=10
    b = body_at(w, 6, 12)
    infos = run(w, b, 40, (1.0, 0.0))
    assert b.pos[0, 0] < 9.5 and any(i.blocked[0] for i in infos)
    w2 = flat_world()
    w2.nodes[10, h + 1, :] = STONE  # a one-node step
    b2 = body_at(w2, 6, 12)
    run(w2, b2, 40, (1.0, 0.0))
    assert b2.pos[0, 0] > 11 and b2.pos[0, 1] == pytest.approx(h + 0.5)


def test_gravity_fall_damage_and_lava() -> None:
    w = flat_world()
    low = body_at(w, 5, 5, y=FLAT.base_height + 2.5)  # a 2-node drop: harmless
    run(w, low, 30)
    assert low.hp[0] == 20 and low.on_ground[0]
    high = body_at(w, 5, 5, y=FLAT.base_height + 10.5)  # a 10-node drop hurts
    run(w, high, 40)
    assert high.pos[0, 1] == pytest.approx(FLAT.base_height + 0.5) and high.hp[0] < 20
    w.nodes[12, FLAT.base_height + 1, 12] = LAVA
    hot = body_at(w, 12, 12)
    run(w, hot, 11)
    assert hot.hp[0] < 15


def test_line_of_sight_and_nearby_order() -> None:
    w = flat_world()
    h = FLAT.base_height
    a = np.array([[4.0, h + 2.0, 12.0]])
    c = np.array([[16.0, h + 2.0, 12.0]])
    assert w.line_of_sight(a, c)[0]
    w.nodes[10, h + 1 : h + 4, 12] = STONE
    assert not w.line_of_sight(a, c)[0]
    # schema order: y outermost, then z, then x fastest
    w.nodes[5, h + 1, 6] = STONE  # offset dx=+1, dy=0, dz=+2 from cell (4, h+1, 4)
    w.nodes[4, h + 2, 4] = LAVA  # dx=0, dy=+1, dz=0
    r = 2
    side = 2 * r + 1
    codes = w.nearby_codes(np.array([[4, h + 1, 4]]), r)[0]

    def idx(dx: int, dy: int, dz: int) -> int:
        return ((dy + r) * side + (dz + r)) * side + (dx + r)

    assert codes[idx(1, 0, 2)] == NODE_CODES["solid"]
    assert codes[idx(0, 1, 0)] == NODE_CODES["lava"]
    assert codes[idx(0, 0, 0)] == NODE_CODES["air"]
    assert codes[idx(0, -1, 0)] == NODE_CODES["solid"]
    assert w.nodes[4, h + 1, 4] == AIR


def test_worlds_are_seeded() -> None:
    cfg = WorldConfig(size_x=32, size_y=20, size_z=32)
    assert np.array_equal(World(cfg, seed=4).nodes, World(cfg, seed=4).nodes)
    assert not np.array_equal(World(cfg, seed=4).nodes, World(cfg, seed=5).nodes)
    w = World(cfg, seed=4)
    kinds = set(np.unique(w.nodes).tolist())
    assert {STONE, AIR, LAVA} <= kinds


def test_lava_spreads_and_bridge_collapses() -> None:
    cfg = WorldConfig(size_x=32, size_y=20, size_z=32)
    w = World(cfg, seed=1)
    before = int((w.nodes == LAVA).sum())
    rng = np.random.default_rng(0)
    for _ in range(5):
        w.spread_lava(rng)
    assert int((w.nodes == LAVA).sum()) > before
    assert len(w.bridge_cells) > 0
    cells = w.collapse_bridge()
    assert len(cells) > 0 and (w.node_at(cells) == AIR).all()
