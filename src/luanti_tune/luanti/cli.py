"""``luanti-tune luanti``: run a real Luanti server with the luanti_tune mod, or install the mod."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType

import click

from luanti_tune.config.settings import load_settings
from luanti_tune.luanti.server import GAMES, MOD_NAME, LuantiServer, find_server_bin, install_mod
from luanti_tune.luanti.service import ServiceProcess, service_healthy


def _parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        out[key.strip()] = value.strip()
    return out


@click.group()
def luanti() -> None:
    """Real Luanti (Minetest) server integration."""


@luanti.command("install-mod")
@click.option("--world", required=True, type=click.Path(file_okay=False, path_type=Path), help="World directory.")
def install_mod_cmd(world: Path) -> None:
    """Copy the luanti_tune mod into WORLD/worldmods (then set secure.http_mods = luanti_tune)."""
    dest = install_mod(world)
    click.echo(f"installed {MOD_NAME} into {dest}")
    click.echo(f"add to minetest.conf:  secure.http_mods = {MOD_NAME}")
    click.echo("                       luanti_tune.service_url = http://127.0.0.1:8765")


@luanti.command("serve")
@click.option("--world", required=True, type=click.Path(file_okay=False, path_type=Path), help="World directory.")
@click.option("--game", type=click.Choice(GAMES), default="devtest", show_default=True, help="Game of a new world.")
@click.option("--port", type=click.IntRange(1, 65535), default=30000, show_default=True, help="UDP game port.")
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address the game server binds to.")
@click.option("--service", "service_url", default=None, help="URL of a running service; default: start one.")
@click.option("--db", default=None, help="Store URL of the service started here (default: data_dir).")
@click.option("--service-port", type=int, default=None, help="Port of the service started here (default: settings).")
@click.option("--server-bin", type=click.Path(dir_okay=False, path_type=Path), default=None, help="minetestserver.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Extra minetest.conf setting (repeatable).")
def serve(
    world: Path,
    game: str,
    port: int,
    bind: str,
    service_url: str | None,
    db: str | None,
    service_port: int | None,
    server_bin: Path | None,
    sets: tuple[str, ...],
) -> None:
    """Create/prepare WORLD, install the mod, start minetestserver (and the service); Ctrl-C stops both."""
    settings = load_settings(db_url=db, port=service_port)
    extra = _parse_sets(sets)
    binary = find_server_bin(server_bin)
    service: ServiceProcess | None = None
    world = world.resolve()
    if service_url is None:
        service_url = f"http://{settings.host}:{settings.port}"
        if service_healthy(service_url):
            click.echo(f"using the service already running at {service_url}")
        else:
            world.mkdir(parents=True, exist_ok=True)
            service = ServiceProcess(
                db_url=settings.resolved_db_url,
                port=settings.port,
                host=settings.host,
                log_path=world / "luanti_tune_service.log",
            )
            click.echo(f"starting service at {service_url} (store {settings.resolved_db_url})")
            service.start()
    elif not service_healthy(service_url):
        click.echo(f"warning: no service answers at {service_url}; the mod will queue events and retry", err=True)
    server = LuantiServer(
        world=world,
        port=port,
        service_url=service_url,
        game=game,
        server_bin=binary,
        bind=bind,
        token=settings.token,
        settings=extra,
    )
    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    old = signal.signal(signal.SIGTERM, _stop)
    try:
        server.start()
        click.echo(f"Luanti server ({game}) listening on {bind}:{port}, world {world}")
        click.echo(f"  server log:   {server.log_path}")
        if service is not None and service.log_path:
            click.echo(f"  service log:  {service.log_path}")
        click.echo("  join with:    minetest --go --address 127.0.0.1 --port " + str(port) + " --name NAME")
        click.echo("Ctrl-C stops the server" + (" and the service" if service else ""))
        while not stopping and server.running():
            time.sleep(0.5)
        if not server.running():
            click.echo(f"minetestserver exited (code {server.proc.returncode if server.proc else '?'})", err=True)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        click.echo("stopping...")
        server.stop()
        if service is not None:
            service.stop()
