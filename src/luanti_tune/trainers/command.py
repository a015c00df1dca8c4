"""What the ``luanti-tune train <family>`` commands share: settings and registry, option
overrides, one guarded cycle run by hand (used by :mod:`luanti_tune.trainers.cli` and the
families' own commands in :mod:`luanti_tune.trainers.navigation` and :mod:`luanti_tune.trainers.team`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from luanti_tune.config.settings import Settings, load_settings

OptionsT = TypeVar("OptionsT")


def training_setup(
    config: Path | None, data_dir: Path | None, db_url: str | None, model_path: Path | None, seed: int | None
) -> tuple[Settings, Any]:
    """Settings of a ``train`` command, torch threads bounded by them, and the model registry."""
    from luanti_tune.registry import Registry
    from luanti_tune.trainers.common import configure_torch

    settings = load_settings(config, data_dir=data_dir, db_url=db_url, model_path=model_path, seed=seed)
    configure_torch(settings.torch_threads)
    return settings, Registry(settings.resolved_model_path)


def with_overrides(opts: OptionsT, *, steps: int | None = None, no_sim: bool = False) -> OptionsT:
    """A family's ``CycleOptions`` with the command-line ``--steps`` / ``--no-sim`` applied."""
    if steps is not None:
        opts = dataclasses.replace(opts, fit=dataclasses.replace(opts.fit, steps=steps))  # type: ignore[type-var, attr-defined]
    if no_sim:
        opts = dataclasses.replace(opts, gate=dataclasses.replace(opts.gate, sim=False))  # type: ignore[type-var, attr-defined]
    return opts


def run_cycle_once(
    settings: Settings,
    reg: Any,
    family: str,
    run_cycle: Callable[[Any], Any],
    opts: Any,
    *,
    after_id: int,
    until_id: int | None,
    prepare: Callable[[Any], None] | None = None,
) -> None:
    """One guarded cycle over ids ``(after_id, until_id or the store's max id]``, its result echoed
    as JSON; exits 1 if it failed. ``prepare(store)`` runs first (e.g. to store simulated events)."""
    from luanti_tune.store.base import open_store
    from luanti_tune.trainers.common import CycleContext, guarded_cycle

    with open_store(settings.resolved_db_url) as store:
        if prepare is not None:
            prepare(store)
        until = store.max_id() if until_id is None else until_id
        ctx = CycleContext(store, reg, after_id, until, seed=settings.seed, settings=settings, options={family: opts})
        result = guarded_cycle(family, ctx, run_cycle)
    click.echo(json.dumps(result.to_dict()))
    if result.status == "failed":
        raise SystemExit(1)
