"""`luanti-tune sim run|render|styles` through the real CLI entry point."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from luanti_tune.cli.main import cli
from luanti_tune.store.base import open_store


def test_sim_run_into_db_then_rerun_is_all_duplicates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    args = [
        "sim",
        "run",
        "--players",
        "2",
        "--styles",
        "camper,zigzag",
        "--minutes",
        "0.05",
        "--db",
        url,
        "--seed",
        "9",
    ]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    with open_store(url) as store:
        n = store.stats().events
        assert n > 20 and set(store.stats().sources) == {"sim-9"}
    assert f"{n} events ({n} new, 0 duplicates)" in first.output
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and f"(0 new, {n} duplicates)" in again.output


def test_sim_run_refuses_unknown_style(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    res = CliRunner().invoke(cli, ["sim", "run", "--styles", "strafer,moonwalker", "--db", url, "--minutes", "0.05"])
    assert res.exit_code != 0 and "moonwalker" in res.output
    assert not (tmp_path / "e.db").exists()


def test_sim_render_gif_and_png(tmp_path: Path) -> None:
    gif = tmp_path / "ep.gif"
    res = CliRunner().invoke(cli, ["sim", "render", "--scenario", "pursuit", "--steps", "20", "-o", str(gif)])
    assert res.exit_code == 0, res.output
    with Image.open(gif) as im:
        assert im.n_frames > 5
    png = tmp_path / "nav.png"
    res = CliRunner().invoke(cli, ["sim", "render", "--scenario", "navigate", "--steps", "10", "-o", str(png)])
    assert res.exit_code == 0, res.output
    with Image.open(png) as im:
        assert im.size[0] > 100


def test_sim_styles_lists_held_out() -> None:
    res = CliRunner().invoke(cli, ["sim", "styles"])
    assert res.exit_code == 0 and "spiral (held out)" in res.output and "strafer:" in res.output
