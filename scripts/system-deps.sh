#!/usr/bin/env bash
# Installs the Debian packages the test suite and the demo need, only those that are missing.
# Idempotent and quick when everything is present. Run as root (CI and dev machines are root).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$2" ]; }
have minetestserver /usr/games/minetestserver || need+=(minetest-server)
have minetest /usr/games/minetest || need+=(minetest)
have xvfb-run /usr/bin/xvfb-run || need+=(xvfb xauth)
have luacheck /usr/bin/luacheck || need+=(lua-check)
have busted /usr/bin/busted || need+=(lua-busted)
have lua5.1 /usr/bin/lua5.1 || need+=(lua5.1)
have chromium /usr/bin/chromium || need+=(chromium)
# mobs_redo (mod `mobs`): the mob API of `luanti-tune bench chase` and its test (a data package)
[ -f /usr/share/games/minetest/mods/mobs_redo/init.lua ] || need+=(minetest-mod-mobs-redo)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi

if [ ${#need[@]} -eq 0 ]; then
  echo "system-deps: all present"
  exit 0
fi
echo "system-deps: installing ${need[*]}"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${need[@]}" >/dev/null
echo "system-deps: done"
