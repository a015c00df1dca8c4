"""`luanti-tune bench sim` prints one JSON line; stepping agents together beats a per-agent loop."""

from __future__ import annotations

import json

from click.testing import CliRunner

from luanti_tune.cli.main import cli


def test_bench_sim_json_and_vectorisation_pays() -> None:
    res = CliRunner().invoke(cli, ["bench", "sim", "--seconds", "0.3", "--agents", "1,64"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("{")]
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["bench"] == "sim" and set(report["agent_steps_per_s"]) == {"1", "64"}
    # same run, same machine: 64 agents stepped as arrays vs the same 64 stepped one by one
    assert report["ratio_vs_naive"] > 3
    assert report["agent_steps_per_s"]["64"] > 3 * report["agent_steps_per_s"]["1"]
