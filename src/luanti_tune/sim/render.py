"""Top-view rendering of a simulation to RGB arrays, PNG and GIF (vectorised colour lookup)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from luanti_tune.sim.core import Simulation
from luanti_tune.sim.world import LIQUID, SOLID

COLOURS = np.array(
    [
        [20, 20, 30],  # air (nothing below)
        [128, 128, 128],  # stone
        [70, 150, 60],  # grass
        [150, 110, 60],  # wood
        [50, 100, 220],  # water
        [240, 90, 20],  # lava
        [220, 200, 130],  # sand
        [245, 245, 250],  # snow
        [120, 90, 40],  # ladder
        [160, 120, 80],  # bridge
        [60, 60, 60],  # wall
    ],
    dtype=np.float64,
)


def top_view(sim: Simulation, scale: int = 6, goal: np.ndarray | None = None) -> np.ndarray:
    """``(size_z*scale, size_x*scale, 3)`` uint8 image: terrain shaded by height, bodies as dots."""
    nodes = sim.world.nodes
    filled = SOLID[nodes] | LIQUID[nodes]
    sy = nodes.shape[1]
    top = sy - 1 - np.argmax(filled[:, ::-1, :], axis=1)
    ids = np.take_along_axis(nodes, top[:, None, :], axis=1)[:, 0, :]
    shade = 0.55 + 0.45 * (top / max(1, sy - 1))
    img = COLOURS[ids] * shade[:, :, None]
    img = np.clip(img, 0, 255).astype(np.uint8).transpose(1, 0, 2)  # rows = z, cols = x
    img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    img = img[::-1].copy()  # +z up
    h = img.shape[0]

    def dot(x: float, z: float, colour: Sequence[int], r: int) -> None:
        cx, cz = int((x + 0.5) * scale), int(h - (z + 0.5) * scale)
        img[max(0, cz - r) : cz + r + 1, max(0, cx - r) : cx + r + 1] = colour

    for p in sim.items:
        dot(p[0], p[2], (230, 60, 230), max(1, scale // 3))
    if goal is not None:
        dot(goal[0], goal[2], (255, 230, 0), max(2, scale // 2))
    b = sim.bodies
    for actor in sim.order:
        if not b.alive[actor.idx]:
            continue
        colour = (220, 30, 30) if actor.kind == "player" else (30, 80, 255)
        dot(b.pos[actor.idx, 0], b.pos[actor.idx, 2], colour, max(2, scale // 2))
    return img


def save_frames(frames: Sequence[np.ndarray], path: Path, fps: float = 11.0) -> Path:
    """PNG for one frame (or ``.png`` paths), GIF otherwise."""
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() == ".png" or len(frames) == 1:
        Image.fromarray(frames[-1]).save(path)
        return path
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path
