"""Background worker: cadence, cursors, skip/fail records, metrics, auto-rollback, separate
process, kill -9 mid-cycle."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch

from luanti_tune.config.settings import load_settings
from luanti_tune.policies import pursuit as fam
from luanti_tune.registry import Registry
from luanti_tune.sim.session import to_store
from luanti_tune.store import open_store
from luanti_tune.trainers import pursuit as tp
from luanti_tune.trainers.common import FitConfig
from luanti_tune.worker.loop import Worker, WorkerConfig, WorkerState, start_worker_process
from luanti_tune.worker.monitor import MonitorConfig

FAST = tp.CycleOptions(fit=FitConfig(steps=150, lr=2e-3), gate=tp.GateConfig(sim=False), min_train_windows=50)


@pytest.fixture(scope="module")
def sessions() -> list[list[dict]]:
    """Three independent chunks of simulated play (different seeds = different episodes)."""
    return [tp.simulated_events(("circler", "spiral"), minutes=0.75, seed=s, sessions=1) for s in (1, 2, 3)]


def _settings(tmp_path: Path, **kw: object):  # type: ignore[no-untyped-def]
    return load_settings(data_dir=tmp_path, **kw)


def _weak_champion(reg: Registry) -> str:
    """A poor (randomly perturbed) champion that any real fine-tuning beats."""
    torch.manual_seed(0)
    arch = fam.architecture()
    module = fam.build_module(arch)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    v = reg.save("pursuit", module=module, architecture=arch, gate={"passed": True, "reason": "test base"})
    reg.promote("pursuit", v)
    return v


def _worker(settings, **cfg: object) -> Worker:  # type: ignore[no-untyped-def]
    return Worker(
        settings,
        WorkerConfig(families=("pursuit",), bootstrap=False, options={"pursuit": FAST}, monitor_every_s=0, **cfg),
    )  # type: ignore[arg-type]


def test_cycles_follow_training_interval_and_min_seconds(tmp_path: Path, sessions) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(tmp_path, training_interval=3000, min_training_seconds=0)
    reg = Registry(settings.resolved_model_path)
    v0 = _weak_champion(reg)
    w = _worker(settings)
    try:
        to_store(sessions[0][:1000], w.store)
        assert w.poll_once() == []  # 1000 < training_interval
        to_store(sessions[0][1000:] + sessions[1], w.store)
        results = w.poll_once()
        assert [r.status for r in results] == ["promoted"], results[0].reason
        assert reg.champion_version("pursuit") == results[0].version != v0
        assert w.state.cursors["pursuit"] == w.store.max_id()
        metrics = (tmp_path / "metrics" / "worker.prom").read_text()
        assert 'luanti_tune_training_cycles_total{family="pursuit",status="promoted"} 1.0' in metrics
        assert 'luanti_tune_live_prediction_error{family="pursuit",role="champion"}' in metrics
        # a second cycle is due by count but not by wall time
        w.settings = _settings(tmp_path, training_interval=10, min_training_seconds=3600)
        to_store(sessions[2], w.store)
        assert w.poll_once() == []
        assert WorkerState.load(w.state_path).cursors["pursuit"] == w.state.cursors["pursuit"]
    finally:
        w.close()


def test_skip_keeps_cursor_and_records_reason(tmp_path: Path, sessions) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(tmp_path, training_interval=100, min_training_seconds=0)
    reg = Registry(settings.resolved_model_path)
    _weak_champion(reg)
    w = _worker(settings)
    try:
        to_store(sessions[0][:400], w.store)  # < 2 s of play: no complete window
        results = w.poll_once()
        assert [r.status for r in results] == ["skipped"] and "too small" in results[0].reason
        assert w.state.cursors.get("pursuit", 0) == 0
        assert reg.history("pursuit")[-1]["action"] == "skip"
    finally:
        w.close()


def test_monitor_rolls_back_a_degrading_champion(tmp_path: Path, sessions) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(tmp_path, training_interval=100, min_training_seconds=0)
    reg = Registry(settings.resolved_model_path)
    _weak_champion(reg)
    w = Worker(
        settings,
        WorkerConfig(
            families=("pursuit",),
            bootstrap=False,
            options={"pursuit": FAST},
            monitor_every_s=0,
            monitor=MonitorConfig(min_windows=50),
        ),
    )
    try:
        to_store(sessions[0] + sessions[1], w.store)
        good = w.poll_once()[0]
        assert good.status == "promoted"
        # an operator force-promotes a broken model; it enters probation
        bad = tp.clone_module(reg.load("pursuit", "champion").module)
        with torch.no_grad():
            for p in bad.parameters():
                p.add_(torch.randn_like(p))
        v_bad = reg.save("pursuit", module=bad, architecture=fam.architecture(), gate={"passed": False, "reason": "x"})
        reg.promote("pursuit", v_bad, force=True)
        w.state.probation["pursuit"] = w.store.max_id()
        to_store(sessions[2], w.store)
        reports = w.monitor(w.store.max_id())
        assert reports[0].rolled_back == good.version, reports[0]
        assert reg.champion_version("pursuit") == good.version
        last = reg.history("pursuit")[-1]
        assert last["action"] == "rollback" and last["reason"].startswith("auto:") and last["replaced"] == v_bad
        assert reg.load("pursuit").version == good.version  # the next load uses the restored champion
    finally:
        w.close()


def _wait(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.2)
    return False


def test_worker_process_trains_and_survives_kill_9(tmp_path: Path, sessions) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(tmp_path, training_interval=1000, min_training_seconds=0, torch_threads=1)
    reg = Registry(settings.resolved_model_path)
    v0 = _weak_champion(reg)
    with open_store(settings.resolved_db_url) as store:
        to_store(sessions[0] + sessions[1], store)
    slow = tp.CycleOptions(
        fit=FitConfig(steps=100_000, time_budget_s=120), gate=tp.GateConfig(sim=False), min_train_windows=50
    )
    proc, stop = start_worker_process(
        settings, WorkerConfig(families=("pursuit",), bootstrap=False, poll_s=0.2, options={"pursuit": slow})
    )
    try:
        state_path = tmp_path / "worker" / "state.json"
        assert _wait(lambda: WorkerState.load(state_path).in_cycle is not None, 90), "cycle never started"
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(10)
    assert reg.champion_version("pursuit") == v0
    reg.load("pursuit", "champion")  # intact and verifiable
    w = _worker(settings)  # a restarted worker records what happened
    try:
        assert reg.history("pursuit")[-1]["action"] == "fail"
        assert "died during the cycle" in reg.history("pursuit")[-1]["reason"]
        assert w.state.in_cycle is None
    finally:
        w.close()

    # and a normal worker process promotes and stops cleanly on request
    with open_store(settings.resolved_db_url) as store:
        to_store(sessions[2], store)
    proc, stop = start_worker_process(
        settings, WorkerConfig(families=("pursuit",), bootstrap=False, poll_s=0.2, options={"pursuit": FAST})
    )
    try:
        assert _wait(lambda: reg.champion_version("pursuit") != v0, 120), reg.history("pursuit")[-3:]
    finally:
        stop.set()
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join(10)
    assert proc.exitcode == 0


def test_serve_runs_the_worker_and_exposes_its_metrics(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUANTI_TUNE_")}
    env["LUANTI_TUNE_DATA_DIR"] = str(tmp_path)
    cmd = [sys.executable, "-c", "from luanti_tune.cli.main import main; main()", "serve", "--port", str(port)]
    cmd += ["--validate-workers", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/metrics"

        def worker_metrics() -> bool:
            try:
                return "luanti_tune_worker_last_poll_timestamp" in httpx.get(url, timeout=2).text
            except httpx.HTTPError:
                return False

        assert _wait(worker_metrics, 90)
        body = httpx.get(url, timeout=2).text
        assert "luanti_tune_events_accepted" in body  # the service's own metrics are still there
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert children, "no worker child process"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    # the worker child is gone with the service
    for pid in children:
        assert _wait(lambda p=int(pid): not os.path.exists(f"/proc/{p}"), 15)
