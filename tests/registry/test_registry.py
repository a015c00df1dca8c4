"""Model registry: save/load fidelity, hashes, aliases, rollback, retention, generic files, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from luanti_tune.cli.main import cli
from luanti_tune.errors import ModelError
from luanti_tune.policies import pursuit as fam
from luanti_tune.policies.families import FamilySpec, register_family
from luanti_tune.registry import Registry


def _random_module(seed: int, **arch_over: object) -> tuple[object, dict]:
    arch = fam.architecture(**arch_over)
    torch.manual_seed(seed)
    module = fam.build_module(arch)
    for p in module.parameters():
        torch.nn.init.normal_(p, 0.0, 0.2)
    module.eval()
    return module, arch


def _outputs(module: object, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        mean, log_std = module(*[torch.from_numpy(inputs[k]) for k in fam.INPUTS])  # type: ignore[operator]
    return mean.numpy(), log_std.numpy()


@pytest.fixture()
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


def test_save_load_reproduces_predictions_and_manifest(reg: Registry) -> None:
    module, arch = _random_module(1, hidden=32)
    v = reg.save("pursuit", module=module, architecture=arch, metrics={"x": np.float32(1.5)}, dataset={"hash": "abc"})
    assert v == "v0001" and reg.aliases("pursuit")["candidate"] == v
    loaded = reg.load("pursuit", v)
    inputs = loaded.adapter.example_inputs(16)
    ref = _outputs(module, inputs)
    got = loaded.forward(inputs)
    np.testing.assert_array_equal(got["mean"], ref[0])
    np.testing.assert_array_equal(got["log_std"], ref[1])
    m = loaded.manifest
    assert m["family"] == "pursuit" and m["version"] == v and m["parent"] is None
    assert m["architecture"]["hidden"] == 32 and m["dataset"] == {"hash": "abc"} and m["metrics"]["x"] == 1.5
    assert set(m["files"]) == {"weights.safetensors"} and len(m["files"]["weights.safetensors"]["sha256"]) == 64
    # safetensors, never pickle: the weights file starts with a little-endian header length + JSON
    raw = (loaded.path / "weights.safetensors").read_bytes()
    assert raw[8:9] == b"{"


def test_manifest_alone_rebuilds_without_training_code(reg: Registry, tmp_path: Path) -> None:
    module, arch = _random_module(2)
    v = reg.save("pursuit", module=module, architecture=arch)
    inputs = fam.PursuitAdapter(arch).example_inputs(4)
    np.save(tmp_path / "hist.npy", inputs["hist"])
    expected = _outputs(module, inputs)[0]
    code = f"""
import sys, numpy as np, torch
from luanti_tune.registry import Registry
reg = Registry({str(reg.root)!r})
m = reg.load("pursuit", {v!r})
x = m.adapter.example_inputs(4)
out = m.forward(x)["mean"]
np.save({str(tmp_path / "out.npy")!r}, out)
assert "luanti_tune.trainers" not in sys.modules and "luanti_tune.datasets" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


def test_tampered_or_missing_file_is_refused(reg: Registry) -> None:
    module, arch = _random_module(3)
    v = reg.save("pursuit", module=module, architecture=arch)
    weights = reg.version_dir("pursuit", v) / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"weights\.safetensors fails its sha256 check"):
        reg.load("pursuit", v)
    weights.unlink()
    with pytest.raises(ModelError, match="is missing"):
        reg.load("pursuit", v)


def test_manifest_that_does_not_match_weights_is_refused(reg: Registry) -> None:
    module, arch = _random_module(4)
    v = reg.save("pursuit", module=module, architecture=arch)
    path = reg.version_dir("pursuit", v) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["architecture"]["hidden"] = 16
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="cannot be rebuilt from its manifest"):
        reg.load("pursuit", v)


def test_promote_rollback_and_next_load_uses_restored_champion(reg: Registry) -> None:
    m1, arch = _random_module(5)
    m2, _ = _random_module(6)
    v1 = reg.save("pursuit", module=m1, architecture=arch)
    v2 = reg.save("pursuit", module=m2, architecture=arch, parent=v1)
    with pytest.raises(ModelError, match="no pursuit model|no champion"):
        reg.load("pursuit", "champion")
    reg.promote("pursuit", v1)
    g1 = reg.generation("pursuit")
    reg.promote("pursuit", v2)
    assert reg.champion_version("pursuit") == v2 and reg.generation("pursuit") == g1 + 1
    inputs = fam.PursuitAdapter(arch).example_inputs(8)
    np.testing.assert_array_equal(reg.load("pursuit").forward(inputs)["mean"], _outputs(m2, inputs)[0])
    assert reg.rollback("pursuit", reason="test") == v1
    assert reg.champion_version("pursuit") == v1 and reg.generation("pursuit") == g1 + 2
    np.testing.assert_array_equal(reg.load("pursuit").forward(inputs)["mean"], _outputs(m1, inputs)[0])
    actions = [h["action"] for h in reg.history("pursuit")]
    assert actions.count("promote") == 2 and actions[-1] == "rollback"
    assert reg.history("pursuit")[-1]["reason"] == "test"
    with pytest.raises(ModelError, match="no previous champion"):
        reg.rollback("pursuit")


def test_failed_gate_cannot_be_promoted_without_force(reg: Registry) -> None:
    module, arch = _random_module(7)
    v = reg.save("pursuit", module=module, architecture=arch, gate={"passed": False, "reason": "worse"})
    with pytest.raises(ModelError, match="failed its gate"):
        reg.promote("pursuit", v)
    assert reg.champion_version("pursuit") is None
    reg.promote("pursuit", v, force=True)
    assert reg.champion_version("pursuit") == v


def test_retention_keeps_aliased_versions(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "m", keep=3)
    module, arch = _random_module(8)
    versions = [reg.save("pursuit", module=module, architecture=arch) for _ in range(2)]
    reg.promote("pursuit", versions[0])
    versions += [reg.save("pursuit", module=module, architecture=arch) for _ in range(4)]
    left = reg.versions("pursuit")
    assert versions[0] in left  # the champion survives retention
    assert versions[1] not in left and len(left) == 4  # 3 newest + champion
    assert versions[-1] in left


def test_concurrent_saves_get_distinct_versions(reg: Registry) -> None:
    module, arch = _random_module(9)
    out: list[str] = []
    threads = [
        threading.Thread(target=lambda: out.append(reg.save("pursuit", module=module, architecture=arch)))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 6 and sorted(out) == reg.versions("pursuit")
    assert not [p for p in (reg.root / "pursuit").iterdir() if p.name.startswith(".tmp")]


class _Blob:
    def __init__(self, text: str) -> None:
        self.text = text


def test_generic_files_version_with_family_loader(reg: Registry) -> None:
    """A dialogue-style version: arbitrary files + a family-specific loader."""

    def loader(vdir: Path, manifest: dict) -> _Blob:
        return _Blob((vdir / "adapter" / "config.json").read_text())

    register_family(FamilySpec(name="blobtest", adapter=lambda arch: None, loader=loader), replace=True)  # type: ignore[arg-type, return-value]
    v = reg.save("blobtest", files={"adapter/config.json": b'{"r": 8}', "tokenizer.txt": b"abc"}, architecture={"r": 8})
    m = reg.load("blobtest", v)
    assert m.module.text == '{"r": 8}' and set(m.manifest["files"]) == {"adapter/config.json", "tokenizer.txt"}
    (reg.version_dir("blobtest", v) / "tokenizer.txt").write_bytes(b"abd")
    with pytest.raises(ModelError, match="tokenizer.txt fails its sha256"):
        reg.load("blobtest", v)
    with pytest.raises(ModelError, match="invalid model file name"):
        reg.save("blobtest", files={"../escape": b"x"}, architecture={})


def test_per_player_scope_is_its_own_family_dir(reg: Registry) -> None:
    module, arch = _random_module(10)
    v = reg.save("pursuit@alice", module=module, architecture=arch)
    reg.promote("pursuit@alice", v)
    assert reg.load("pursuit@alice").version == v and reg.champion_version("pursuit") is None


def test_models_cli(reg: Registry, tmp_path: Path) -> None:
    m1, arch = _random_module(11)
    m2, _ = _random_module(12)
    v1 = reg.save("pursuit", module=m1, architecture=arch)
    v2 = reg.save("pursuit", module=m2, architecture=arch)
    runner = CliRunner()
    base = ["--model-path", str(reg.root)]
    r = runner.invoke(cli, ["models", "promote", "pursuit", v1, *base])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["models", "promote", "pursuit", v2, *base])
    assert r.exit_code == 0 and reg.champion_version("pursuit") == v2
    r = runner.invoke(cli, ["models", "list", "--json", *base])
    rows = json.loads(r.output)
    assert {(x["version"], tuple(x["aliases"])) for x in rows} == {(v1, ("previous",)), (v2, ("champion",))}
    r = runner.invoke(cli, ["models", "show", "pursuit", *base])
    assert json.loads(r.output)["manifest"]["version"] == v2
    r = runner.invoke(cli, ["models", "rollback", "pursuit", *base])
    assert r.exit_code == 0 and reg.champion_version("pursuit") == v1
    out = tmp_path / "p.onnx"
    r = runner.invoke(cli, ["models", "export", "pursuit", "--out", str(out), *base])
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 0 and json.loads(r.output)["max_abs_diff"] < 1e-4
