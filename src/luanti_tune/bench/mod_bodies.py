"""``/v1/act`` request bodies exactly as the ``luanti_tune`` mod sends them, for ``bench act``.

The mod's own decision loop (``act:step`` in mods/luanti_tune/src/act.lua: ``act.observe``, its JSON
encoder and ``act.to_columns``, with the mod's settings and their defaults, e.g. a ``nearby`` grid
of radius 1) runs in a ``lua5.1`` (or ``luajit``) subprocess over a small fake world: a flat floor,
seven players walking circles, N pursuit agents around them, every agent seeing every player
(seven entities and targets each), positions and velocities as floats rounded to 1/1000 node, and
the result of its last action (a move applied, as ``agents.apply`` records it) from its second
decision on. Each body is one decision later than the previous one (the server tick advances by
``act_interval``, 2), in either format, so an agent never goes back in time.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO

import click

#: Run as ``lua5.1 driver.lua <mod src dir>/``; stdin lines ``"<count> <agents> <rows|columns>"``,
#: each answered with ``count`` bodies on stdout, one per line.
DRIVER = r"""
-- Request bodies of POST /v1/act exactly as the luanti_tune mod builds them (act.lua's act:step,
-- the mod's settings and defaults). Run as: lua5.1 driver.lua <mod src dir>/
-- stdin, one request per line: "<count> <agents> <rows|columns>"; stdout: <count> bodies, one per
-- line, of <agents> pursuit agents chasing seven players on a flat world. Every body is one decision
-- step later than the previous one (the server tick advances by 2: act_interval), whatever its size
-- or format, so an agent never goes back in time.
local src = arg[1]
local loaded = {}
luanti_tune = { require = function(name)
	if loaded[name] == nil then
		loaded[name] = dofile(src .. name .. ".lua")
	end
	return loaded[name]
end }
local act = luanti_tune.require("act")
local config = luanti_tune.require("config")

local sin, cos = math.sin, math.cos
local tick = 100

-- a flat world: stone below y = 8, air above
core = {
	registered_nodes = { ["default:stone"] = { walkable = true }, air = { walkable = false } },
	get_item_group = function() return 0 end,
	get_node_or_nil = function(p)
		return { name = p.y < 8 and "default:stone" or "air" } -- the ground is at y = 7.5
	end,
}

-- seven players walking circles of different sizes and speeds around the origin
local PLAYERS = 7
local function player(k)
	local r, w, phase = 6 + 3 * k, 0.02 + 0.007 * k, k * 0.9
	local name = "player" .. k
	local p = {}
	function p.get_player_name() return name end
	function p.get_pos()
		local a = w * tick + phase
		return { x = r * cos(a) + 0.123 * k, y = 7.5, z = r * sin(a) - 0.071 * k }
	end
	function p.get_velocity()
		local a = w * tick + phase
		local v = r * w * 10 -- per second (0.1 s per tick)
		return { x = -v * sin(a), y = 0, z = v * cos(a) }
	end
	function p.get_hp() return 20 - k end
	return p
end
local players = {}
for k = 1, PLAYERS do
	players[k] = player(k)
end
function core.get_connected_players()
	return players
end

-- agent i: on a ring around the players, drifting a little every tick
local function agent(i)
	local a0, r0 = i * 2.399963, 4 + (i % 23) * 0.7
	local e = { luanti_tune_id = "pursuit-" .. i, kind = "pursuit", _pitch = 0 }
	local function pos()
		local a = a0 + 0.01 * tick
		return { x = r0 * cos(a) + 0.001 * i, y = 7.5, z = r0 * sin(a) - 0.002 * i }
	end
	e.object = {
		get_pos = pos,
		get_velocity = function()
			local a = a0 + 0.01 * tick
			return { x = -r0 * 0.1 * sin(a), y = 0, z = r0 * 0.1 * cos(a) }
		end,
		get_hp = function() return 20 end,
		get_yaw = function() return (a0 + 0.01 * tick) % 6.283185 end,
	}
	return e
end

local ents = {}
local function agents_of(n)
	for i = #ents + 1, n do
		ents[i] = agent(i)
	end
	local list = {}
	for i = 1, n do
		list[i] = ents[i]
	end
	return {
		any = function() return n > 0 end,
		each = function() return ipairs(list) end,
		apply = function() return true end,
	}
end

local loops = {}
-- the mod's decision loop for one format, with the mod's defaults for everything else
local function loop(format)
	if loops[format] == nil then
		local cfg = config.read({ get = function(_, key)
			if key == "luanti_tune.act_format" then
				return format ~= "default" and format or nil
			elseif key == "luanti_tune.act_interval" then
				return "1" -- one request per call here; the tick still advances by act_interval
			end
			return nil
		end })
		local sent = {}
		local self = act.new({
			fetch = function(req) sent[#sent + 1] = req.data end,
			cfg = cfg,
			now = function() return 0 end,
			log = function() end,
			ratelog = { log_key = function() end },
			tick = function() return tick end,
			emit = function() end,
			agents = agents_of(0),
		})
		loops[format] = { self = self, sent = sent }
	end
	return loops[format]
end

local interval = config.read({ get = function() return nil end }).act_interval
for line in io.lines() do
	local count, n, format = line:match("^(%d+) (%d+) (%a+)$")
	assert(count, "bad request line: " .. line)
	local l = loop(format)
	l.self.c.agents = agents_of(tonumber(n))
	for _ = 1, tonumber(count) do
		l.self.inflight = false
		assert(l.self:step(), "the decision loop sent nothing")
		io.write(l.sent[#l.sent], "\n")
		l.sent[#l.sent] = nil
		for _, ent in l.self.c.agents.each() do
			-- what agents.apply records when the answer's move is applied (sent with the next step)
			ent._last_result = { action = "move", ok = true }
		end
		tick = tick + interval
	end
	io.flush()
end
"""


class ModBodies:
    """One Lua interpreter running the mod's decision loop; :meth:`bodies` asks it for bodies."""

    def __init__(self) -> None:
        from luanti_tune.luanti.server import MOD_NAME, mods_source_dir

        lua = shutil.which("luajit") or shutil.which("lua5.1")
        if lua is None:
            raise click.ClickException("bench act runs the mod's encoder: install lua5.1 (scripts/system-deps.sh)")
        src = mods_source_dir() / MOD_NAME / "src"
        self._dir = tempfile.TemporaryDirectory(prefix="mod-bodies-")
        driver = Path(self._dir.name) / "driver.lua"
        driver.write_text(DRIVER)
        self._proc = subprocess.Popen(
            [lua, str(driver), f"{src}/"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._lock = threading.Lock()

    def bodies(self, agents: int, count: int, *, columns: bool) -> list[bytes]:
        """``count`` consecutive bodies of ``agents`` agents (JSON rows, or ``columns``)."""
        if count <= 0:
            return []
        with self._lock:
            stdin, stdout = self._pipes()
            stdin.write(f"{count} {agents} {'columns' if columns else 'rows'}\n".encode())
            stdin.flush()
            out = [stdout.readline()[:-1] for _ in range(count)]
        if not out[-1]:
            raise click.ClickException(f"the mod's encoder failed: {self._error()}")
        return out

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        return self._proc.stdin, self._proc.stdout

    def _error(self) -> str:
        self.close()
        assert self._proc.stderr is not None
        return self._proc.stderr.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()  # type: ignore[union-attr]
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._dir.cleanup()


_SHARED: ModBodies | None = None
_SHARED_LOCK = threading.Lock()


def mod_bodies(agents: int, count: int, *, columns: bool = False) -> list[bytes]:
    """``count`` bodies the mod sends for ``agents`` agents, continuing one shared world (every
    call continues its tick count, whatever the size or format)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = ModBodies()
            atexit.register(_SHARED.close)
        shared = _SHARED
    return shared.bodies(agents, count, columns=columns)


__all__ = ["DRIVER", "ModBodies", "mod_bodies"]
