"""Batched Luanti-like body physics at a 0.09 s server step.

Constants follow Luanti's defaults where they matter for behaviour: walk speed 4 nodes/s,
gravity 9.81 nodes/s^2, a jump that clears one node, collision box 0.6 x 1.7 x 0.6 nodes,
slow ground (sand, snow), swimming in liquids, fall damage and damage inside lava. Yaw follows
Luanti: 0 looks along +z, the look direction is ``(-sin(yaw), 0, cos(yaw))``.

One :meth:`Bodies.step` moves every body at once: the work is a fixed number of numpy
operations on ``(n, k)`` arrays, never a Python loop over bodies or voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from luanti_tune.schemas.agent import TICK_S
from luanti_tune.sim.world import DAMAGE_PER_S, LADDER, LIQUID, SOLID, SPEED_FACTOR, World

DT = TICK_S
WALK_SPEED = 4.0
GRAVITY = 9.81
JUMP_SPEED = 5.4
SWIM_SPEED = 2.0
MAX_FALL_SPEED = 10.9  # at most ~1 node per step, so a body never tunnels through a floor
ACCEL_GROUND = 24.0
ACCEL_AIR = 8.0
RADIUS = 0.3
HEIGHT = 1.7
EYE_HEIGHT = 1.5
FALL_SAFE_SPEED = 8.5  # landing faster than this (a fall of ~3.7 nodes) hurts
FALL_DAMAGE_PER_SPEED = 4.0
MAX_HP = 20.0

_CORNERS = np.array([[-RADIUS, -RADIUS], [-RADIUS, RADIUS], [RADIUS, -RADIUS], [RADIUS, RADIUS]]) * 0.999
_BODY_LEVELS = np.array([0.02, 0.85, HEIGHT - 0.02])


@dataclass
class StepInfo:
    """Per-body outcome of one physics step (arrays of length n)."""

    blocked: np.ndarray
    landed: np.ndarray
    fall_damage: np.ndarray
    hazard_damage: np.ndarray


class Bodies:
    """State of ``n`` bodies (players and agents) as parallel numpy arrays."""

    def __init__(self, n: int) -> None:
        self.pos = np.zeros((n, 3))
        self.vel = np.zeros((n, 3))
        self.yaw = np.zeros(n)
        self.pitch = np.zeros(n)
        self.hp = np.full(n, MAX_HP)
        self.on_ground = np.zeros(n, dtype=bool)
        self.speed_mul = np.ones(n)
        self.autojump = np.ones(n, dtype=bool)
        self.alive = np.ones(n, dtype=bool)
        self.move = np.zeros((n, 2))
        self.jump = np.zeros(n, dtype=bool)

    @property
    def n(self) -> int:
        return int(self.pos.shape[0])

    def cells(self) -> np.ndarray:
        """Integer node position containing each body's feet."""
        return np.floor(self.pos + np.array([0.5, 0.5 + 1e-6, 0.5])).astype(np.int64)

    def eyes(self) -> np.ndarray:
        return self.pos + np.array([0.0, EYE_HEIGHT, 0.0])

    def controls(self) -> list[dict[str, bool]]:
        """Luanti-style control flags (up/down/left/right/jump) from the move input and yaw."""
        fwd = np.stack([-np.sin(self.yaw), np.cos(self.yaw)], axis=1)
        right = np.stack([np.cos(self.yaw), np.sin(self.yaw)], axis=1)
        f = (self.move * fwd).sum(axis=1)
        r = (self.move * right).sum(axis=1)
        out = []
        for i in range(self.n):
            c: dict[str, bool] = {}
            if f[i] > 0.3:
                c["up"] = True
            elif f[i] < -0.3:
                c["down"] = True
            if r[i] > 0.3:
                c["right"] = True
            elif r[i] < -0.3:
                c["left"] = True
            if self.jump[i]:
                c["jump"] = True
            out.append(c)
        return out

    # ------------------------------------------------------------------ physics

    def step(self, world: World, dt: float = DT) -> StepInfo:
        """Advance every alive body by ``dt`` using ``self.move`` (n, 2) and ``self.jump`` (n,)."""
        n = self.n
        alive = self.alive
        pos, vel = self.pos, self.vel
        below = world.node_at(np.floor(pos + np.array([0.5, 0.5 - 0.08, 0.5])))
        inside = world.node_at(np.floor(pos + np.array([0.5, 0.5 + 0.3, 0.5])))
        in_liquid = LIQUID[inside] | (inside == LADDER)

        factor = np.where(self.on_ground, SPEED_FACTOR[below], 1.0) * np.where(in_liquid, SPEED_FACTOR[inside], 1.0)
        move = self.move
        norm = np.maximum(1.0, np.linalg.norm(move, axis=1))
        target = move / norm[:, None] * (WALK_SPEED * self.speed_mul * factor)[:, None]
        accel = np.where(self.on_ground | in_liquid, ACCEL_GROUND, ACCEL_AIR) * dt
        dv = target - vel[:, [0, 2]]
        dvn = np.linalg.norm(dv, axis=1)
        scale = np.minimum(1.0, accel / np.maximum(dvn, 1e-9))
        vel[:, 0] += dv[:, 0] * scale
        vel[:, 2] += dv[:, 1] * scale

        # vertical: jump, swim, gravity
        jump_now = self.jump & self.on_ground & ~in_liquid
        vel[:, 1] = np.where(jump_now, JUMP_SPEED, vel[:, 1])
        swim_up = self.jump & in_liquid
        vel[:, 1] = np.where(swim_up, SWIM_SPEED, vel[:, 1])
        g = np.where(in_liquid, GRAVITY * 0.25, GRAVITY)
        vel[:, 1] -= g * dt
        vel[:, 1] = np.maximum(vel[:, 1], np.where(in_liquid, -2.0, -MAX_FALL_SPEED))
        vel[~alive] = 0.0

        # horizontal moves, one axis at a time
        blocked = np.zeros(n, dtype=bool)
        for axis in (0, 2):
            new = pos.copy()
            new[:, axis] += vel[:, axis] * dt
            hit = self._box_hits(world, new) & (vel[:, axis] != 0)
            pos[:, axis] = np.where(hit, pos[:, axis], new[:, axis])
            vel[:, axis] = np.where(hit, 0.0, vel[:, axis])
            blocked |= hit
        # swimmers climb out at banks; walkers autojump over a one-node step
        vel[:, 1] = np.where(blocked & in_liquid, SWIM_SPEED * 1.5, vel[:, 1])
        if blocked.any():
            want = blocked & self.autojump & self.on_ground & (np.linalg.norm(move, axis=1) > 0.1)
            if want.any():
                probe = pos.copy()
                probe[:, 0] += np.sign(move[:, 0]) * 0.35
                probe[:, 2] += np.sign(move[:, 1]) * 0.35
                probe[:, 1] += 1.05
                can = want & ~self._box_hits(world, probe)
                vel[:, 1] = np.where(can, JUMP_SPEED, vel[:, 1])

        # vertical move with landing and head bumps
        new_y = pos[:, 1] + vel[:, 1] * dt
        falling = vel[:, 1] <= 0
        feet = np.stack([pos[:, 0], new_y, pos[:, 2]], axis=1)
        ground_hit = falling & self._points_hit(world, feet, _FEET_OFFS)
        head_hit = ~falling & self._points_hit(world, feet, _HEAD_OFFS)
        land_y = np.floor(new_y + 0.5) + 0.5  # top face of the node the feet sank into
        impact = np.where(ground_hit, -vel[:, 1], 0.0)
        pos[:, 1] = np.where(ground_hit, land_y, np.where(head_hit, pos[:, 1], new_y))
        vel[:, 1] = np.where(ground_hit | head_hit, 0.0, vel[:, 1])
        was_on_ground = self.on_ground.copy()
        probe = pos.copy()
        probe[:, 1] -= 0.06
        self.on_ground = self._points_hit(world, probe, _FEET_OFFS)
        landed = self.on_ground & ~was_on_ground
        fall_damage = np.where(
            ground_hit & (impact > FALL_SAFE_SPEED) & ~in_liquid,
            np.round((impact - FALL_SAFE_SPEED) * FALL_DAMAGE_PER_SPEED),
            0.0,
        )
        now_inside = world.node_at(np.floor(pos + np.array([0.5, 0.5 + 0.3, 0.5])))
        hazard = DAMAGE_PER_S[now_inside] * dt
        fall_damage = np.where(alive, fall_damage, 0.0)
        hazard = np.where(alive, hazard, 0.0)
        self.hp = np.maximum(0.0, self.hp - fall_damage - hazard)
        self.alive &= self.hp > 0
        return StepInfo(blocked=blocked, landed=landed, fall_damage=fall_damage, hazard_damage=hazard)

    @staticmethod
    def _box_hits(world: World, feet: np.ndarray) -> np.ndarray:
        return Bodies._points_hit(world, feet, _BODY_OFFS)

    @staticmethod
    def _points_hit(world: World, feet: np.ndarray, offs: np.ndarray) -> np.ndarray:
        """Does the box footprint at ``feet`` (n, 3) touch a solid node at any of the offsets?"""
        pts = feet[:, None, :] + offs[None, :, :]
        solid: np.ndarray = SOLID[world.node_at(np.floor(pts + 0.5))]
        return np.asarray(solid.any(axis=1))


def _footprint(levels: np.ndarray) -> np.ndarray:
    """Offsets of the four footprint corners at each height in ``levels``: ``(4 * len, 3)``."""
    offs = np.zeros((len(levels), 4, 3))
    offs[:, :, 0] = _CORNERS[None, :, 0]
    offs[:, :, 1] = levels[:, None]
    offs[:, :, 2] = _CORNERS[None, :, 1]
    return offs.reshape(-1, 3)


_BODY_OFFS = _footprint(_BODY_LEVELS)
_FEET_OFFS = _footprint(np.array([0.0]))
_HEAD_OFFS = _footprint(np.array([HEIGHT]))
