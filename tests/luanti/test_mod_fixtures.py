"""The mod's busted specs validate its events against JSON fixtures generated from the Python
schemas; these tests keep the fixtures in sync and run the specs and luacheck themselves."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from luanti_tune.cli.schema_cmd import json_schema

FIXTURES = Path(__file__).parent / "fixtures"
MODS = Path(__file__).resolve().parents[2] / "mods"


@pytest.mark.parametrize("name", ["event", "action", "observation"])
def test_schema_fixtures_match_the_published_schemas(name: str) -> None:
    stored = json.loads((FIXTURES / f"{name}.schema.json").read_text())
    assert stored == json_schema(name), (
        f"tests/luanti/fixtures/{name}.schema.json is stale: regenerate with "
        f"`luanti-tune schema {name} > tests/luanti/fixtures/{name}.schema.json`"
    )


def test_busted_specs_pass() -> None:
    busted = shutil.which("busted")
    if busted is None or shutil.which("lua5.1") is None:
        pytest.skip("busted/lua5.1 not installed (scripts/system-deps.sh)")
    proc = subprocess.run(
        [busted, "--lua=lua5.1", "-o", "plainTerminal", "spec"],
        cwd=MODS / "luanti_tune",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " 0 failures" in proc.stdout and " 0 errors" in proc.stdout
