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
"""

from __future__ import annotations

import json
import logging
import math
import os
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
        self.models = cfg.model_path or root / "models"
        self.trainer: subprocess.Popen[bytes] | None = None
        self.service = ServiceProcess(
            db_url=f"sqlite:///{root / 'events.db'}",
            port=_free_port(socket.SOCK_STREAM),
            log_path=root / "service.log",
            extra_args=("--no-worker", "--validate-workers", "0"),
            env={"LUANTI_TUNE_MODEL_PATH": str(self.models), "LUANTI_TUNE_DATA_DIR": str(root / "data")},
        )
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
            raise LuantiError("the luanti-tune service exited; see " + str(self.root / "service.log"))
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
        if cfg.model_path is None:
            cmd = [sys.executable, "-c", _MAIN, "train", "pursuit", "--base", "--minutes", str(cfg.train_minutes)]
            cmd += ["--model-path", str(self.models), "--data-dir", str(self.root / "train-data")]
            log.info("pre-training a base pursuit model into %s", self.models)
            with open(self.root / "train.log", "wb") as out:
                self.trainer = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
                )
        self.service.start()
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
        # anything a child left behind in its session (e.g. a compile the service started)
        for proc in (self.client.proc, self.server.proc, self.service.proc, self.trainer):
            if proc is not None:
                _kill_leftovers(proc.pid)

    def _stop_trainer(self) -> None:
        if self.trainer is not None and self.trainer.poll() is None:
            stop_process(self.trainer)

    # ------------------------------------------------------------------ episodes
    def run_episode(self, ep: dict[str, Any]) -> dict[str, Any]:
        cfg = self.cfg
        before = len(self.records())
        self.command(
            f"episode {ep['id']} {ep['chaser']} {cfg.player} {ep['dx']:.3f} {ep['dz']:.3f} {cfg.limit_s:g} {ep['seed']}"
        )
        # settle + pre-roll + the chaser's appearance + the chase itself
        self.wait(f"episode {ep['id']}", lambda: len(self.records()) > before, timeout=cfg.limit_s + 40)
        rec = self.records()[before]
        rec["pair"] = ep["pair"]
        if rec.get("error"):
            raise LuantiError(f"episode {ep['id']} failed: {rec['error']}")
        return rec


def run_chase(cfg: ChaseConfig, on_episode: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns {"episodes": records, "summary": ..., "model": ..., ...}."""
    with _sigterm_as_interrupt(), _work_dir(cfg.work_dir) as root:
        world = ChaseWorld(cfg, root)
        t0 = time.monotonic()
        try:
            world.start()
            setup_s = time.monotonic() - t0
            records = []
            for ep in episode_plan(cfg):
                rec = world.run_episode(ep)
                records.append(rec)
                log.info(
                    "%s: caught=%s t=%.2f s (start %.2f s)",
                    rec["id"],
                    rec["caught"],
                    rec["time_s"],
                    rec.get("start_s") or -1,
                )
                if on_episode is not None:
                    on_episode(rec)
            state = world.state()
        finally:
            world.stop()
        server_log = world.server.log_text()
    return {
        "episodes": records,
        "summary": summarize(records, cfg),
        "model": {
            "path": str(cfg.model_path) if cfg.model_path else "pre-trained base (temporary)",
            "served": (state.get("act") or {}).get("model"),
        },
        "act": {k: v for k, v in (state.get("act") or {}).items() if k != "model"},
        # both chasers' speed as the mod has it (luanti_tune agents.WALK_SPEED = the mob's run_velocity)
        "chaser_speed": state.get("chaser_speed"),
        "mob_reach": records[0].get("mob_reach") if records else None,
        "setup_s": round(setup_s, 1),
        "run_s": round(time.monotonic() - t0 - setup_s, 1),
        "server_errors": server_log.count("ERROR["),
    }


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


def plot(records: list[dict[str, Any]], cfg: ChaseConfig, path: Path) -> Path:
    """PNG: distance over time of every episode (thin; a dot where it was caught) and per chaser
    the mean over its episodes, an ended one held at its last distance (thick), the mean time it
    started moving (dotted) and the catch radius; below, the share of episodes not caught yet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"agent": "tab:blue", "mob": "tab:red"}
    labels = {"agent": "luanti-tune pursuit agent", "mob": "mobs_redo dogfight mob"}
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    grid = np.linspace(0.0, cfg.limit_s, int(cfg.limit_s / 0.1) + 1)
    end = max([r["samples"][-1][0] for r in records if r["samples"]] or [cfg.limit_s])
    for chaser in CHASERS:
        recs = [r for r in records if r["chaser"] == chaser]
        if not recs:
            continue
        for r in recs:
            s = np.asarray(r["samples"], dtype=float)
            if len(s):
                ax.plot(s[:, 0], s[:, 1], color=colors[chaser], alpha=0.25, lw=0.8)
                if r["caught"]:
                    ax.plot(s[-1, 0], s[-1, 1], "o", color=colors[chaser], ms=3)
        held = [_mean([d for r in recs if (d := distance_at(r, float(t), hold=True)) is not None]) for t in grid]
        alive = [sum(1 for r in recs if not r["caught"] or r["time_s"] > t) / len(recs) for t in grid]
        n_caught = sum(r["caught"] for r in recs)
        mean_s = _mean([r["time_s"] for r in recs if r["caught"]])
        label = f"{labels[chaser]}: caught {n_caught}/{len(recs)}" + (f", mean {mean_s:.2f} s" if mean_s else "")
        ax.plot(grid, [np.nan if v is None else v for v in held], color=colors[chaser], lw=2.2, label=label)
        starts = [r["start_s"] for r in recs if r.get("start_s") is not None]
        if starts:
            ax.axvline(float(np.mean(starts)), color=colors[chaser], ls=":", lw=1.2)
        ax2.step(grid, alive, where="post", color=colors[chaser], lw=1.8)
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
    help="Write every episode (with its samples) as JSON lines here.",
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
    )
    with Progress(transient=True) as progress:
        task = progress.add_task("bench chase: starting service, server and client", total=2 * episodes)

        def advance(rec: dict[str, Any]) -> None:
            progress.update(task, description=f"bench chase: {rec['id']} done", advance=1)

        result = run_chase(cfg, on_episode=advance)
    if records_path is not None:
        records_path.parent.mkdir(parents=True, exist_ok=True)
        records_path.write_text("".join(json.dumps(r) + "\n" for r in result["episodes"]), encoding="utf-8")
    if plot_path is not None:
        plot(result["episodes"], cfg, plot_path)
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
