"""``luanti-tune bench chase``: a real-game baseline users know. On a real ``minetestserver``, the
luanti-tune pursuit agent and a mobs_redo "dogfight" monster chase the same real (headless)
client, one chaser per episode, at equal speeds; reported: time to catch, catch rate and the
distance over time of both, as one JSON line (and a PNG with ``--plot``).

Set-up (everything is started here and stopped again, also on Ctrl-C and errors):

* the real service (``luanti-tune serve --no-worker``) with a model registry holding a pursuit
  champion: ``--model-path`` (e.g. an adapted model), else a base model pre-trained here
  (``luanti-tune train pursuit --base``) into a temporary registry;
* a real server (a flat minetest_game world: Debian's mobs_redo needs minetest_game's ``default``
  and fails to load in devtest) with the luanti_tune mod, Debian's ``minetest-mod-mobs-redo``
  (mod ``mobs``, enabled by ``load_mod_mobs = true`` in world.mt) and the helper mod
  ``luanti_tune_chase`` (mods/luanti_tune_chase), which registers the mob, a slippery arena floor,
  steers the player and runs the episodes;
* the real client under Xvfb (``xvfb-run -a minetest --go ...``), without input of its own.

The player is moved by the server with real velocity (``add_velocity`` on the slippery floor, so
it reports the velocity an agent observes) in a pattern that is not one of the simulator's styles:
an orbit of radius ``--orbit-radius`` around the arena's centre that reverses direction every 2-3 s
(seeded) and dodges sideways when the chaser comes within 3 nodes. Each episode the chaser appears
at a seeded offset of ``--offset`` nodes from the player; episode i uses the same offset and
steering seed for both chasers (order agent, mob, mob, agent, ...). Caught: horizontal distance
below ``--catch-radius`` (checked every server step, the same for both); times count from the
chaser's appearance and are censored at ``--limit``. Both chasers move at the agents' walk speed
(4 nodes/s: ``agents.WALK_SPEED`` of the mod, a move at speed 1, also the mob's run_velocity), the
player by default too (``--player-speed``). The mob's reach (where a dogfight mob stops to punch,
3 by default) is set to 1.0, inside the catch radius, and its damage to 0; otherwise it is the
stock mobs_redo behaviour (e.g. an idle mob looks for players once a second, so it starts up to
1 s after it appears: reported as ``start_moving_s``, and ``chase_s`` is the time after that).

Adaptation (``--adapt-minutes N``): first the episodes above are measured with the base champion
(phase ``base``, store ``events-base.db``, no worker). Then the service is restarted on a fresh
store (``events-adapt.db``) with its training worker (``training_interval`` 400,
``min_training_seconds`` 0 by default) and the agent chases the steered client continuously for N
game minutes (the mod's ``play``: the same steering pattern with other seeds; after a catch the
agent reappears 0.8-1.3x ``--offset`` away and chases on), in one-minute chunks; after each the
bench waits until the worker has trained on everything played (:func:`settle_worker`) and notes
whether the per-player champion ``pursuit@<player>`` has been promoted. Last, the service is
restarted without a worker on a third store (``events-adapted.db``), the bench checks that it
serves ``pursuit@<player>`` to an agent chasing the player (when it was promoted) and measures the
same episodes again (phase ``adapted``: same offsets, steering seeds and order, agent and mob).
The worker never sees the measured episodes (neither as new data nor as replay rows), and the
adapted champion is fixed while they run. Reported: both phases' figures, the ratios adapted/mob,
adapted/base, base/mob (and the mob's after/before as a measure of run-to-run noise), per pair of
episodes, and the registry's verdicts on the player's champion.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

from luanti_tune.bench.common import emit, stop_process
from luanti_tune.errors import ConfigError
from luanti_tune.luanti.server import LuantiError, LuantiServer, find_server_bin
from luanti_tune.luanti.service import ServiceProcess

log = logging.getLogger(__name__)

CHASE_MOD = "luanti_tune_chase"
MOBS_MOD = "mobs"
#: Where Debian's minetest-mod-mobs-redo installs the mobs API (mod name ``mobs``).
MOBS_DIR = Path("/usr/share/games/minetest/mods/mobs_redo")
CHASERS = ("agent", "mob")
#: minetest_game (Debian's minetest-server ships it), where mobs_redo is usually played.
GAME = "minetest"
#: The flat test world's surface: the top node is at y 8 (players stand at 8.5).
ARENA_Y = 8
ARENA_RADIUS = 20
_MAIN = "from luanti_tune.cli.main import main; main()"


@dataclass(frozen=True)
class ChaseConfig:
    """One run of the chase benchmark (``episodes`` per chaser)."""

    episodes: int = 8
    limit_s: float = 20.0
    catch_radius: float = 1.2
    offset: float = 8.0
    player_speed: float = 4.0
    orbit_radius: float = 6.0
    sample_s: float = 0.2
    seed: int = 7
    #: A model registry with a pursuit champion; None: pre-train a base model into a temp registry.
    model_path: Path | None = None
    train_minutes: float = 1.0
    server_bin: Path | None = None
    #: Keep worlds, logs and the records here (default: a temporary directory, removed afterwards).
    work_dir: Path | None = None
    player: str = "runner"
    client_bin: str | None = None
    extra_settings: dict[str, Any] = field(default_factory=dict)
    #: Game minutes of continuous play with the service's training worker before the measured
    #: episodes (0: no adaptation phase, the episodes are measured once).
    adapt_minutes: float = 0.0
    #: The worker's settings during the adaptation (env LUANTI_TUNE_TRAINING_INTERVAL, ...).
    training_interval: int = 400
    min_training_seconds: float = 0.0
    #: The longest wait for the worker after a minute of play.
    worker_timeout_s: float = 600.0

    @property
    def adapt(self) -> bool:
        return self.adapt_minutes > 0

    @property
    def scope(self) -> str:
        """The per-player champion served to agents chasing the steered client."""
        return f"pursuit@{self.player}"


def episode_plan(cfg: ChaseConfig) -> list[dict[str, Any]]:
    """The episodes in running order: pair i shares its offset and steering seed; the order
    alternates (agent first in even pairs, mob first in odd ones)."""
    rng = np.random.default_rng(cfg.seed)
    plan: list[dict[str, Any]] = []
    for i in range(cfg.episodes):
        angle = float(rng.uniform(0.0, 2.0 * math.pi))
        seed = int(rng.integers(1, 2**31 - 2))
        dx, dz = cfg.offset * math.cos(angle), cfg.offset * math.sin(angle)
        order = CHASERS if i % 2 == 0 else CHASERS[::-1]
        for chaser in order:
            plan.append({"pair": i, "id": f"{chaser}-{i}", "chaser": chaser, "dx": dx, "dz": dz, "seed": seed})
    return plan


def play_plan(cfg: ChaseConfig) -> list[dict[str, Any]]:
    """The adaptation's chunks of continuous play (at most a game minute each), with steering
    seeds of their own (not the measured episodes'): drawn from another stream than
    :func:`episode_plan`'s."""
    rng = np.random.default_rng([cfg.seed, 6007])
    out, left, k = [], cfg.adapt_minutes * 60.0, 0
    while left > 1e-6:
        secs = min(60.0, left)
        out.append({"id": f"adapt-{k}", "seconds": round(secs, 3), "seed": int(rng.integers(1, 2**31 - 2))})
        left -= secs
        k += 1
    return out


def mobs_available() -> bool:
    return (MOBS_DIR / "init.lua").is_file()


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def enable_world_mod(world: Path, mod: str, gameid: str = GAME) -> None:
    """``load_mod_<mod> = true`` in WORLD/world.mt (a mod installed in the engine's mod paths); a new
    world.mt has the game and the backends the engine gives a new world."""
    world.mkdir(parents=True, exist_ok=True)
    path = world / "world.mt"
    if path.exists():
        lines = path.read_text(encoding="utf-8").splitlines()
    else:
        lines = [f"gameid = {gameid}"]
        lines += [f"{b} = sqlite3" for b in ("backend", "player_backend", "auth_backend", "mod_storage_backend")]
    key = f"load_mod_{mod}"
    lines = [ln for ln in lines if ln.split("=", 1)[0].strip() != key] + [f"{key} = true"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _kill_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM to ``proc``'s process group (started with ``start_new_session``), SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)
    except ProcessLookupError:
        proc.wait(timeout)


def _kill_leftovers(pgid: int) -> None:
    """SIGKILL what is left of a process group whose leader has been stopped."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_leftovers_of(proc: subprocess.Popen[bytes] | None) -> None:
    """:func:`_kill_leftovers` of ``proc``'s session (it was started with ``start_new_session``)."""
    if proc is not None:
        _kill_leftovers(proc.pid)


class HeadlessPlayer:
    """The real client under Xvfb (``xvfb-run -a minetest --go ...``) without input of its own."""

    def __init__(self, home: Path, port: int, name: str, password: str, binary: str | None = None) -> None:
        client = binary or shutil.which("minetest") or "/usr/games/minetest"
        xvfb = shutil.which("xvfb-run")
        if not xvfb or not os.access(client, os.X_OK):
            raise ConfigError("the real client is not installed: apt-get install minetest xvfb xauth")
        conf = home / ".minetest" / "minetest.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        # a cheap client: it only has to be there, move as it is told and report its velocity
        conf.write_text("fps_max = 30\nviewing_range = 40\nenable_sound = false\nenable_clouds = false\n")
        self.cmd = [xvfb, "-a", client, "--go", "--address", "127.0.0.1", "--port", str(port)]
        self.cmd += ["--name", name, "--password", password]
        self.home = home
        self.log = home / "client.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "HOME": str(self.home)}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc)


def wait_for_champion(
    url: str, family: str = "pursuit", timeout: float = 120.0, alive: Callable[[], None] | None = None
) -> None:
    """Until ``url`` (a /v1/act) answers a probe observation with a model's decision, not a fallback."""
    probe = {
        "agent": "probe-1",
        "kind": family,
        "pos": {"x": 0, "y": 8, "z": 0},
        "targets": ["probe"],
        "entities": [{"kind": "player", "name": "probe", "rel": {"x": 5, "y": 0, "z": 0}}],
    }
    body = json.dumps({"observations": [probe]}).encode()
    deadline = time.monotonic() + timeout
    answer: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                answer = json.loads(resp.read())
        except (urllib.error.URLError, OSError) as exc:
            answer = {"error": str(exc)}
        actions = answer.get("actions") or []
        if actions and "fallback" not in actions[0]:
            return
        time.sleep(0.5)
    raise LuantiError(f"the service never served a {family} champion within {timeout:.0f} s: {answer}")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (so the finally blocks stop the processes), as Ctrl-C does."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class ChaseWorld:
    """The processes of one chase run: trainer (optional), service, server, client."""

    def __init__(self, cfg: ChaseConfig, root: Path) -> None:
        self.cfg = cfg
        self.root = root
        # the worker of an adaptation writes to the registry: a copy of --model-path, never the user's
        self.models = root / "models" if cfg.adapt or cfg.model_path is None else cfg.model_path
        self.data_dir = root / "data"
        self.trainer: subprocess.Popen[bytes] | None = None
        self.port = _free_port(socket.SOCK_STREAM)
        #: every service process started (one per phase of an adaptation run), for the clean-up
        self.services: list[ServiceProcess] = []
        self.service = self._service("base" if cfg.adapt else "", worker=False)
        settings: dict[str, Any] = {
            "mg_name": "flat",
            "fixed_map_seed": "20261127",
            "mg_flags": "nocaves,nodungeons,light,nodecorations,biomes,ores",
            "mgflat_spflags": "nolakes,nohills,nocaverns",
            "static_spawnpoint": f"0,{ARENA_Y + 1},0",
            "enable_damage": True,
            "only_peaceful_mobs": False,
            "mobs_spawn": False,
            "time_speed": 0,
            "luanti_tune.stats_interval": 1,
            f"{CHASE_MOD}.catch_radius": cfg.catch_radius,
            f"{CHASE_MOD}.player_speed": cfg.player_speed,
            f"{CHASE_MOD}.orbit_radius": cfg.orbit_radius,
            f"{CHASE_MOD}.sample_s": cfg.sample_s,
            **cfg.extra_settings,
        }
        self.server = LuantiServer(
            world=root / "world",
            # Debian's mobs_redo needs minetest_game's `default` (crafts.lua calls
            # default.node_sound_wood_defaults() unconditionally): it fails to load in devtest
            game=GAME,
            port=_free_port(socket.SOCK_DGRAM),
            service_url=self.service.url,
            server_bin=find_server_bin(cfg.server_bin),
            extra_mods=(CHASE_MOD,),
            settings=settings,
        )
        self.client = HeadlessPlayer(root / "client", self.server.port, cfg.player, "pw", cfg.client_bin)

    def _service(self, phase: str, worker: bool) -> ServiceProcess:
        """The service of one phase (its own store ``events[-PHASE].db`` and log), on the one port
        the server's mod knows; ``worker``: with its training worker, at the adaptation's settings."""
        suffix = f"-{phase}" if phase else ""
        env = {"LUANTI_TUNE_MODEL_PATH": str(self.models), "LUANTI_TUNE_DATA_DIR": str(self.data_dir)}
        if worker:
            env["LUANTI_TUNE_TRAINING_INTERVAL"] = str(self.cfg.training_interval)
            env["LUANTI_TUNE_MIN_TRAINING_SECONDS"] = str(self.cfg.min_training_seconds)
        return ServiceProcess(
            db_url=f"sqlite:///{self.root / f'events{suffix}.db'}",
            port=self.port,
            log_path=self.root / f"service{suffix}.log",
            extra_args=("--worker" if worker else "--no-worker", "--validate-workers", "0"),
            env=env,
        )

    def start_service(self, service: ServiceProcess) -> None:
        self.services.append(service)
        self.service = service
        service.start(timeout=120)

    def restart_service(self, phase: str, worker: bool) -> None:
        """Stop the running service and start the one of ``phase`` on the same port (the mod's
        deliveries wait and retry meanwhile; no agent is alive between phases)."""
        self.service.stop(timeout=30)
        _kill_leftovers_of(self.service.proc)  # e.g. its worker, if it outlived its parent
        self.start_service(self._service(phase, worker))

    # ------------------------------------------------------------------ files of the chase mod
    @property
    def cmd_path(self) -> Path:
        return self.server.world / "luanti_tune_chase_cmd.txt"

    @property
    def out_path(self) -> Path:
        return self.server.world / "luanti_tune_chase_episodes.jsonl"

    @property
    def state_path(self) -> Path:
        return self.server.world / "luanti_tune_chase_state.json"

    def command(self, line: str) -> None:
        with open(self.cmd_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def state(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.state_path.read_text(encoding="utf-8"))
            return data
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def records(self) -> list[dict[str, Any]]:
        try:
            text = self.out_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def check_alive(self) -> None:
        if not self.server.running():
            raise LuantiError(f"minetestserver exited; log tail:\n{self.server.log_text()[-3000:]}")
        if not self.service.running():
            raise LuantiError(f"the luanti-tune service exited; see {self.service.log_path}")
        if self.client.proc is not None and not self.client.running():
            tail = self.client.log.read_text(errors="replace")[-2000:] if self.client.log.exists() else ""
            raise LuantiError(f"the headless client exited:\n{tail}")
        if self.trainer is not None and self.trainer.poll() not in (None, 0):
            raise LuantiError("pre-training the pursuit model failed; see " + str(self.root / "train.log"))

    def wait(self, what: str, pred: Callable[[], bool], timeout: float, interval: float = 0.2) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if pred():
                return
            time.sleep(interval)
        raise LuantiError(f"{what}: not within {timeout:.0f} s (work dir {self.root})")

    # ------------------------------------------------------------------ start / stop
    def start(self) -> None:
        cfg = self.cfg
        if not mobs_available():
            raise ConfigError(f"mobs_redo not found in {MOBS_DIR}: apt-get install minetest-mod-mobs-redo")
        if cfg.adapt:  # a kept --work-dir: this run's stores, registry and worker state only
            for path in [
                self.root / f"events{s}.db{w}"
                for s in ("", "-base", "-adapt", "-adapted")
                for w in ("", "-wal", "-shm")
            ]:
                path.unlink(missing_ok=True)
            for d in (self.models, self.data_dir):
                shutil.rmtree(d, ignore_errors=True)
            if cfg.model_path is not None:
                shutil.copytree(cfg.model_path, self.models)
        if not (self.models / "pursuit").is_dir() and cfg.model_path is not None:
            raise ConfigError(f"{cfg.model_path} holds no pursuit model")
        if cfg.model_path is None:
            cmd = [sys.executable, "-c", _MAIN, "train", "pursuit", "--base", "--minutes", str(cfg.train_minutes)]
            cmd += ["--model-path", str(self.models), "--data-dir", str(self.root / "train-data")]
            log.info("pre-training a base pursuit model into %s", self.models)
            with open(self.root / "train.log", "wb") as out:
                self.trainer = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
                )
        self.start_service(self.service)
        for stale in (self.cmd_path, self.out_path, self.state_path):  # a kept --work-dir: this run only
            stale.unlink(missing_ok=True)
        enable_world_mod(self.server.world, MOBS_MOD, gameid=GAME)
        self.server.start()
        log.info("server on udp %d, service %s", self.server.port, self.service.url)
        self.client.start()
        self.command(f"arena 0 {ARENA_Y} 0 {ARENA_RADIUS}")
        self.wait(
            "the player joins and the arena is built",
            lambda: cfg.player in (self.state().get("players") or {}) and bool(self.state().get("arena")),
            timeout=90,
        )
        if self.trainer is not None:
            self.wait(
                "pre-training the pursuit model",
                lambda: self.trainer is not None and self.trainer.poll() == 0,
                600,
                0.5,
            )
        wait_for_champion(self.service.url + "/v1/act", alive=self.check_alive)

    def stop(self) -> None:
        for step in (self.client.stop, self.server.stop, self.service.stop, self._stop_trainer):
            try:
                step()
            except Exception:  # stop the others whatever happened to one
                log.exception("stopping %s failed", step)
        # anything a child left behind in its session (e.g. a compile the service started, its worker)
        for proc in (self.client.proc, self.server.proc, *(s.proc for s in self.services), self.trainer):
            _kill_leftovers_of(proc)

    def _stop_trainer(self) -> None:
        if self.trainer is not None and self.trainer.poll() is None:
            stop_process(self.trainer)

    # ------------------------------------------------------------------ episodes
    def run_episode(self, ep: dict[str, Any], phase: str = "") -> dict[str, Any]:
        cfg = self.cfg
        name = f"{phase}:{ep['id']}" if phase else ep["id"]
        before = len(self.records())
        self.command(
            f"episode {name} {ep['chaser']} {cfg.player} {ep['dx']:.3f} {ep['dz']:.3f} {cfg.limit_s:g} {ep['seed']}"
        )
        # settle + pre-roll + the chaser's appearance + the chase itself
        self.wait(f"episode {name}", lambda: len(self.records()) > before, timeout=cfg.limit_s + 40)
        rec = self.records()[before]
        rec.update(id=ep["id"], pair=ep["pair"], phase=phase or None)
        if rec.get("error"):
            raise LuantiError(f"episode {name} failed: {rec['error']}")
        return rec

    def run_phase(
        self, phase: str, on_episode: Callable[[dict[str, Any]], None] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Every episode of :func:`episode_plan`; returns the records and the decision stats of the
        phase (the mod's counters, as differences)."""
        act0 = self.state().get("act") or {}
        records = []
        for ep in episode_plan(self.cfg):
            rec = self.run_episode(ep, phase)
            records.append(rec)
            log.info(
                "%s%s: caught=%s t=%.2f s (start %.2f s)",
                f"{phase} " if phase else "",
                rec["id"],
                rec["caught"],
                rec["time_s"],
                rec.get("start_s") or -1,
            )
            if on_episode is not None:
                on_episode(rec)
        act1 = self.state().get("act") or {}
        act = {k: v - act0.get(k, 0) for k, v in act1.items() if isinstance(v, int | float)}
        return records, {"act": act, "served": act1.get("model")}

    # ------------------------------------------------------------------ adaptation
    def run_play(self, chunk: dict[str, Any]) -> dict[str, Any]:
        """One chunk of continuous play (:func:`play_plan`); returns the mod's record of it."""
        cfg = self.cfg
        lo, hi = 0.8 * cfg.offset, 1.3 * cfg.offset
        before = len(self.records())
        line = f"play {chunk['id']} {cfg.player} {chunk['seconds']:g} {cfg.limit_s:g} {chunk['seed']}"
        self.command(f"{line} {lo:.3f} {hi:.3f}")
        self.wait(f"play {chunk['id']}", lambda: len(self.records()) > before, timeout=chunk["seconds"] + 60)
        rec = self.records()[before]
        if rec.get("error"):
            raise LuantiError(f"play {chunk['id']} failed: {rec['error']}")
        return rec

    def adapt(self, on_chunk: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Continuous play with the service's worker (:func:`play_plan`), waiting for the worker
        after each chunk; returns what was played, what the worker did and the registry's verdicts
        on the player's champion."""
        cfg = self.cfg
        chunks: list[dict[str, Any]] = []
        promoted_at: float | None = None
        game_s = 0.0
        t0 = time.monotonic()
        for chunk in play_plan(cfg):
            rec = self.run_play(chunk)
            game_s += float(rec["duration_s"])
            time.sleep(TRACK_FLUSH_S)  # the service stores what agents saw every 4 s
            w0 = time.monotonic()
            settled = settle_worker(
                self.service.url, self.data_dir, cfg.training_interval, cfg.worker_timeout_s, alive=self.check_alive
            )
            if not settled:
                log.warning("the worker did not finish within %.0f s after %s", cfg.worker_timeout_s, chunk["id"])
            history = registry_history(self.models, cfg.scope)
            if promoted_at is None and any(h.get("action") == "promote" for h in history):
                promoted_at = round(game_s / 60.0, 2)
            worker = worker_state(self.data_dir)
            row = {
                "id": chunk["id"],
                "seed": chunk["seed"],
                "game_minutes": round(game_s / 60.0, 2),
                **play_figures(rec),
                "served": rec.get("model"),  # the model of the last decision of the chunk
                "worker_wait_s": round(time.monotonic() - w0, 1),
                "worker_settled": settled,
                "worker_cycles": worker.get("cycles", 0),
                "pursuit_cycle": _brief((worker.get("last") or {}).get("pursuit")),
                "scope_last": _brief(history[-1]) if history else None,
            }
            log.info("adaptation %s: %s", chunk["id"], row)
            chunks.append(row)
            if on_chunk is not None:
                on_chunk({**rec, **row})
        worker = worker_state(self.data_dir)
        cursor = int((worker.get("cursors") or {}).get("pursuit", 0))
        tracks = track_events(self.service.db_url, cfg.player, trained_until=cursor)
        last = (worker.get("last") or {}).get("pursuit") or {}
        return {
            "game_minutes": round(game_s / 60.0, 2),
            "wall_s": round(time.monotonic() - t0, 1),
            "training_interval": cfg.training_interval,
            "min_training_seconds": cfg.min_training_seconds,
            "chunks": chunks,
            "minutes_to_promotion": promoted_at,
            "promotions": [
                h.get("version") for h in registry_history(self.models, cfg.scope) if h.get("action") == "promote"
            ],
            # what agents saw of the player, stored by the service, and how much of it the worker took
            "track_events": tracks["events"],
            "track_knots": tracks["knots"],
            "track_last_id": tracks["last_id"],
            # those the worker's pursuit cycles have taken (its cursor passed them: trained and judged)
            "track_events_trained": tracks["trained"],
            "events": tracks["max_id"],
            "worker": {"cycles": worker.get("cycles", 0), "cursor": cursor, "last": _brief(last)},
            "scope_history": [_brief(h) for h in registry_history(self.models, cfg.scope)],
            "population_history": [
                _brief(h) for h in registry_history(self.models, "pursuit") if h.get("action") != "save"
            ],
        }

    def serve_adapted(self) -> dict[str, Any]:
        """After a restart without the worker: until the player's champion (when there is one) is
        served to an agent chasing the player; returns what is served for the player."""
        from luanti_tune.bench.adapt import wait_until_served

        cfg = self.cfg
        wait_for_champion(self.service.url + "/v1/act", alive=self.check_alive)
        champion = champion_version(self.models, cfg.scope)
        served = champion is not None and wait_until_served(self.service.url, cfg.player, cfg.scope)
        if champion is not None and not served:
            raise LuantiError(f"{cfg.scope} {champion} is the champion but is not served (see {self.service.log_path})")
        return {
            "scope_champion": champion,
            "scope_served": bool(served),
            "model": served_model(self.service.url, cfg.player),
        }


#: The service writes what agents saw (``agent.track``) every 4 s (TrackRecorder.flush_s).
TRACK_FLUSH_S = 4.5


def worker_state(data_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((data_dir / "worker" / "state.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def settle_worker(
    url: str, data_dir: Path, training_interval: int, timeout_s: float, alive: Callable[[], None] | None = None
) -> bool:
    """Wait until the service's worker has trained on everything played: a running cycle ends and,
    when the events stored since the last pursuit cycle's range are enough for another one, that
    one ends too (:func:`luanti_tune.bench.adapt.wait_for_worker`). Returns at once when the worker
    is idle with too few new events to train on (``wait_for_worker`` alone would wait for a cycle
    that does not come)."""
    from luanti_tune.bench.adapt import wait_for_worker

    deadline = time.monotonic() + timeout_s
    while worker_state(data_dir).get("in_cycle"):
        if time.monotonic() > deadline:
            return False
        if alive is not None:
            alive()
        time.sleep(0.5)
    last = (worker_state(data_dir).get("last") or {}).get("pursuit") or {}
    if _max_id(url) - int(last.get("until_id") or 0) < training_interval:
        return True
    return wait_for_worker(url, data_dir, training_interval, max(1.0, deadline - time.monotonic()))


def _max_id(url: str) -> int:
    with urllib.request.urlopen(url + "/v1/events/stats", timeout=30) as resp:
        return int(json.loads(resp.read()).get("max_id") or 0)


def registry_history(models: Path, family: str) -> list[dict[str, Any]]:
    """``models/FAMILY/history.jsonl`` (save, promote, reject, skip, fail, rollback), oldest first."""
    try:
        text = (models / family / "history.jsonl").read_text(encoding="utf-8")
    except OSError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def champion_version(models: Path, family: str) -> str | None:
    """The champion of ``family`` in the registry at ``models`` (``aliases.json``), if any."""
    try:
        champion = json.loads((models / family / "aliases.json").read_text(encoding="utf-8")).get("champion")
    except (OSError, ValueError):
        return None
    return str(champion) if champion else None


def _brief(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A registry history row or worker cycle without its bulky fields."""
    if not row:
        return None
    keep = ("time", "action", "status", "version", "reason", "after_id", "until_id")
    return {k: row[k] for k in keep if k in row}


def track_events(db_url: str, player: str, trained_until: int = 0) -> dict[str, Any]:
    """The ``agent.track`` events (what agents saw when they decided) of ``player`` in a store, and
    how many of them have ids up to ``trained_until``."""
    from luanti_tune.store import EventQuery, open_store

    n = knots = trained = 0
    last_id = None
    store = open_store(db_url)
    try:
        max_id = store.max_id()
        for ev in store.iter_events(EventQuery(types=("agent.track",))):
            payload = ev.get("payload") or {}
            if payload.get("target") == player:
                n += 1
                knots += len(payload.get("tick") or [])
                last_id = ev.get("_id", last_id)
                trained += int(last_id is not None and int(last_id) <= trained_until)
    finally:
        store.close()
    return {"events": n, "knots": knots, "last_id": last_id, "max_id": max_id, "trained": trained}


def served_model(url: str, player: str) -> dict[str, Any] | None:
    """The model the service decides with for an agent chasing ``player`` (a probe observation)."""
    probe = {
        "agent": "probe-served",
        "kind": "pursuit",
        "pos": {"x": 0, "y": 8, "z": 0},
        "targets": [player],
        "entities": [{"kind": "player", "name": player, "rel": {"x": 5, "y": 0, "z": 0}}],
    }
    req = urllib.request.Request(
        url + "/v1/act",
        data=json.dumps({"observations": [probe]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        answer = json.loads(resp.read())
    action = (answer.get("actions") or [{}])[0]
    model = answer.get("model")
    if "fallback" in action:
        return {"fallback": action["fallback"]}
    return dict(model) if isinstance(model, dict) else None


def play_figures(rec: dict[str, Any]) -> dict[str, Any]:
    """Catches of one chunk of continuous play (a chase the play's end cut short does not count)."""
    chases = [c for c in rec.get("chases") or [] if not c.get("cut")]
    caught = [c for c in chases if c["caught"]]
    limit = float(rec["limit_s"])
    return {
        "chases": len(chases),
        "caught": len(caught),
        "mean_catch_s": _r(_mean([c["time_s"] for c in caught])),
        "restricted_mean_s": _r(_mean([c["time_s"] if c["caught"] else limit for c in chases])),
        "chase_s_mean": _r(_mean([c["time_s"] - c["start_s"] for c in caught if c.get("start_s") is not None])),
        "dodges": rec.get("dodges"),
    }


#: The mod's event deliveries while the service restarts between the phases of an adaptation run.
_RESTART_ERROR = re.compile(r"ERROR\[CurlFetch\]: HTTPFetch for \S+/v1/events failed \(Couldn't connect to server\)")


def server_errors(server_log: str) -> dict[str, int]:
    """ERROR lines of the server's log; the failed event deliveries while the service was down
    (restarts between phases; the mod queues the events and delivers them later) counted apart."""
    restarts = len(_RESTART_ERROR.findall(server_log))
    return {"server_errors": server_log.count("ERROR[") - restarts, "deliveries_refused_while_restarting": restarts}


def run_chase(cfg: ChaseConfig, on_episode: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns {"episodes": records, "summary": ..., "model": ..., ...}; with
    ``cfg.adapt`` also "base" (the phase before the adaptation), "adaptation" and "comparison",
    "summary" and "episodes" being the adapted phase's (all episodes: "all_episodes")."""
    with _sigterm_as_interrupt(), _work_dir(cfg.work_dir) as root:
        world = ChaseWorld(cfg, root)
        t0 = time.monotonic()
        base: dict[str, Any] = {}
        adaptation: dict[str, Any] = {}
        served: dict[str, Any] = {}
        try:
            world.start()
            setup_s = time.monotonic() - t0
            records, phase = world.run_phase("base" if cfg.adapt else "", on_episode)
            if cfg.adapt:
                base = {"records": records, **phase}
                world.restart_service("adapt", worker=True)
                adaptation = world.adapt(on_episode)
                world.restart_service("adapted", worker=False)
                served = world.serve_adapted()
                records, phase = world.run_phase("adapted", on_episode)
            state = world.state()
        finally:
            world.stop()
        server_log = world.server.log_text()
    result: dict[str, Any] = {
        "episodes": records,
        "summary": summarize(records, cfg),
        "model": {
            "path": str(cfg.model_path) if cfg.model_path else "pre-trained base (temporary)",
            "served": phase["served"],
            **({"registry": "a copy of the path, adapted (kept in --work-dir/models)"} if cfg.adapt else {}),
        },
        "act": {k: v for k, v in phase["act"].items() if k != "model"},
        # both chasers' speed as the mod has it (luanti_tune agents.WALK_SPEED = the mob's run_velocity)
        "chaser_speed": state.get("chaser_speed"),
        "mob_reach": records[0].get("mob_reach") if records else None,
        "setup_s": round(setup_s, 1),
        "run_s": round(time.monotonic() - t0 - setup_s, 1),
        **server_errors(server_log),
    }
    if cfg.adapt:
        base_summary = summarize(base["records"], cfg)
        result["all_episodes"] = base["records"] + records
        result["base"] = {"summary": base_summary, "served": base["served"], "act": base["act"]}
        result["adaptation"] = {**adaptation, "after": served}
        result["comparison"] = compare(base_summary, result["summary"])
    return result


@contextmanager
def _work_dir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="luanti-chase-") as tmp:
        yield Path(tmp)


# ---------------------------------------------------------------------- figures


def distance_at(rec: dict[str, Any], t: float, hold: bool = False) -> float | None:
    """The chaser-player distance at time ``t`` of an episode (linear between samples); after the
    episode's end None, or with ``hold`` the last distance (a caught player stays caught)."""
    samples = rec["samples"]
    if not samples:
        return None
    if t > samples[-1][0] + 1e-9:
        return float(samples[-1][1]) if hold else None
    ts = [s[0] for s in samples]
    ds = [s[1] for s in samples]
    return float(np.interp(t, ts, ds))


def _speeds(rec: dict[str, Any], vx: int, vz: int, after: float = 0.0) -> list[float]:
    return [math.hypot(s[vx], s[vz]) for s in rec["samples"] if s[0] >= after]


def _r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(float(x), nd)


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def summarize(records: list[dict[str, Any]], cfg: ChaseConfig) -> dict[str, Any]:
    """Per chaser: catch rate, mean/median time to catch, start-up, speeds, distance over time; the ratios.

    Times count from the chaser's appearance; censored episodes count as ``limit_s`` in the
    median and the restricted mean. ``chase_s_mean``: time to catch after the chaser started
    moving (caught episodes), i.e. without its start-up. ``distance``: per second since the
    appearance, the mean and median distance of the episodes still running, their number, and the
    mean over all episodes with an ended one held at its last distance (``mean_held``)."""
    out: dict[str, Any] = {}
    grid = [float(t) for t in range(int(cfg.limit_s) + 1)]
    for chaser in CHASERS:
        recs = [r for r in records if r["chaser"] == chaser]
        if not recs:
            continue
        times = np.array([r["time_s"] if r["caught"] else cfg.limit_s for r in recs], dtype=float)
        caught = np.array([bool(r["caught"]) for r in recs])
        starts = [float(r["start_s"]) for r in recs if r.get("start_s") is not None]
        chase_s = [r["time_s"] - r["start_s"] for r in recs if r["caught"] and r.get("start_s") is not None]
        player_speed = [v for r in recs for v in _speeds(r, 4, 5)]
        chaser_speed = [v for r in recs for v in _speeds(r, 8, 9, after=(r.get("start_s") or 0.0) + 0.2)]
        mean_d, median_d, running, mean_held = [], [], [], []
        for t in grid:
            ds = [d for r in recs if (d := distance_at(r, t)) is not None]
            mean_d.append(_r(_mean(ds)))
            median_d.append(_r(float(np.median(ds))) if ds else None)
            running.append(len(ds))
            mean_held.append(_r(_mean([d for r in recs if (d := distance_at(r, t, hold=True)) is not None])))
        closing = [
            (d0 - d2) / 2.0
            for r in recs
            if (d0 := distance_at(r, 0.0)) is not None and (d2 := distance_at(r, 2.0)) is not None
        ]
        out[chaser] = {
            "episodes": len(recs),
            "caught": int(caught.sum()),
            "catch_rate": round(float(caught.mean()), 3),
            "mean_catch_s": _r(times[caught].mean()) if caught.any() else None,
            "median_catch_s": round(float(np.median(times)), 2),
            # half or more censored: the median only says "at least limit_s"
            "median_censored": bool(np.sum(~caught) * 2 >= len(recs)),
            "restricted_mean_s": round(float(times.mean()), 2),
            "chase_s_mean": _r(_mean(chase_s)),
            "appear_s_mean": _r(_mean([r["appear_s"] for r in recs if r.get("appear_s") is not None]), 3),
            "start_moving_s_mean": _r(_mean(starts), 3),
            "start_moving_s_max": _r(max(starts) if starts else None, 3),
            "started": len(starts),
            "d0_mean": _r(_mean([r["d0"] for r in recs])),
            "min_d_mean": _r(_mean([r["min_d"] for r in recs])),
            "closing_speed_0_2s": _r(_mean(closing)),
            "chaser_speed_mean": _r(_mean(chaser_speed)),
            "player_speed_mean": _r(_mean(player_speed)),
            "player_moving_share": _r(_mean([float(v > 0.5) for v in player_speed]), 3),
            "dodges_mean": _r(_mean([r["dodges"] for r in recs])),
            "times_s": [r["time_s"] if r["caught"] else None for r in recs],
            "distance": {"t": grid, "mean": mean_d, "median": median_d, "running": running, "mean_held": mean_held},
        }
    a, m = out.get("agent"), out.get("mob")
    if a and m:

        def ratio(key: str) -> float | None:
            return round(a[key] / m[key], 3) if a[key] and m[key] else None

        out["ratio_agent_vs_mob"] = {
            "restricted_mean": ratio("restricted_mean_s"),
            "median": ratio("median_catch_s"),
            "mean_caught": ratio("mean_catch_s"),
            "chase_after_start": ratio("chase_s_mean"),
            "catch_rate_delta": round(a["caught"] / a["episodes"] - m["caught"] / m["episodes"], 3),
        }
    return out


#: What :func:`compare` reports of each chaser's summary.
HEADLINE = (
    "episodes",
    "caught",
    "catch_rate",
    "mean_catch_s",
    "median_catch_s",
    "median_censored",
    "restricted_mean_s",
    "chase_s_mean",
    "start_moving_s_mean",
    "times_s",
)
#: Time figures of the ratios: censored at the limit, median, caught episodes, after starting to move.
RATIO_FIGURES = {
    "restricted_mean": "restricted_mean_s",
    "median": "median_catch_s",
    "mean_caught": "mean_catch_s",
    "chase_after_start": "chase_s_mean",
}
#: Issue 16: the adapted agent must catch the player in at most this share of the mob's time.
TARGET_VS_MOB = 0.9


def _ratios(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: round(a[f] / b[f], 3) if a[f] and b[f] else None for k, f in RATIO_FIGURES.items()}
    out["catch_rate_delta"] = round(a["catch_rate"] - b["catch_rate"], 3)
    return out


def compare(base: dict[str, Any], adapted: dict[str, Any]) -> dict[str, Any]:
    """The adapted agent against the mob (same phase, interleaved) and the base agent (the phase
    before the adaptation), same episodes (offsets, steering seeds, order); the base agent against
    that phase's mob, and the mob against itself (run-to-run noise); per pair of episodes the times
    (None: not caught within the limit)."""
    b, a, m, m0 = base["agent"], adapted["agent"], adapted["mob"], base["mob"]
    pairs = [
        {"pair": i, "base": tb, "adapted": ta, "mob": tm, "mob_base_phase": tm0}
        for i, (tb, ta, tm, tm0) in enumerate(zip(b["times_s"], a["times_s"], m["times_s"], m0["times_s"], strict=True))
    ]
    vs_mob = _ratios(a, m)
    return {
        "base": {k: b[k] for k in HEADLINE},
        "adapted": {k: a[k] for k in HEADLINE},
        "mob": {k: m[k] for k in HEADLINE},
        "mob_base_phase": {k: m0[k] for k in HEADLINE},
        "ratio_adapted_vs_mob": vs_mob,
        "ratio_adapted_vs_base": _ratios(a, b),
        "ratio_base_vs_mob": _ratios(b, m0),
        "ratio_mob_adapted_vs_base_phase": _ratios(m, m0),
        "pairs": pairs,
        "pairs_adapted_faster_than_mob": sum(_faster(p["adapted"], p["mob"]) for p in pairs),
        "pairs_adapted_faster_than_base": sum(_faster(p["adapted"], p["base"]) for p in pairs),
        "target": {
            "adapted_vs_mob_at_most": TARGET_VS_MOB,
            "figure": "restricted_mean (mean time to catch, a miss counted at the limit)",
            "met": vs_mob["restricted_mean"] is not None and vs_mob["restricted_mean"] <= TARGET_VS_MOB,
        },
    }


def _faster(x: float | None, y: float | None) -> bool:
    return x is not None and (y is None or x < y)


def _series(records: list[dict[str, Any]]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(label, color, records) of each curve: per chaser, or with an adaptation the base agent,
    the adapted agent and the adapted phase's mob."""
    if not any(r.get("phase") for r in records):
        return [
            ("luanti-tune pursuit agent", "tab:blue", [r for r in records if r["chaser"] == "agent"]),
            ("mobs_redo dogfight mob", "tab:red", [r for r in records if r["chaser"] == "mob"]),
        ]
    return [
        ("pursuit agent, base", "tab:gray", [r for r in records if r["chaser"] == "agent" and r["phase"] == "base"]),
        (
            "pursuit agent, adapted",
            "tab:blue",
            [r for r in records if r["chaser"] == "agent" and r["phase"] == "adapted"],
        ),
        ("mobs_redo dogfight mob", "tab:red", [r for r in records if r["chaser"] == "mob" and r["phase"] == "adapted"]),
    ]


def plot(records: list[dict[str, Any]], cfg: ChaseConfig, path: Path) -> Path:
    """PNG: distance over time of every episode (thin; a dot where it was caught) and per chaser
    the mean over its episodes, an ended one held at its last distance (thick), the mean time it
    started moving (dotted) and the catch radius; below, the share of episodes not caught yet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    grid = np.linspace(0.0, cfg.limit_s, int(cfg.limit_s / 0.1) + 1)
    end = max([r["samples"][-1][0] for r in records if r["samples"]] or [cfg.limit_s])
    for name, color, recs in _series(records):
        if not recs:
            continue
        for r in recs:
            s = np.asarray(r["samples"], dtype=float)
            if len(s):
                ax.plot(s[:, 0], s[:, 1], color=color, alpha=0.25, lw=0.8)
                if r["caught"]:
                    ax.plot(s[-1, 0], s[-1, 1], "o", color=color, ms=3)
        held = [_mean([d for r in recs if (d := distance_at(r, float(t), hold=True)) is not None]) for t in grid]
        alive = [sum(1 for r in recs if not r["caught"] or r["time_s"] > t) / len(recs) for t in grid]
        n_caught = sum(r["caught"] for r in recs)
        mean_s = _mean([r["time_s"] for r in recs if r["caught"]])
        label = f"{name}: caught {n_caught}/{len(recs)}" + (f", mean {mean_s:.2f} s" if mean_s else "")
        ax.plot(grid, [np.nan if v is None else v for v in held], color=color, lw=2.2, label=label)
        starts = [r["start_s"] for r in recs if r.get("start_s") is not None]
        if starts:
            ax.axvline(float(np.mean(starts)), color=color, ls=":", lw=1.2)
        ax2.step(grid, alive, where="post", color=color, lw=1.8)
    ax.axhline(cfg.catch_radius, color="k", ls="--", lw=0.8, label=f"catch radius {cfg.catch_radius:g}")
    ax.plot([], [], color="gray", ls=":", lw=1.2, label="mean time it started moving")
    ax.set_ylabel("horizontal distance to the player (nodes)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, min(cfg.limit_s, end + 1.0))
    ax.legend(loc="upper right", fontsize=8)
    speed = records[0].get("chaser_speed", 4) if records else 4
    ax.set_title(
        f"Chasing a real client steered with real velocity (orbit, reversals, dodges): player "
        f"{cfg.player_speed:g} n/s, chasers {speed:g} n/s",
        fontsize=10,
    )
    ax2.set_ylabel("not caught yet")
    ax2.set_xlabel("seconds since the chaser appeared (thick: mean, a caught episode held at its last distance)")
    ax2.set_ylim(0, 1.05)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- command


@click.command()
@click.option("--episodes", type=click.IntRange(1), default=8, show_default=True, help="Episodes per chaser.")
@click.option(
    "--limit", "limit_s", type=click.FloatRange(1), default=20.0, show_default=True, help="Censoring limit (s)."
)
@click.option(
    "--catch-radius",
    type=click.FloatRange(0.5, 3),
    default=1.2,
    show_default=True,
    help="Horizontal distance that counts as caught.",
)
@click.option(
    "--offset", type=click.FloatRange(3, 15), default=8.0, show_default=True, help="Chaser's start distance (nodes)."
)
@click.option(
    "--player-speed",
    type=click.FloatRange(0.5, 6),
    default=4.0,
    show_default=True,
    help="Steered player's speed (nodes/s).",
)
@click.option(
    "--orbit-radius", type=click.FloatRange(2, 15), default=6.0, show_default=True, help="Radius of the player's orbit."
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the offsets and steering schedules.")
@click.option(
    "--model-path",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model registry with a pursuit champion (default: pre-train a base model).",
)
@click.option(
    "--train-minutes",
    type=click.FloatRange(0.05),
    default=1.0,
    show_default=True,
    help="Without --model-path: simulated minutes per style for the base model.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a PNG of the distance over time here.",
)
@click.option(
    "--records",
    "records_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write every episode (with its samples; both phases with --adapt-minutes) as JSON lines here.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep worlds and logs here (default: a temporary directory).",
)
@click.option(
    "--player",
    default="runner",
    show_default=True,
    help="Name of the steered client (a per-player champion pursuit@NAME in --model-path is served to it).",
)
@click.option(
    "--adapt-minutes",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="First measure the base agent, then let it chase the client this many game minutes with the "
    "service's training worker on, then measure the adapted agent (pursuit@PLAYER) on the same episodes.",
)
@click.option(
    "--training-interval",
    type=click.IntRange(1),
    default=400,
    show_default=True,
    help="With --adapt-minutes: the worker trains after this many new events.",
)
@click.option(
    "--min-training-seconds",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="With --adapt-minutes: the worker's minimum wall time between cycles.",
)
@click.option("--server-bin", type=click.Path(dir_okay=False, path_type=Path), default=None)
def chase(
    episodes: int,
    limit_s: float,
    catch_radius: float,
    offset: float,
    player_speed: float,
    orbit_radius: float,
    seed: int,
    model_path: Path | None,
    train_minutes: float,
    plot_path: Path | None,
    records_path: Path | None,
    work_dir: Path | None,
    player: str,
    adapt_minutes: float,
    training_interval: int,
    min_training_seconds: float,
    server_bin: Path | None,
) -> None:
    """Pursuit agent vs a mobs_redo dogfight mob chasing a steered real client: time to catch."""
    from rich.progress import Progress

    cfg = ChaseConfig(
        episodes=episodes,
        limit_s=limit_s,
        catch_radius=catch_radius,
        offset=offset,
        player_speed=player_speed,
        orbit_radius=orbit_radius,
        seed=seed,
        model_path=model_path,
        train_minutes=train_minutes,
        server_bin=server_bin,
        work_dir=work_dir,
        player=player,
        adapt_minutes=adapt_minutes,
        training_interval=training_interval,
        min_training_seconds=min_training_seconds,
    )
    total = 2 * episodes * (2 if cfg.adapt else 1) + len(play_plan(cfg))
    with Progress(transient=True) as progress:
        task = progress.add_task("bench chase: starting service, server and client", total=total)

        def advance(rec: dict[str, Any]) -> None:
            progress.update(task, description=f"bench chase: {rec['id']} done", advance=1)

        result = run_chase(cfg, on_episode=advance)
    episodes_all = result.pop("all_episodes", result["episodes"])
    if records_path is not None:
        records_path.parent.mkdir(parents=True, exist_ok=True)
        records_path.write_text("".join(json.dumps(r) + "\n" for r in episodes_all), encoding="utf-8")
    if plot_path is not None:
        plot(episodes_all, cfg, plot_path)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k not in ("extra_settings",)}
    emit(
        "chase",
        {
            "config": {
                **config,
                "steering": "orbit, reverse every 2-3 s, dodge sideways within 3 nodes",
            },
            **{k: v for k, v in result.items() if k != "episodes"},
            "plot": str(plot_path) if plot_path else None,
        },
    )
