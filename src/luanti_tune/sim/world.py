"""Seeded voxel terrain, node changes during an episode, line of sight and local grids.

Coordinates follow Luanti: the node at integer position ``(x, y, z)`` occupies the cube
``[x-0.5, x+0.5)`` on each axis; a body's position is its feet. The world array is indexed
``nodes[x, y, z]`` with node coordinates equal to array indices (``0 <= x < size_x``).
Everything outside the array is an unbreakable wall.

All per-step work (lookups, lava spread, bridge collapse, line of sight, ``nearby`` grids) is
vectorised with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from luanti_tune.schemas.common import NODE_CODES

# ----------------------------------------------------------------------------- node table

AIR, STONE, DIRT, WOOD, WATER, LAVA, SAND, SNOW, LADDER, BRIDGE, WALL = range(11)

NODE_NAMES: tuple[str, ...] = (
    "air",
    "default:stone",
    "default:dirt_with_grass",
    "default:wood",
    "default:water_source",
    "default:lava_source",
    "default:sand",
    "default:snowblock",
    "default:ladder_wood",
    "sim:bridge",
    "sim:wall",
)
NODE_IDS: dict[str, int] = {name: i for i, name in enumerate(NODE_NAMES)}
#: Items a player may place, by item name -> node id.
PLACEABLE: dict[str, int] = {"default:wood": WOOD, "default:dirt_with_grass": DIRT, "default:stone": STONE}

_N = len(NODE_NAMES)
#: Blocks movement.
SOLID = np.zeros(_N, dtype=bool)
SOLID[[STONE, DIRT, WOOD, SAND, SNOW, BRIDGE, WALL]] = True
#: Can be dug by players and agents (walls and air cannot; liquids cannot).
DIGGABLE = np.zeros(_N, dtype=bool)
DIGGABLE[[STONE, DIRT, WOOD, SAND, SNOW, LADDER, BRIDGE]] = True
LIQUID = np.zeros(_N, dtype=bool)
LIQUID[[WATER, LAVA]] = True
#: Code in the ``nearby`` observation grid (schemas.NODE_CODES).
CODE = np.full(_N, NODE_CODES["solid"], dtype=np.int8)
CODE[AIR] = NODE_CODES["air"]
CODE[WATER] = NODE_CODES["water"]
CODE[LAVA] = NODE_CODES["lava"]
CODE[SAND] = NODE_CODES["slow"]
CODE[SNOW] = NODE_CODES["slow"]
CODE[LADDER] = NODE_CODES["climbable"]
#: Walk-speed factor while standing on (or in) the node.
SPEED_FACTOR = np.ones(_N, dtype=np.float64)
SPEED_FACTOR[[SAND, SNOW]] = 0.55
SPEED_FACTOR[WATER] = 0.5
SPEED_FACTOR[LAVA] = 0.4
#: Damage per second while the body is inside the node (lava: 8 hp/s, a full-health player dies in 2.5 s).
DAMAGE_PER_S = np.zeros(_N, dtype=np.float64)
DAMAGE_PER_S[LAVA] = 8.0

UNKNOWN_CODE = NODE_CODES["unknown"]

TerrainKind = Literal["hills", "flat", "arena"]


@dataclass(frozen=True)
class WorldConfig:
    """Size and features of a generated world (all seeded)."""

    size_x: int = 48
    size_y: int = 24
    size_z: int = 48
    terrain: TerrainKind = "hills"
    base_height: int = 6
    relief: float = 4.0
    water_level: int = 5
    lava_pools: int = 3
    walls: int = 5
    river: bool = True
    border: bool = True


class World:
    """A voxel world: ``nodes[x, y, z]`` holds node ids; ``changes`` lists node edits this step."""

    def __init__(self, config: WorldConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.nodes = np.zeros((config.size_x, config.size_y, config.size_z), dtype=np.uint8)
        self.bridge_cells = np.zeros((0, 3), dtype=np.int64)
        self.river_z: tuple[int, int] | None = None
        self._generate(rng)
        # a frame around the world (walls at the sides and below, air above) lets lookups clamp
        # indices instead of masking; it is wide enough for every ``nearby`` grid radius
        p = _PAD
        sx, sy, sz = self.nodes.shape
        padded = np.full((sx + 2 * p, sy + 2 * p, sz + 2 * p), WALL, dtype=np.uint8)
        padded[p:-p, sy + p :, p:-p] = AIR
        padded[p:-p, p:-p, p:-p] = self.nodes
        self._padded = padded
        self._flat = padded.reshape(-1)
        self._strides = np.array([padded.shape[1] * padded.shape[2], padded.shape[2], 1], dtype=np.int64)
        self._max = np.array(padded.shape, dtype=np.int64) - 1
        self.nodes = padded[p:-p, p:-p, p:-p]  # a view: edits write through
        self.heights = self.surface_heights()

    # ------------------------------------------------------------------ generation

    def _generate(self, rng: np.random.Generator) -> None:
        c = self.config
        sx, sy, sz = c.size_x, c.size_y, c.size_z
        if c.terrain == "hills":
            height = c.base_height + _smooth_noise(rng, sx, sz, cells=5) * c.relief
        else:
            height = np.full((sx, sz), float(c.base_height))
        h = np.clip(np.round(height).astype(np.int64), 2, sy - 6)
        ys = np.arange(sy)[None, :, None]
        hh = h[:, None, :]
        self.nodes[:] = AIR
        self.nodes[(ys <= hh - 3)] = STONE
        self.nodes[(ys > hh - 3) & (ys <= hh)] = DIRT
        if c.terrain == "hills":
            # snow on the highest ground, sand on shores, water in the low parts
            top_snow = h >= c.base_height + c.relief * 0.55
            self._set_top(h, top_snow, SNOW)
            shore = (h <= c.water_level + 1) & (h >= c.water_level)
            self._set_top(h, shore, SAND)
            low = h < c.water_level
            water_mask = (ys > hh) & (ys <= c.water_level) & low[:, None, :]
            self.nodes[water_mask] = WATER
        if c.river and c.terrain == "hills" and sz >= 24:
            self._river_with_bridge(rng, h)
        for _ in range(c.lava_pools if c.terrain == "hills" else 0):
            self._lava_pool(rng, h)
        for _ in range(c.walls if c.terrain != "flat" else 0):
            self._wall(rng, h)
        if c.border:
            top = sy - 1
            self.nodes[0, :top, :] = WALL
            self.nodes[-1, :top, :] = WALL
            self.nodes[:, :top, 0] = WALL
            self.nodes[:, :top, -1] = WALL
        self.nodes[:, 0, :] = WALL  # bedrock

    def _set_top(self, h: np.ndarray, mask: np.ndarray, node: int) -> None:
        xs, zs = np.nonzero(mask)
        self.nodes[xs, h[xs, zs], zs] = node

    def _river_with_bridge(self, rng: np.random.Generator, h: np.ndarray) -> None:
        c = self.config
        z0 = int(rng.integers(c.size_z // 3, 2 * c.size_z // 3 - 3))
        width = 3
        self.river_z = (z0, z0 + width - 1)
        level = max(2, c.water_level - 1)
        for dz in range(width):
            z = z0 + dz
            self.nodes[:, level + 1 :, z] = AIR
            self.nodes[:, level - 1 : level + 1, z] = WATER
            self.nodes[:, : level - 1, z] = STONE
        # a bridge at the height of the surrounding ground
        bx = int(rng.integers(4, c.size_x - 6))
        bh = int(max(h[bx, z0 - 1], h[bx, z0 + width])) if z0 + width < c.size_z else int(h[bx, z0 - 1])
        cells = [(bx + dx, bh, z0 + dz) for dx in range(2) for dz in range(width)]
        arr = np.asarray(cells, dtype=np.int64)
        self.nodes[arr[:, 0], arr[:, 1], arr[:, 2]] = BRIDGE
        # clear the walking space above the bridge and at both ends
        for dx in range(2):
            self.nodes[bx + dx, bh + 1 :, z0 - 1 : z0 + width + 1] = AIR
        self.bridge_cells = arr

    def _lava_pool(self, rng: np.random.Generator, h: np.ndarray) -> None:
        c = self.config
        x = int(rng.integers(3, c.size_x - 5))
        z = int(rng.integers(3, c.size_z - 5))
        r = int(rng.integers(1, 3))
        for dx in range(-r, r + 1):
            for dz in range(-r, r + 1):
                xx, zz = x + dx, z + dz
                if 0 < xx < c.size_x - 1 and 0 < zz < c.size_z - 1:
                    self.nodes[xx, h[xx, zz], zz] = LAVA

    def _wall(self, rng: np.random.Generator, h: np.ndarray) -> None:
        c = self.config
        length = int(rng.integers(4, 10))
        x = int(rng.integers(2, c.size_x - length - 2))
        z = int(rng.integers(2, c.size_z - length - 2))
        along_x = bool(rng.random() < 0.5)
        tall = int(rng.integers(2, 4))
        for i in range(length):
            xx, zz = (x + i, z) if along_x else (x, z + i)
            base = h[xx, zz]
            self.nodes[xx, base + 1 : base + 1 + tall, zz] = STONE

    # ------------------------------------------------------------------ queries

    @property
    def shape(self) -> tuple[int, int, int]:
        return (int(self.nodes.shape[0]), int(self.nodes.shape[1]), int(self.nodes.shape[2]))

    def surface_heights(self) -> np.ndarray:
        """``(size_x, size_z)`` y of the highest solid or liquid node per column."""
        filled = SOLID[self.nodes] | LIQUID[self.nodes]
        top = self.nodes.shape[1] - 1 - np.argmax(filled[:, ::-1, :], axis=1)
        return top.astype(np.int64)

    def node_at(self, cells: np.ndarray) -> np.ndarray:
        """Node ids at integer ``cells`` of shape ``(..., 3)``; outside is wall (open air above)."""
        c = np.asarray(cells).astype(np.int64) + _PAD
        np.maximum(c, 0, out=c)
        np.minimum(c, self._max, out=c)
        out: np.ndarray = self._flat[c @ self._strides]
        return out

    def solid_at_points(self, pts: np.ndarray) -> np.ndarray:
        """Is the node containing each float point ``(..., 3)`` solid?"""
        return SOLID[self.node_at(np.floor(np.asarray(pts) + 0.5))]

    def spawn_point(self, x: int, z: int) -> np.ndarray:
        """Feet position standing on the column ``(x, z)``; liquids count as the floor."""
        top = int(self.surface_heights()[x, z])
        return np.array([float(x), top + 0.5, float(z)])

    def standable_columns(self) -> np.ndarray:
        """``(k, 2)`` inner ``(x, z)`` columns with a dry, non-hazard top and headroom."""
        h = self.surface_heights()
        sx, _, sz = self.nodes.shape
        xs, zs = np.meshgrid(np.arange(sx), np.arange(sz), indexing="ij")
        top = self.node_at(np.stack([xs, h, zs], axis=-1))
        head = self.node_at(np.stack([xs, h + 1, zs], axis=-1))
        head2 = self.node_at(np.stack([xs, h + 2, zs], axis=-1))
        ok = SOLID[top] & (top != WALL) & ~SOLID[head] & ~SOLID[head2] & ~LIQUID[head]
        ok[[0, -1], :] = False
        ok[:, [0, -1]] = False
        return np.argwhere(ok)

    def line_of_sight(self, a: np.ndarray, b: np.ndarray, samples: int = 24) -> np.ndarray:
        """Vectorised visibility between eye points ``a`` and ``b`` (both ``(n, 3)``)."""
        a = np.atleast_2d(np.asarray(a, dtype=np.float64))
        b = np.atleast_2d(np.asarray(b, dtype=np.float64))
        t = np.linspace(0.0, 1.0, samples)[None, :, None]
        pts = a[:, None, :] + (b - a)[:, None, :] * t
        blocked = self.solid_at_points(pts[:, 1:-1, :])
        return np.asarray(~blocked.any(axis=1))

    def nearby_codes(self, cells: np.ndarray, radius: int) -> np.ndarray:
        """``(n, (2r+1)**3)`` schema codes around integer ``cells`` in the schema's y, z, x order."""
        base = np.asarray(cells).astype(np.int64) + _PAD
        np.maximum(base, radius, out=base)
        np.minimum(base, self._max - radius, out=base)
        idx = (base @ self._strides)[:, None] + (_offsets(radius) @ self._strides)[None, :]
        codes: np.ndarray = CODE[self._flat[idx]]
        return codes

    # ------------------------------------------------------------------ changes

    def set_nodes(self, cells: np.ndarray, node: int) -> None:
        cells = np.atleast_2d(np.asarray(cells, dtype=np.int64))
        self.nodes[cells[:, 0], cells[:, 1], cells[:, 2]] = node

    def in_bounds(self, cell: np.ndarray) -> bool:
        sx, sy, sz = self.nodes.shape
        x, y, z = (int(v) for v in cell)
        return 0 <= x < sx and 0 <= y < sy and 0 <= z < sz

    def collapse_bridge(self) -> np.ndarray:
        """Remove every bridge node; returns the cells that changed."""
        if len(self.bridge_cells) == 0:
            return self.bridge_cells
        ids = self.nodes[self.bridge_cells[:, 0], self.bridge_cells[:, 1], self.bridge_cells[:, 2]]
        cells = self.bridge_cells[ids == BRIDGE]
        if len(cells):
            self.set_nodes(cells, AIR)
        return cells

    def spread_lava(self, rng: np.random.Generator, prob: float = 0.35, limit: int = 24) -> np.ndarray:
        """Lava flows into air with solid ground below, beside it or one level up (one step, vectorised)."""
        lava = self.nodes == LAVA
        near = np.zeros_like(lava)
        near[1:, :, :] |= lava[:-1, :, :]
        near[:-1, :, :] |= lava[1:, :, :]
        near[:, :, 1:] |= lava[:, :, :-1]
        near[:, :, :-1] |= lava[:, :, 1:]
        near[:, 1:, :] |= near[:, :-1, :].copy()  # also overflow onto the ground beside a pool
        below_solid = np.zeros_like(lava)
        below_solid[:, 1:, :] = SOLID[self.nodes[:, :-1, :]]
        cand = np.argwhere(near & (self.nodes == AIR) & below_solid)
        if len(cand) == 0:
            return cand
        pick = cand[rng.random(len(cand)) < prob][:limit]
        if len(pick):
            self.set_nodes(pick, LAVA)
        return pick


_OFFSETS: dict[int, np.ndarray] = {}
_PAD = 10  # > the largest ``nearby`` radius (schemas.agent.MAX_NEARBY_RADIUS = 8)


def _offsets(radius: int) -> np.ndarray:
    """Offsets ``(dx, dy, dz)`` in schema order: y outermost, then z, then x fastest."""
    if radius not in _OFFSETS:
        r = np.arange(-radius, radius + 1)
        dy, dz, dx = np.meshgrid(r, r, r, indexing="ij")
        _OFFSETS[radius] = np.stack([dx.ravel(), dy.ravel(), dz.ravel()], axis=1)
    return _OFFSETS[radius]


def _smooth_noise(rng: np.random.Generator, sx: int, sz: int, cells: int) -> np.ndarray:
    """Value noise in ``[-1, 1]``: a coarse random grid, bilinearly upsampled, plus an octave."""
    out = np.zeros((sx, sz))
    for octave, amp in ((cells, 1.0), (cells * 2, 0.35)):
        coarse = rng.uniform(-1, 1, size=(octave + 1, octave + 1))
        gx = np.linspace(0, octave, sx)
        gz = np.linspace(0, octave, sz)
        ix = np.minimum(gx.astype(int), octave - 1)
        iz = np.minimum(gz.astype(int), octave - 1)
        fx = (gx - ix)[:, None]
        fz = (gz - iz)[None, :]
        fx = fx * fx * (3 - 2 * fx)
        fz = fz * fz * (3 - 2 * fz)
        c00 = coarse[ix][:, iz]
        c10 = coarse[ix + 1][:, iz]
        c01 = coarse[ix][:, iz + 1]
        c11 = coarse[ix + 1][:, iz + 1]
        out += amp * (c00 * (1 - fx) * (1 - fz) + c10 * fx * (1 - fz) + c01 * (1 - fx) * fz + c11 * fx * fz)
    return np.asarray(out / 1.35)
