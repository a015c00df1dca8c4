"""``luanti-tune models list|show|promote|rollback|export|history``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from luanti_tune.config.settings import load_settings
from luanti_tune.registry.registry import Registry


def _registry(config: Path | None, model_path: Path | None) -> Registry:
    settings = load_settings(config, model_path=model_path)
    return Registry(settings.resolved_model_path)


_common = [
    click.option("--config", type=click.Path(path_type=Path), default=None, help="TOML config file."),
    click.option("--model-path", type=click.Path(path_type=Path), default=None, help="Registry root (model_path)."),
]


def _with_common(fn: Any) -> Any:
    for opt in reversed(_common):
        fn = opt(fn)
    return fn


@click.group()
def models() -> None:
    """List, inspect, promote, roll back and export model versions."""


@models.command("list")
@_with_common
@click.option("--family", default=None, help="Only this family.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(config: Path | None, model_path: Path | None, family: str | None, as_json: bool) -> None:
    """Versions per family with aliases, gate verdict and key metrics."""
    reg = _registry(config, model_path)
    rows: list[dict[str, Any]] = []
    for fam in [family] if family else reg.families(include_scopes=True):
        for info in reg.info(fam):
            gate = info.gate or {}
            rows.append(
                {
                    "family": fam,
                    "version": info.version,
                    "aliases": info.aliases,
                    "parent": info.parent,
                    "created": info.created,
                    "gate": None if not gate else ("passed" if gate.get("passed") else "rejected"),
                    "reason": gate.get("reason"),
                }
            )
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo(f"no models under {reg.root}")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"models in {reg.root}")
    for col in ("family", "version", "aliases", "parent", "created", "gate", "reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["family"],
            r["version"],
            ",".join(r["aliases"]),
            str(r["parent"] or ""),
            r["created"],
            str(r["gate"] or ""),
            str(r["reason"] or "")[:60],
        )
    Console().print(table)


@models.command("show")
@_with_common
@click.argument("family")
@click.argument("ref", default="champion")
@click.option("--verify/--no-verify", default=True, help="Check file hashes.")
def show_cmd(config: Path | None, model_path: Path | None, family: str, ref: str, verify: bool) -> None:
    """Print the manifest of FAMILY's REF (champion, candidate, previous, latest or vNNNN)."""
    reg = _registry(config, model_path)
    manifest = reg.verify(family, ref) if verify else reg.manifest(family, ref)
    click.echo(json.dumps({"aliases": reg.aliases(family), "manifest": manifest}, indent=2))


@models.command("promote")
@_with_common
@click.argument("family")
@click.argument("ref")
@click.option("--force", is_flag=True, help="Promote even if the stored gate verdict is a rejection.")
@click.option("--reason", default="operator", help="Recorded in the history.")
def promote_cmd(config: Path | None, model_path: Path | None, family: str, ref: str, force: bool, reason: str) -> None:
    """Make REF the champion of FAMILY."""
    reg = _registry(config, model_path)
    version = reg.promote(family, ref, reason=reason, force=force)
    click.echo(f"{family}: champion is now {version} (generation {reg.generation(family)})")


@models.command("rollback")
@_with_common
@click.argument("family")
@click.option("--reason", default="operator", help="Recorded in the history.")
def rollback_cmd(config: Path | None, model_path: Path | None, family: str, reason: str) -> None:
    """Restore FAMILY's previous champion."""
    reg = _registry(config, model_path)
    version = reg.rollback(family, reason=reason)
    click.echo(f"{family}: rolled back, champion is now {version} (generation {reg.generation(family)})")


@models.command("history")
@_with_common
@click.argument("family")
@click.option("--limit", default=20, show_default=True)
def history_cmd(config: Path | None, model_path: Path | None, family: str, limit: int) -> None:
    """Recent registry events of FAMILY (save, promote, reject, rollback, skip, fail)."""
    reg = _registry(config, model_path)
    for row in reg.history(family, limit=limit):
        click.echo(json.dumps(row, sort_keys=True))


@models.command("export")
@_with_common
@click.argument("family")
@click.argument("ref", default="champion")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="ONNX file to write.")
def export_cmd(config: Path | None, model_path: Path | None, family: str, ref: str, out: Path) -> None:
    """Export FAMILY's REF to an ONNX file (checked against PyTorch with ONNX Runtime)."""
    from luanti_tune.registry.export import export_onnx

    reg = _registry(config, model_path)
    report = export_onnx(reg.load(family, ref), out)
    click.echo(json.dumps(report))
