"""Machinery shared by dataset builders: manifests, content hashes, episode/time splits, files.

A dataset is a set of named numpy arrays with equal first dimension plus a JSON manifest
(schema ``luanti.dataset/1``): the event id range and filters it was built from, the feature
spec, counts, the split and a sha256 over the arrays. Saved datasets are a directory holding
``data.npz`` (``numpy.savez``, loaded with ``allow_pickle=False``) and ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from luanti_tune.errors import LuantiTuneError

DATASET_SCHEMA = "luanti.dataset/1"


class DatasetError(LuantiTuneError):
    """A dataset file is missing, corrupted or does not match its manifest."""


def arrays_hash(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over names, dtypes, shapes and bytes of every array (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def split_by_group(
    group_of_row: np.ndarray, group_end_time: Sequence[float], val_fraction: float
) -> tuple[np.ndarray, list[int]]:
    """Boolean ``is_val`` per row and the validation group ids.

    Whole groups (episodes) go to one side only; the most recent groups (by end time) are
    the validation set, about ``val_fraction`` of the rows, at least one group when there
    are two or more groups.
    """
    n_groups = len(group_end_time)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    counts = np.bincount(group_of_row, minlength=n_groups) if len(group_of_row) else np.zeros(n_groups, int)
    present = [g for g in range(n_groups) if counts[g] > 0]
    val: list[int] = []
    if len(present) >= 2 and val_fraction > 0:
        target = val_fraction * counts.sum()
        taken = 0
        for g in sorted(present, key=lambda g: group_end_time[g], reverse=True):
            if taken >= target or len(val) >= len(present) - 1:
                break
            val.append(g)
            taken += counts[g]
    is_val = np.isin(group_of_row, np.asarray(val, dtype=group_of_row.dtype if len(group_of_row) else int))
    return is_val, sorted(val)


@dataclass
class Dataset:
    """Named arrays (same length) + manifest; ``is_val`` marks the validation rows."""

    arrays: dict[str, np.ndarray]
    manifest: dict[str, Any] = field(default_factory=dict)
    #: derived views a builder hands to its trainer (e.g. held-out trajectories); not saved
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else 0

    def rows(self, mask: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[mask] for k, v in self.arrays.items()}

    def train(self) -> dict[str, np.ndarray]:
        return self.rows(~self.arrays["is_val"])

    def val(self) -> dict[str, np.ndarray]:
        return self.rows(self.arrays["is_val"])

    def save(self, directory: Path | str) -> Path:
        """Write ``data.npz`` + ``manifest.json`` into ``directory`` atomically (temp dir + rename)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = directory.with_name(f".{directory.name}.{uuid.uuid4().hex}.tmp")
        tmp.mkdir()
        np.savez(tmp / "data.npz", **self.arrays)  # type: ignore[arg-type]
        with open(tmp / "manifest.json", "w", encoding="utf-8") as fh:
            json.dump(self.manifest, fh, indent=2, sort_keys=True, allow_nan=False)
        if directory.exists():
            import shutil

            shutil.rmtree(directory)
        os.rename(tmp, directory)
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> Dataset:
        """Load and verify a saved dataset (hash must match the manifest)."""
        directory = Path(directory)
        try:
            with open(directory / "manifest.json", encoding="utf-8") as fh:
                manifest = json.load(fh)
            with np.load(directory / "data.npz", allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            raise DatasetError(f"dataset at {directory} cannot be read: {exc}") from exc
        if arrays_hash(arrays) != manifest.get("hash"):
            raise DatasetError(f"dataset at {directory} does not match its manifest hash (corrupted)")
        return cls(arrays=arrays, manifest=manifest)


def base_manifest(kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "schema": DATASET_SCHEMA,
        "kind": kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **fields,
    }
