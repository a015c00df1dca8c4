"""Play-style labels in the dialogue family: context of examples and served prompts, per-style datasets."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from luanti_tune.analysis.players import StyleBook, StyleModel
from luanti_tune.dialogue.context import ContextTracker, player_styles, system_prompt
from luanti_tune.dialogue.dataset import build_examples, build_from_store
from luanti_tune.dialogue.personas import persona_for
from luanti_tune.dialogue.scenario import PLAYERS, conversation_events
from luanti_tune.errors import ConfigError
from luanti_tune.store.base import open_store

LABELS = {"alice": "builder", "bob": "builder", "carol": "builder", "dave": "miner", "erin": "miner", "frank": "miner"}
BUILDERS = sorted(p for p, s in LABELS.items() if s == "builder")


def write_book(path: Path, labels: dict[str, str]) -> Path:
    """A stored style book (as ``analyze players`` writes it) labelling the scenario's players."""
    model = StyleModel(
        features=["speed_mean"],
        log_features=[],
        mean=np.zeros(1),
        scale=np.ones(1),
        centroids=np.array([[0.0], [1.0], [2.0]]),
        names=["builder", "miner", "fighter"],
    )
    players = {p: {"style": s, "confidence": 0.9, "events": 100, "updated": 0.0} for p, s in labels.items()}
    StyleBook(model, players).save(path)
    return path


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return list(conversation_events(120, seed=3))


@pytest.fixture()
def data_dir(tmp_path: Path, events: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir with a SQLite store of the conversations and a style book (settings point at it)."""
    from luanti_tune.schemas.event import parse_event

    data = tmp_path / "data"
    data.mkdir()
    with open_store(f"sqlite:///{data / 'events.db'}") as store:
        store.append([parse_event(e) for e in events])
    write_book(data / "analysis" / "styles.json", LABELS)
    monkeypatch.setenv("LUANTI_TUNE_DATA_DIR", str(data))
    for var in ("LUANTI_TUNE_DB_URL", "LUANTI_TUNE_MODEL_PATH", "LUANTI_TUNE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return data


def test_examples_carry_the_players_style(tmp_path: Path, events: list[dict[str, Any]]) -> None:
    assert set(PLAYERS) == set(LABELS)
    labels = player_styles(write_book(tmp_path / "styles.json", LABELS))
    assert labels == LABELS
    examples = build_examples(events, styles=labels)
    assert {ex["player"] for ex in examples} == set(LABELS)
    for ex in examples:
        style = LABELS[ex["player"]]
        other = "miner" if style == "builder" else "builder"
        system = ex["messages"][0]["content"]
        assert f"Play style: {style}." in system and f"Play style: {other}." not in system
        assert ex["context"]["style"] == style
    # without a style book the examples are exactly what they were
    plain = build_examples(events)
    assert all("Play style" not in ex["messages"][0]["content"] and "style" not in ex["context"] for ex in plain)
    assert [ex["messages"][1:] for ex in plain] == [ex["messages"][1:] for ex in examples]
    assert player_styles(tmp_path / "missing.json") == {} and player_styles(None) == {}


def test_served_prompt_has_the_style_and_equals_the_training_prompt(
    data_dir: Path, events: list[dict[str, Any]]
) -> None:
    from luanti_tune.dialogue.service import DialogueService

    book = data_dir / "analysis" / "styles.json"
    with open_store(f"sqlite:///{data_dir / 'events.db'}") as store:
        service = DialogueService("unused-base", store=store, styles_path=book, context_window_events=100_000)
        plain = DialogueService("unused-base", store=store, context_window_events=100_000)
        try:
            ask = [{"role": "system", "content": "ignored"}, {"role": "user", "content": "hello"}]
            messages, ctx = asyncio.run(service.npc_messages(ask, "smith", "alice"))
            assert ctx is not None and ctx.style == "builder"
            assert "Play style: builder." in messages[0]["content"]
            # the same context function as the dataset builder: identical system prompt
            tracker = ContextTracker(player_styles(book))
            tracker.update_all(events)
            assert messages[0]["content"] == system_prompt(persona_for("smith"), tracker.context("alice"))
            # a re-labelled player is served with the new label (the book is re-read when it changes)
            write_book(book, {**LABELS, "alice": "miner"})
            st = os.stat(book)
            os.utime(book, (st.st_atime, st.st_mtime + 5))
            messages, _ = asyncio.run(service.npc_messages(ask, "smith", "alice"))
            assert "Play style: miner." in messages[0]["content"]
            # no style book configured: no style in the prompt
            messages, _ = asyncio.run(plain.npc_messages(ask, "smith", "alice"))
            assert "Play style" not in messages[0]["content"]
        finally:
            service.close()
            plain.close()


def test_style_filter_keeps_only_that_styles_players(data_dir: Path, events: list[dict[str, Any]]) -> None:
    from luanti_tune.cli.main import cli
    from luanti_tune.dialogue.dataset import load_dataset

    out = data_dir / "datasets" / "builders"
    res = CliRunner().invoke(cli, ["dialogue", "build", "--style", "builder", "-o", str(out)])
    assert res.exit_code == 0, res.output
    train, heldout, manifest = load_dataset(out)
    rows = train + heldout
    expected = [ex for ex in build_examples(events, styles=LABELS) if ex["player"] in BUILDERS]
    assert rows and len(rows) == len(expected) < len(build_examples(events))
    assert {r["player"] for r in rows} == set(BUILDERS)
    assert all("Play style: builder." in r["messages"][0]["content"] for r in rows)
    assert manifest["filters"]["styles"] == ["builder"]
    assert manifest["filters"]["players"] == BUILDERS
    assert manifest["style_book"]["players"] == len(LABELS)
    assert manifest["counts"]["other_players_messages"] > 0
    # no --style: every player's conversations, no style filter recorded
    with open_store(f"sqlite:///{data_dir / 'events.db'}") as store:
        full = build_from_store(store, data_dir / "datasets" / "all", styles_file=data_dir / "analysis" / "styles.json")
    assert full["counts"]["examples"] == len(build_examples(events)) and "styles" not in full["filters"]


def test_bad_style_is_refused_naming_it_and_nothing_is_written(data_dir: Path) -> None:
    from luanti_tune.cli.main import cli

    res = CliRunner().invoke(cli, ["dialogue", "train", "--style", "astronaut", "--steps", "1"])
    assert res.exit_code != 0
    assert isinstance(res.exception, ConfigError) and "astronaut" in str(res.exception)
    assert "builder" in str(res.exception)  # the known styles are listed
    assert not (data_dir / "datasets").exists() and not (data_dir / "models").exists()
    # a style nobody has, and no style book at all: clear errors too
    with open_store(f"sqlite:///{data_dir / 'events.db'}") as store:
        with pytest.raises(ConfigError, match="fighter"):
            build_from_store(
                store, data_dir / "x", styles_file=data_dir / "analysis" / "styles.json", style=["fighter"]
            )
        with pytest.raises(ConfigError, match="analyze players"):
            build_from_store(store, data_dir / "y", styles_file=data_dir / "nothing.json", style=["builder"])
    assert not (data_dir / "x").exists() and not (data_dir / "y").exists()
    # --style with an existing --dataset is a usage error
    (data_dir / "ds").mkdir()
    res = CliRunner().invoke(cli, ["dialogue", "train", "--style", "builder", "--dataset", str(data_dir / "ds")])
    assert res.exit_code == 2 and "--style" in res.output


def test_train_style_trains_on_that_styles_conversations(data_dir: Path, tiny_base: str) -> None:
    from luanti_tune.cli.main import cli
    from luanti_tune.registry import Registry

    args = ["dialogue", "train", "--style", "miner", "--base", tiny_base, "--steps", "2", "--batch-size", "4"]
    res = CliRunner().invoke(cli, [*args, "--rank", "2", "--eval-examples", "2", "--no-promote"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output[res.output.index("{") :])
    dataset = Registry(data_dir / "models").manifest("dialogue", report["version"])["dataset"]
    assert dataset["filters"]["styles"] == ["miner"] and dataset["filters"]["players"] == ["dave", "erin", "frank"]
    assert dataset["counts"]["examples"] > 0 and dataset["counts"]["other_players_messages"] > 0
