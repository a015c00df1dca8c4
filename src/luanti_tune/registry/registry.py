"""File-system model registry (see :mod:`luanti_tune.registry` for the layout and the API)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from luanti_tune.errors import ModelError
from luanti_tune.policies.families import WEIGHTS_FILE, get_family

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ALIASES = "aliases.json"
HISTORY = "history.jsonl"
MANIFEST_SCHEMA = "luanti.model/1"
ALIAS_NAMES = ("champion", "candidate")
_VERSION_RE = re.compile(r"^v(\d{4,})$")
#: ``family`` or ``family@scope`` (e.g. ``pursuit@alice``: a per-player model of family pursuit).
_FAMILY_RE = re.compile(r"^[a-z][a-z0-9_\-]{0,63}(@[A-Za-z0-9_.:\-+]{1,64})?$")


def base_family(family: str) -> str:
    """``pursuit@alice`` -> ``pursuit`` (scopes share their family's spec)."""
    return family.split("@", 1)[0]


#: How many previous champions ``rollback`` can step back through.
MAX_PREVIOUS = 16


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, allow_nan=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _now_iso() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def _clean_json(value: Any) -> Any:
    """Make metrics JSON-safe: numpy scalars -> python, NaN/inf -> None (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


@dataclass
class LoadedModel:
    """A verified model version ready to run: ``module(*inputs) -> outputs`` (see families)."""

    family: str
    version: str
    module: Any
    adapter: Any
    manifest: dict[str, Any]
    path: Path
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = str(self.manifest.get("name") or self.family)

    def forward(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the torch module on named float32 arrays; returns named numpy outputs."""
        import torch

        names = self.adapter.input_names
        with torch.inference_mode():
            tensors = [torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)) for n in names]
            out = self.module(*tensors)
        if not isinstance(out, tuple | list):
            out = (out,)
        return {n: o.detach().cpu().numpy() for n, o in zip(self.adapter.output_names, out, strict=True)}

    def decide(self, observations: Any, memory: Any) -> list[Any]:
        """featurize -> forward -> decode for a batch of observations (one family)."""
        feats = self.adapter.featurize(observations, memory)
        return list(self.adapter.decode(observations, self.forward(feats)))


@dataclass
class VersionInfo:
    family: str
    version: str
    created: str
    parent: str | None
    aliases: list[str] = field(default_factory=list)
    gate: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Model versions, aliases and history under ``root`` (``Settings.resolved_model_path``)."""

    def __init__(self, root: Path | str, *, keep: int = 20) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.root = Path(root)
        self.keep = keep

    # ------------------------------------------------------------------ paths and locking

    def family_dir(self, family: str) -> Path:
        if not _FAMILY_RE.match(family):
            raise ModelError(f"invalid model family name {family!r}")
        return self.root / family

    def version_dir(self, family: str, version: str) -> Path:
        if not _VERSION_RE.match(version):
            raise ModelError(f"invalid version {version!r} (expected e.g. v0001)")
        return self.family_dir(family) / version

    @contextlib.contextmanager
    def _locked(self, family: str) -> Iterator[Path]:
        fdir = self.family_dir(family)
        fdir.mkdir(parents=True, exist_ok=True)
        with open(fdir / ".lock", "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield fdir
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    # ------------------------------------------------------------------ reading

    def families(self, *, include_scopes: bool = False) -> list[str]:
        """Family directories; per-player scopes (``pursuit@alice``) only with ``include_scopes``."""
        if not self.root.is_dir():
            return []
        names = [p.name for p in self.root.iterdir() if p.is_dir() and _FAMILY_RE.match(p.name)]
        return sorted(n for n in names if include_scopes or "@" not in n)

    def versions(self, family: str) -> list[str]:
        fdir = self.family_dir(family)
        if not fdir.is_dir():
            return []
        found = [p.name for p in fdir.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def aliases(self, family: str) -> dict[str, Any]:
        """``{"champion", "candidate", "previous": [...], "generation": n, "updated"}``."""
        path = self.family_dir(family) / ALIASES
        try:
            with open(path, encoding="utf-8") as fh:
                data: dict[str, Any] = json.load(fh)
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise ModelError(f"alias file {path} is unreadable: {exc}") from exc
        data.setdefault("champion", None)
        data.setdefault("candidate", None)
        data.setdefault("previous", [])
        data.setdefault("generation", 0)
        return data

    def champion_version(self, family: str) -> str | None:
        """Cheap (one small file read): the engine polls this to notice promotions/rollbacks."""
        champion = self.aliases(family).get("champion")
        return str(champion) if champion else None

    def generation(self, family: str) -> int:
        """Increases on every champion change (promote or rollback)."""
        return int(self.aliases(family).get("generation", 0))

    def resolve(self, family: str, ref: str) -> str:
        """``champion``/``candidate``/``previous`` or a version id -> a version id."""
        if ref in ALIAS_NAMES:
            version = self.aliases(family).get(ref)
            if not version:
                raise ModelError(f"family {family!r} has no {ref} model")
            return str(version)
        if ref == "previous":
            prev = self.aliases(family).get("previous") or []
            if not prev:
                raise ModelError(f"family {family!r} has no previous champion")
            return str(prev[-1])
        if ref == "latest":
            versions = self.versions(family)
            if not versions:
                raise ModelError(f"family {family!r} has no versions")
            return versions[-1]
        if not self.version_dir(family, ref).is_dir():
            raise ModelError(f"model {family}:{ref} does not exist under {self.root}")
        return ref

    def manifest(self, family: str, ref: str = "champion") -> dict[str, Any]:
        version = self.resolve(family, ref)
        path = self.version_dir(family, version) / MANIFEST
        try:
            with open(path, encoding="utf-8") as fh:
                data: dict[str, Any] = json.load(fh)
        except FileNotFoundError as exc:
            raise ModelError(f"model {family}:{version} has no {MANIFEST}") from exc
        except ValueError as exc:
            raise ModelError(f"model {family}:{version}: {MANIFEST} is not valid JSON: {exc}") from exc
        if data.get("family") != family or data.get("version") != version:
            raise ModelError(f"model {family}:{version}: manifest names {data.get('family')}:{data.get('version')}")
        return data

    def info(self, family: str) -> list[VersionInfo]:
        al = self.aliases(family)
        out = []
        for v in self.versions(family):
            try:
                m = self.manifest(family, v)
            except ModelError:
                continue
            tags = [a for a in ALIAS_NAMES if al.get(a) == v]
            if v in (al.get("previous") or []):
                tags.append("previous")
            out.append(
                VersionInfo(
                    family=family,
                    version=v,
                    created=str(m.get("created", "")),
                    parent=m.get("parent"),
                    aliases=tags,
                    gate=m.get("gate"),
                    metrics=dict(m.get("metrics") or {}),
                )
            )
        return out

    def history(self, family: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Registry events, oldest first: save, promote, reject, rollback, skip, fail."""
        path = self.family_dir(family) / HISTORY
        if not path.exists():
            return []
        rows = []
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    log.warning("skipping corrupt history line in %s", path)
        return rows[-limit:] if limit else rows

    def last_event(self, family: str) -> dict[str, Any] | None:
        """The newest history row (reads only the file's tail)."""
        path = self.family_dir(family) / HISTORY
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 8192))
                lines = fh.read().splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(lines):
            try:
                row: dict[str, Any] = json.loads(line)
                return row
            except ValueError:
                continue
        return None

    def verify(self, family: str, ref: str = "champion") -> dict[str, Any]:
        """Check every file hash listed in the manifest; returns the manifest or raises ModelError."""
        manifest = self.manifest(family, ref)
        vdir = self.version_dir(family, manifest["version"])
        files = manifest.get("files")
        if not isinstance(files, dict) or not files:
            raise ModelError(f"model {family}:{manifest['version']}: manifest lists no files")
        for rel, expected in files.items():
            path = (vdir / rel).resolve()
            if vdir.resolve() not in path.parents:
                raise ModelError(f"model {family}:{manifest['version']}: file {rel!r} escapes the version directory")
            if not path.is_file():
                raise ModelError(f"model {family}:{manifest['version']}: file {rel} is missing")
            actual = sha256_file(path)
            if actual != expected.get("sha256"):
                raise ModelError(
                    f"model {family}:{manifest['version']}: file {rel} fails its sha256 check "
                    f"(corrupted or tampered; expected {str(expected.get('sha256'))[:12]}…, got {actual[:12]}…)"
                )
        return manifest

    def load(self, family: str, ref: str = "champion") -> LoadedModel:
        """Rebuild the model from its manifest alone (no training code), verifying every hash."""
        manifest = self.verify(family, ref)
        version = manifest["version"]
        vdir = self.version_dir(family, version)
        spec = get_family(base_family(family))
        arch = manifest.get("architecture") or {}
        try:
            adapter = spec.adapter(arch)
            if spec.loader is not None:
                module = spec.loader(vdir, manifest)
            else:
                from safetensors.torch import load_file

                assert spec.build is not None
                module = spec.build(arch)
                state = load_file(str(vdir / WEIGHTS_FILE))
                module.load_state_dict(state, strict=True)
                module.eval()
        except ModelError:
            raise
        except Exception as exc:  # a manifest/weights mismatch must surface as ModelError
            raise ModelError(f"model {family}:{version} cannot be rebuilt from its manifest: {exc}") from exc
        return LoadedModel(family=family, version=version, module=module, adapter=adapter, manifest=manifest, path=vdir)

    # ------------------------------------------------------------------ writing

    def save(
        self,
        family: str,
        *,
        architecture: Mapping[str, Any],
        module: Any = None,
        files: Mapping[str, Path | bytes] | None = None,
        parent: str | None = None,
        dataset: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        gate: Mapping[str, Any] | None = None,
        training: Mapping[str, Any] | None = None,
        name: str | None = None,
        alias: str | None = "candidate",
    ) -> str:
        """Store a new version atomically; returns its id (``v0001``, ``v0002``, ...).

        ``module`` (a torch module) is saved as ``weights.safetensors``; ``files`` adds arbitrary
        files (relative name -> source path or bytes), e.g. LoRA adapter files. Every file's
        sha256 goes into the manifest. ``alias`` (``"candidate"`` or ``None``) is pointed at the
        new version; promotion to champion goes through :meth:`promote` only.
        """
        if module is None and not files:
            raise ModelError("save needs a module or files")
        if alias not in (None, "candidate"):
            raise ModelError("save can only set the candidate alias; use promote() for champion")
        fdir = self.family_dir(family)
        fdir.mkdir(parents=True, exist_ok=True)
        tmp = fdir / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            listing: dict[str, dict[str, Any]] = {}
            if module is not None:
                from safetensors.torch import save_file

                state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
                save_file(state, str(tmp / WEIGHTS_FILE), metadata={"family": family})
            for rel, src in (files or {}).items():
                if rel in (MANIFEST, WEIGHTS_FILE) or rel.startswith(("/", "..")) or "/../" in rel:
                    raise ModelError(f"invalid model file name {rel!r}")
                dst = tmp / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(src, bytes | bytearray):
                    dst.write_bytes(bytes(src))
                else:
                    shutil.copyfile(src, dst)
            for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
                rel = path.relative_to(tmp).as_posix()
                listing[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
            with self._locked(family):
                version = self._next_version(family)
                manifest = {
                    "schema": MANIFEST_SCHEMA,
                    "family": family,
                    "version": version,
                    "name": name or family,
                    "parent": parent,
                    "created": _now_iso(),
                    "architecture": _clean_json(dict(architecture)),
                    "dataset": _clean_json(dict(dataset or {})),
                    "metrics": _clean_json(dict(metrics or {})),
                    "gate": _clean_json(dict(gate)) if gate is not None else None,
                    "training": _clean_json(dict(training or {})),
                    "files": listing,
                }
                _write_json_atomic(tmp / MANIFEST, manifest)
                os.rename(tmp, fdir / version)
                if alias == "candidate":
                    al = self.aliases(family)
                    al["candidate"] = version
                    self._write_aliases(family, al)
                self._append_history(family, {"action": "save", "version": version, "parent": parent})
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("saved model %s:%s", family, version)
        self.prune(family)
        return version

    def update_manifest(
        self,
        family: str,
        version: str,
        *,
        gate: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record a gate verdict and/or extra metrics after the fact (files stay untouched)."""
        with self._locked(family):
            manifest = self.manifest(family, version)
            if gate is not None:
                manifest["gate"] = _clean_json(dict(gate))
            if metrics is not None:
                manifest["metrics"] = {**manifest.get("metrics", {}), **_clean_json(dict(metrics))}
            _write_json_atomic(self.version_dir(family, version) / MANIFEST, manifest)
        return manifest

    def promote(self, family: str, ref: str, *, reason: str = "", force: bool = False) -> str:
        """Make ``ref`` the champion (the old champion becomes ``previous``); returns the version.

        Refuses a version whose stored gate verdict is not ``passed`` unless ``force`` (operator).
        """
        version = self.resolve(family, ref)
        manifest = self.verify(family, version)
        gate = manifest.get("gate")
        if not force and gate is not None and not gate.get("passed", False):
            raise ModelError(f"model {family}:{version} failed its gate ({gate.get('reason')}); use force to override")
        with self._locked(family):
            al = self.aliases(family)
            old = al.get("champion")
            if old == version:
                return version
            if old:
                al["previous"] = (list(al.get("previous") or []) + [old])[-MAX_PREVIOUS:]
            al["champion"] = version
            if al.get("candidate") == version:
                al["candidate"] = None
            al["generation"] = int(al.get("generation", 0)) + 1
            self._write_aliases(family, al)
            self._append_history(
                family, {"action": "promote", "version": version, "replaced": old, "reason": reason, "forced": force}
            )
        log.info("promoted %s:%s (was %s) %s", family, version, old, reason)
        return version

    def rollback(self, family: str, *, reason: str = "") -> str:
        """Restore the previous champion instantly (alias switch only); returns it."""
        with self._locked(family):
            al = self.aliases(family)
            previous = list(al.get("previous") or [])
            while previous:
                candidate = previous.pop()
                if self.version_dir(family, candidate).is_dir():
                    break
            else:
                raise ModelError(f"family {family!r} has no previous champion to roll back to")
            old = al.get("champion")
            al["champion"] = candidate
            al["previous"] = previous
            al["rolled_back"] = (list(al.get("rolled_back") or []) + [old])[-MAX_PREVIOUS:] if old else []
            al["generation"] = int(al.get("generation", 0)) + 1
            self._write_aliases(family, al)
            self._append_history(
                family, {"action": "rollback", "version": candidate, "replaced": old, "reason": reason}
            )
        log.warning("rolled back %s: %s -> %s (%s)", family, old, candidate, reason)
        return candidate

    def record(self, family: str, action: str, **fields: Any) -> None:
        """Append a free-form event (``skip``, ``fail``, ``reject``, ``monitor``...) to the history."""
        with self._locked(family):
            self._append_history(family, {"action": action, **fields})

    def prune(self, family: str, keep: int | None = None) -> list[str]:
        """Delete the oldest versions beyond ``keep``, never an aliased/previous one."""
        keep = self.keep if keep is None else keep
        removed: list[str] = []
        with self._locked(family):
            al = self.aliases(family)
            protected = {al.get("champion"), al.get("candidate"), *(al.get("previous") or [])}
            versions = self.versions(family)
            for v in versions[: max(0, len(versions) - keep)]:
                if v in protected:
                    continue
                shutil.rmtree(self.version_dir(family, v), ignore_errors=True)
                removed.append(v)
            if removed:
                self._append_history(family, {"action": "prune", "versions": removed})
        return removed

    # ------------------------------------------------------------------ internals

    def _next_version(self, family: str) -> str:
        existing = [int(v[1:]) for v in self.versions(family)]
        counter = self.family_dir(family) / ".counter"
        try:
            last = int(counter.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            last = 0
        n = max([last, *existing]) + 1
        counter.write_text(str(n))
        return f"v{n:04d}"

    def _write_aliases(self, family: str, data: dict[str, Any]) -> None:
        data = dict(data)
        data["updated"] = _now_iso()
        _write_json_atomic(self.family_dir(family) / ALIASES, data)

    def _append_history(self, family: str, row: dict[str, Any]) -> None:
        row = {"time": _now_iso(), **_clean_json(row)}
        with open(self.family_dir(family) / HISTORY, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
