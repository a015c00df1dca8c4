"""Process management for a real ``minetestserver`` with the luanti_tune mod installed.

Used by ``luanti-tune luanti serve``, the integration tests and ``luanti-tune bench luanti``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from luanti_tune.errors import ConfigError, LuantiTuneError

log = logging.getLogger(__name__)

MOD_NAME = "luanti_tune"
CTL_MOD_NAME = "luanti_tune_ctl"
TIMING_MOD_NAME = "luanti_tune_timing"
#: Helper mods for tests and benchmarks (never needed on a production server).
HELPER_MODS = (TIMING_MOD_NAME,)
GAMES = ("devtest", "minetest")
_GAME_IDS = {"devtest": "devtest", "minetest": "minetest"}


class LuantiError(LuantiTuneError):
    """The Luanti server could not be set up, started or controlled."""


def find_server_bin(explicit: str | Path | None = None) -> Path:
    """The ``minetestserver`` (or ``luantiserver``) binary: explicit path, PATH, then /usr/games."""
    if explicit:
        p = Path(explicit)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise ConfigError(f"--server-bin {p} is not an executable file")
        return p
    for name in ("luantiserver", "minetestserver"):
        found = shutil.which(name)
        if found:
            return Path(found)
        candidate = Path("/usr/games") / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigError(
        "minetestserver not found on PATH or in /usr/games: install Debian's minetest-server "
        "(apt-get install minetest-server) or pass --server-bin"
    )


def mods_source_dir() -> Path:
    """Directory holding the ``luanti_tune`` mod sources: ``LUANTI_TUNE_MODS_DIR``, the source
    checkout's mods/, or the copy a wheel installs under ``<prefix>/share/luanti-tune/mods``."""
    env = os.environ.get("LUANTI_TUNE_MODS_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "mods")
    candidates.append(Path(sys.prefix) / "share" / "luanti-tune" / "mods")
    for c in candidates:
        if (c / MOD_NAME / "init.lua").is_file():
            return c
    raise ConfigError(
        f"the {MOD_NAME} mod sources were not found (looked in {', '.join(map(str, candidates))}); "
        "set LUANTI_TUNE_MODS_DIR to the directory containing mods/luanti_tune"
    )


def install_mod(world: Path, name: str = MOD_NAME) -> Path:
    """Copy (or update) mod ``name`` into ``WORLD/worldmods/``; mod storage is kept (it lives in the world)."""
    src = mods_source_dir() / name
    if not (src / "init.lua").is_file():
        raise ConfigError(f"mod {name} not found in {src.parent}")
    dest = world / "worldmods" / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("spec", "*.rockspec", ".*"))
    return dest


def remove_mod(world: Path, name: str) -> None:
    dest = world / "worldmods" / name
    if dest.exists():
        shutil.rmtree(dest)


def _conf_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if "\n" in text:
        raise ConfigError(f"setting value {text!r} must not contain a newline")
    return text


def write_config(path: Path, settings: Mapping[str, Any]) -> Path:
    """Write a minetest.conf-style file (``name = value`` lines)."""
    lines = ["# written by luanti-tune; regenerated on every start"]
    lines += [f"{k} = {_conf_value(v)}" for k, v in settings.items() if v is not None]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class LuantiServer:
    """A real ``minetestserver`` process for one world.

    ``settings`` are extra minetest.conf entries (e.g. ``{"luanti_tune.batch_size": 64}``).
    """

    world: Path
    port: int
    service_url: str | None = "http://127.0.0.1:8765"
    game: str = "devtest"
    server_bin: Path | None = None
    bind: str = "127.0.0.1"
    token: str | None = None
    with_mod: bool = True
    with_ctl: bool = False
    extra_mods: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if self.game not in GAMES:
            raise ConfigError(f"--game must be one of {', '.join(GAMES)}, got {self.game!r}")
        self.world = Path(self.world)

    @property
    def config_path(self) -> Path:
        return self.world / "luanti_tune_server.conf"

    @property
    def log_path(self) -> Path:
        return self.world / "luanti_tune_server.log"

    @property
    def stats_path(self) -> Path:
        return self.world / "luanti_tune_stats.json"

    @property
    def ctl_path(self) -> Path:
        return self.world / "luanti_tune_ctl.txt"

    @property
    def ctl_state_path(self) -> Path:
        return self.world / "luanti_tune_ctl_state.json"

    def prepare(self) -> None:
        """Create the world directory, install/update the mod(s) and write the server config."""
        self.world.mkdir(parents=True, exist_ok=True)
        if self.with_mod:
            install_mod(self.world, MOD_NAME)
        else:
            remove_mod(self.world, MOD_NAME)
        for stale in (self.ctl_path, self.ctl_state_path):  # commands are for this run only
            stale.unlink(missing_ok=True)
        if self.with_ctl:
            install_mod(self.world, CTL_MOD_NAME)
        else:
            remove_mod(self.world, CTL_MOD_NAME)
        for name in HELPER_MODS:
            if name not in self.extra_mods:
                remove_mod(self.world, name)
        for name in self.extra_mods:
            install_mod(self.world, name)
        conf: dict[str, Any] = {
            "server_announce": False,
            "bind_address": self.bind,
            "secure.http_mods": MOD_NAME,
            # agents keep their map blocks loaded; the default of 16 blocks is too few
            "max_forceloaded_blocks": 4096,
        }
        if self.service_url:
            conf["luanti_tune.service_url"] = self.service_url
        if self.token:
            conf["luanti_tune.token"] = self.token
        conf.update(self.settings)
        write_config(self.config_path, conf)

    def command(self) -> list[str]:
        binary = self.server_bin or find_server_bin()
        return [
            str(binary),
            "--config",
            str(self.config_path),
            "--world",
            str(self.world),
            "--gameid",
            _GAME_IDS[self.game],
            "--port",
            str(self.port),
            "--logfile",
            str(self.log_path),
        ]

    def start(self, timeout: float = 30.0) -> None:
        """Prepare the world and start the server; returns once it listens (or raises)."""
        self.prepare()
        cmd = self.command()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log.info("starting %s", " ".join(cmd))
        # stderr goes to a file: a pipe nobody reads would fill up and block the server
        with open(self.world / "luanti_tune_server.stderr", "ab") as err_fh:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=err_fh, stderr=err_fh, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text(offset)
            if "listening on" in text:
                return
            if self.proc.poll() is not None:
                err = (self.world / "luanti_tune_server.stderr").read_text(errors="replace")
                code = self.proc.returncode
                raise LuantiError(f"minetestserver exited with code {code}:\n{text[-2000:]}{err[-2000:]}")
            time.sleep(0.05)
        self.stop()
        raise LuantiError(f"minetestserver did not listen within {timeout:.0f} s; see {self.log_path}")

    def log_text(self, offset: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (clean shutdown: mod storage and map saved), SIGKILL after ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("minetestserver did not stop within %.0f s; killing it", timeout)
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: simulates a crash (no shutdown callbacks run)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    # ------------------------------------------------------------------ control (luanti_tune_ctl)

    def ctl(self, *lines: str) -> None:
        """Append commands for the ``luanti_tune_ctl`` helper mod (needs ``with_ctl=True``)."""
        with open(self.ctl_path, "a", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line.rstrip("\n") + "\n")

    def ctl_state(self) -> dict[str, Any]:
        """The latest state written by ``luanti_tune_ctl`` ({} before the first write)."""
        try:
            data: dict[str, Any] = json.loads(self.ctl_state_path.read_text(encoding="utf-8"))
            return data
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def wait_state(self, predicate: Any, timeout: float = 20.0, interval: float = 0.2) -> dict[str, Any]:
        """Poll :meth:`ctl_state` until ``predicate(state)`` is true; raises on timeout."""
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self.ctl_state()
            if state and predicate(state):
                return state
            if not self.running():
                raise LuantiError(f"minetestserver exited; log tail:\n{self.log_text()[-3000:]}")
            time.sleep(interval)
        raise LuantiError(f"condition not reached within {timeout:.0f} s; last state: {json.dumps(state)[:2000]}")

    def __enter__(self) -> LuantiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
