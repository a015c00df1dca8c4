"""The mod travels with the wheel: every file of mods/luanti_tune (but its test specs) is in it,
and an installed copy under <prefix>/share/luanti-tune/mods is found and installed into a world."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from luanti_tune.luanti import server

ROOT = Path(__file__).resolve().parents[2]
MOD = ROOT / "mods" / "luanti_tune"


def test_wheel_carries_every_mod_file(tmp_path: Path) -> None:
    # built from a copy: setuptools writes build/ and *.egg-info next to the sources
    tree = tmp_path / "tree"
    for name in ("src", "mods"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, tree / name)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(tree),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("luanti_tune-*.whl")
    marker = ".data/data/share/luanti-tune/mods/luanti_tune/"
    names = {n.split(marker, 1)[1] for n in zipfile.ZipFile(wheel).namelist() if marker in n}
    want = {str(p.relative_to(MOD)) for p in MOD.rglob("*") if p.is_file() and "spec" not in p.relative_to(MOD).parts}
    assert names == want


def test_installed_copy_is_found_and_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = tmp_path / "venv"
    shared = prefix / "share" / "luanti-tune" / "mods" / "luanti_tune"
    (shared / "src").mkdir(parents=True)
    for p in MOD.rglob("*"):
        rel = p.relative_to(MOD)
        if p.is_file() and "spec" not in rel.parts:
            (shared / rel).write_bytes(p.read_bytes())
    monkeypatch.delenv("LUANTI_TUNE_MODS_DIR", raising=False)
    monkeypatch.setattr(sys, "prefix", str(prefix))
    # as installed from a wheel: no source checkout next to the package
    monkeypatch.setattr(server, "__file__", str(tmp_path / "site-packages" / "luanti_tune" / "luanti" / "server.py"))
    assert server.mods_source_dir() == prefix / "share" / "luanti-tune" / "mods"
    world = tmp_path / "world"
    world.mkdir()
    installed = server.install_mod(world)
    assert (installed / "init.lua").read_bytes() == (MOD / "init.lua").read_bytes()
    assert (installed / "src" / "act.lua").is_file()
