"""The background fine-tuning worker.

Every poll: read the store's ``max_id``; when at least ``training_interval`` events arrived since
a family's cursor and ``min_training_seconds`` passed since the last cycle, run that family's
cycle (:data:`luanti_tune.trainers.CYCLES`) over ``(cursor, max_id]`` under
:func:`~luanti_tune.trainers.common.guarded_cycle` (skips/failures are recorded, the champion
keeps serving). The cursor advances after promoted/rejected/failed cycles; a skipped cycle
(too little data) keeps it so data accumulates. Live monitoring (:mod:`.monitor`) runs every poll
and rolls back a degrading champion. State (cursors, probation) lives in
``<data_dir>/worker/state.json``; Prometheus metrics are written to
``<data_dir>/metrics/worker.prom`` (text exposition format) after every poll.

Run it in its own process (:func:`start_worker_process`, or ``luanti-tune worker``): torch
threads are bounded by ``Settings.torch_threads`` and the process lowers its CPU priority so
ingest and inference never wait for training.
"""

from __future__ import annotations

import importlib
import json
import logging
import multiprocessing as mp
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from luanti_tune.config.settings import Settings
from luanti_tune.trainers import CYCLES
from luanti_tune.trainers.common import CycleContext, CycleResult, configure_torch, guarded_cycle
from luanti_tune.worker.monitor import MonitorConfig, MonitorReport, PursuitMonitor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    families: tuple[str, ...] = tuple(CYCLES)  # every family with a training cycle
    poll_s: float = 2.0
    bootstrap: bool = True  # pre-train a base model from the simulator when no champion exists
    bootstrap_minutes: float = 2.0
    nice: int = 19  # lowest CPU priority: ingest and inference always come first
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    monitor_every_s: float = 5.0
    options: dict[str, Any] = field(default_factory=dict)  # per-family cycle options


@dataclass
class WorkerState:
    cursors: dict[str, int] = field(default_factory=dict)
    probation: dict[str, int] = field(default_factory=dict)  # family -> max_id at promotion
    last_cycle_wall: float = 0.0
    cycles: int = 0
    last: dict[str, Any] = field(default_factory=dict)
    #: set while a cycle runs; found at start-up it means the worker died mid-cycle (kill -9, OOM)
    in_cycle: dict[str, Any] | None = None
    crashed_range: list[Any] | None = None

    @classmethod
    def load(cls, path: Path) -> WorkerState:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except ValueError:
            log.warning("worker state %s is corrupt; starting fresh cursors", path)
            return cls()
        return cls(
            **{
                k: data[k]
                for k in ("cursors", "probation", "last_cycle_wall", "cycles", "last", "in_cycle")
                if k in data
            }
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True, default=str))
        os.replace(tmp, path)


def resolve_cycle(family: str) -> Callable[[CycleContext], CycleResult]:
    module_name, attr = CYCLES[family].split(":")
    fn: Callable[[CycleContext], CycleResult] = getattr(importlib.import_module(module_name), attr)
    return fn


def _unavailable(family: str, exc: Exception) -> Callable[[CycleContext], CycleResult]:
    def run(ctx: CycleContext) -> CycleResult:
        raise RuntimeError(f"training cycle of {family!r} is not available: {exc}")

    return run


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        r = self.registry
        self.cycles = Counter(
            "luanti_tune_training_cycles", "Training cycles by family and outcome.", ["family", "status"], registry=r
        )
        self.cycle_seconds = Gauge(
            "luanti_tune_training_cycle_seconds", "Wall time of the last cycle.", ["family"], registry=r
        )
        self.lag = Gauge("luanti_tune_training_pending_events", "Events not yet trained on.", ["family"], registry=r)
        self.generation = Gauge("luanti_tune_champion_generation", "Champion changes so far.", ["family"], registry=r)
        self.live_error = Gauge(
            "luanti_tune_live_prediction_error",
            "Mean live prediction error (nodes) by model role.",
            ["family", "role"],
            registry=r,
        )
        self.live_windows = Gauge(
            "luanti_tune_live_windows", "Windows the live error was measured on.", ["family"], registry=r
        )
        self.rollbacks = Counter("luanti_tune_auto_rollbacks", "Automatic rollbacks.", ["family"], registry=r)
        self.last_poll = Gauge(
            "luanti_tune_worker_last_poll_timestamp", "Unix time of the last worker poll.", registry=r
        )

    def write(self, path: Path) -> None:
        from prometheus_client import write_to_textfile

        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)


class Worker:
    """Polls the store, runs cycles when due, monitors champions. One instance per process."""

    def __init__(
        self,
        settings: Settings,
        cfg: WorkerConfig | None = None,
        *,
        store: Any = None,
        registry: Any = None,
    ) -> None:
        from luanti_tune.registry import Registry

        self.settings = settings
        self.cfg = cfg or WorkerConfig()
        self._own_store = store is None
        if store is None:
            from luanti_tune.store.base import open_store

            store = open_store(settings.resolved_db_url)
        self.store = store
        self.registry = registry or Registry(settings.resolved_model_path)
        self.state_path = settings.data_dir / "worker" / "state.json"
        self.metrics_path = settings.data_dir / "metrics" / "worker.prom"
        self.state = WorkerState.load(self.state_path)
        self.metrics = _Metrics()
        self.monitors = {"pursuit": PursuitMonitor(self.registry, self.cfg.monitor)}
        self._last_monitor = 0.0
        self.families = [f for f in self.cfg.families if f in CYCLES]
        self._recover()

    def _recover(self) -> None:
        """Record a cycle that a previous worker process did not finish; the champion never changed."""
        crashed = self.state.in_cycle
        if not crashed:
            return
        family = str(crashed.get("family", "pursuit"))
        reason = f"worker process died during the cycle started at {crashed.get('started')} (killed or crashed)"
        log.warning("%s: %s", family, reason)
        self.registry.record(
            family, "fail", reason=reason, after_id=crashed.get("after_id"), until_id=crashed.get("until_id")
        )
        self.state.in_cycle = None
        self.state.last[family] = {"status": "failed", "reason": reason, "version": None}
        # retry the same events once; if the same range killed the worker before, skip past it
        rng = [crashed.get("after_id"), crashed.get("until_id")]
        if self.state.crashed_range == rng:
            self.state.cursors[family] = int(crashed.get("until_id") or self.state.cursors.get(family, 0))
        self.state.crashed_range = rng
        self.state.save(self.state_path)

    def close(self) -> None:
        if self._own_store:
            self.store.close()

    # ------------------------------------------------------------------ steps

    def bootstrap(self) -> None:
        """Give every family whose trainer has a ``bootstrap_base`` recipe a champion if it has none."""
        for family in self.families:
            if self.registry.champion_version(family) is not None:
                continue
            module_name = CYCLES[family].split(":")[0]
            try:
                recipe = getattr(importlib.import_module(module_name), "bootstrap_base", None)
                if recipe is None:
                    continue
                log.info("no %s champion: pre-training its base model", family)
                configure_torch(self.settings.torch_threads)
                if family == "pursuit":
                    recipe(self.registry, minutes=self.cfg.bootstrap_minutes, seed=self.settings.seed)
                else:
                    recipe(self.registry, seed=self.settings.seed)
            except Exception as exc:  # one family's bootstrap must not stop the others
                log.exception("bootstrapping %s failed", family)
                self.registry.record(family, "fail", reason=f"base model bootstrap failed: {type(exc).__name__}: {exc}")

    def due(self, family: str, max_id: int, now: float) -> str | None:
        """``None`` when a cycle should run, else why not."""
        pending = max_id - self.state.cursors.get(family, 0)
        if pending < self.settings.training_interval:
            return f"{pending} new events < training_interval {self.settings.training_interval}"
        wait = self.state.last_cycle_wall + self.settings.min_training_seconds - now
        if wait > 0:
            return f"min_training_seconds: {wait:.1f}s to go"
        return None

    def poll_once(self, *, force: bool = False) -> list[CycleResult]:
        """One poll: maybe cycles, maybe monitoring; returns the cycles run (possibly none)."""
        now = time.time()
        max_id = self.store.max_id()
        results = []
        for family in self.families:
            self.metrics.lag.labels(family).set(max_id - self.state.cursors.get(family, 0))
            why = None if force else self.due(family, max_id, now)
            if why is not None:
                continue
            results.append(self.run_cycle(family, max_id))
        if force or now - self._last_monitor >= self.cfg.monitor_every_s:
            self._last_monitor = now
            self.monitor(max_id)
        self.metrics.last_poll.set(time.time())
        self.metrics.write(self.metrics_path)
        return results

    def run_cycle(self, family: str, max_id: int) -> CycleResult:
        after = self.state.cursors.get(family, 0)
        ctx = CycleContext(
            store=self.store,
            registry=self.registry,
            after_id=after,
            until_id=max_id,
            seed=self.settings.seed + self.state.cycles,
            settings=self.settings,
            options=dict(self.cfg.options),
        )
        log.info("%s cycle over events (%d, %d]", family, after, max_id)
        configure_torch(self.settings.torch_threads)
        self.state.in_cycle = {"family": family, "after_id": after, "until_id": max_id, "started": time.time()}
        self.state.save(self.state_path)
        try:
            run = resolve_cycle(family)
        except (ImportError, AttributeError) as exc:
            run = _unavailable(family, exc)
        result = guarded_cycle(family, ctx, run)
        self.state.in_cycle = None
        self.state.cycles += 1
        self.state.last_cycle_wall = time.time()
        if result.status != "skipped":
            self.state.cursors[family] = max_id
        if result.status == "promoted":
            self.state.probation[family] = max_id
        self.state.last[family] = {
            "status": result.status,
            "reason": result.reason,
            "version": result.version,
            "until_id": max_id,  # the events this cycle looked at (a skipped one keeps its cursor)
        }
        self.state.save(self.state_path)
        self.metrics.cycles.labels(family, result.status).inc()
        self.metrics.cycle_seconds.labels(family).set(result.timings.get("total_s", 0.0))
        self.metrics.generation.labels(family).set(self.registry.generation(family))
        log.info("%s cycle: %s (%s)", family, result.status, result.reason)
        return result

    def monitor(self, max_id: int) -> list[MonitorReport]:
        reports = []
        for family, mon in self.monitors.items():
            if family not in self.families:
                continue
            probation = self.state.probation.get(family)
            if probation is not None and max_id - probation > mon.cfg.probation_events:
                self.state.probation.pop(family, None)
                probation = None
            try:
                rep = mon.check(self.store, max_id, probation)
            except Exception:  # monitoring must never take the worker down
                log.exception("%s monitor failed", family)
                continue
            reports.append(rep)
            for role, value in (
                ("champion", rep.champion_error),
                ("previous", rep.previous_error),
                ("constant_velocity", rep.baseline_error),
            ):
                if value is not None:
                    self.metrics.live_error.labels(family, role).set(value)
            self.metrics.live_windows.labels(family).set(rep.windows)
            self.metrics.generation.labels(family).set(self.registry.generation(family))
            if rep.rolled_back:
                self.metrics.rollbacks.labels(family).inc()
                self.state.probation.pop(family, None)
                self.state.save(self.state_path)
        return reports

    def run(self, stop: threading.Event | Any = None, parent_pid: int | None = None) -> None:
        """Poll until ``stop`` is set (a ``threading.Event`` or ``multiprocessing.Event``).

        With ``parent_pid``, also stop when that parent process is gone (never outlive the service).
        """
        if self.cfg.bootstrap:
            try:
                self.bootstrap()
            except Exception:
                log.exception("bootstrapping base models failed; the worker continues without them")
        while stop is None or not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("parent process %d is gone; worker exits", parent_pid)
                break
            try:
                self.poll_once()
            except Exception:  # e.g. store temporarily unavailable
                log.exception("worker poll failed")
            if stop is None:
                time.sleep(self.cfg.poll_s)
            elif stop.wait(self.cfg.poll_s):
                break


def configure_process(settings: Settings, nice: int) -> None:
    """Bound torch threads and lower CPU priority of the current (worker) process."""
    configure_torch(settings.torch_threads, nice)


def worker_main(settings_json: str, cfg: WorkerConfig, stop: Any = None, parent_pid: int | None = None) -> None:
    """Entry point of the worker process (settings passed as JSON so spawn works).

    Thread limits go into the environment before torch is ever imported, so an idle worker
    costs no torch import at all; torch comes in with the first cycle or champion check.
    """
    settings = Settings.model_validate_json(settings_json)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(settings.torch_threads)
    if cfg.nice:
        try:
            os.nice(cfg.nice)
        except OSError:
            log.warning("could not lower the worker's CPU priority")
    worker = Worker(settings, cfg)
    try:
        worker.run(stop, parent_pid=parent_pid)
    finally:
        worker.close()


def start_worker_process(settings: Settings, cfg: WorkerConfig | None = None) -> tuple[Any, Any]:
    """Start the worker in a separate (spawned) process; returns ``(process, stop_event)``.

    Stop it with ``stop_event.set(); process.join(timeout)`` (or ``process.terminate()``).
    """
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    proc = ctx.Process(
        target=worker_main,
        args=(settings.model_dump_json(), cfg or WorkerConfig(), stop, os.getpid()),
        name="luanti-tune-worker",
        daemon=True,
    )
    proc.start()
    return proc, stop
