"""Play-style analysis: features, clustering against the simulator's scripted styles, stored labels."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from analysis_population import population, true_style
from click.testing import CliRunner
from sklearn.metrics import adjusted_rand_score

from luanti_tune.analysis.players import (
    FEATURES,
    StyleBook,
    analyze_players,
    collect_traces,
    feature_matrix,
    load_style_book,
    style_of,
)
from luanti_tune.errors import ConfigError


def _majority(players: list[str], labels: list[str]) -> dict[str, str]:
    """Cluster label -> the scripted style most of its training players have."""
    votes: dict[str, Counter[str]] = {}
    for p, lab in zip(players, labels, strict=True):
        votes.setdefault(lab, Counter())[true_style(p)] += 1
    return {lab: c.most_common(1)[0][0] for lab, c in votes.items()}


def test_clusters_recover_scripted_styles_on_heldout_population(
    train_population: list[dict[str, Any]], heldout_population: list[dict[str, Any]]
) -> None:
    report = analyze_players(train_population, seed=0)
    assert len(report.players) == 42
    labelled = report.book.classify_events(heldout_population)
    players = sorted(labelled)
    assert len(players) == 28
    truth = [true_style(p) for p in players]
    predicted = [labelled[p][0] for p in players]
    ari = adjusted_rand_score(truth, predicted)
    assert ari >= 0.8, (ari, Counter(zip(truth, predicted, strict=True)))


def test_new_player_of_known_style_is_labelled_after_a_few_minutes(train_population: list[dict[str, Any]]) -> None:
    report = analyze_players(train_population, seed=0)
    to_style = _majority(report.players, report.labels)
    new = population(range(500, 501), minutes=2.0)  # 2 simulated minutes, unseen world and seed
    got = report.book.classify_events(new)
    assert len(got) == 7
    correct = {p: to_style.get(style) == true_style(p) for p, (style, _) in got.items()}
    assert sum(correct.values()) >= 6, (got, to_style)


def test_features_reflect_what_players_do(train_population: list[dict[str, Any]]) -> None:
    traces = collect_traces(train_population)
    players, X, _ = feature_matrix(traces)
    col = {f: i for i, f in enumerate(FEATURES)}
    style = np.array([true_style(p) for p in players])
    assert X[style == "builder", col["place_per_min"]].min() > X[style != "builder", col["place_per_min"]].max()
    assert X[style == "chatter", col["chat_per_min"]].mean() > 4 * X[style != "chatter", col["chat_per_min"]].mean()
    assert X[style == "camper", col["still_frac"]].mean() > 2 * X[style == "explorer", col["still_frac"]].mean()
    assert X[style == "explorer", col["cells_per_min"]].mean() > X[style == "camper", col["cells_per_min"]].mean()


def test_style_book_roundtrip_and_style_of(tmp_path: Path, train_population: list[dict[str, Any]]) -> None:
    report = analyze_players(train_population, seed=0)
    path = tmp_path / "analysis" / "styles.json"
    report.book.save(path)
    book = StyleBook.load(path)
    some = report.players[0]
    assert style_of(some, path=path) == report.labels[0]
    assert style_of("nobody-here", path=path) is None
    groups = book.players_by_style()
    assert sorted(p for ps in groups.values() for p in ps) == sorted(report.players)
    # same predictions after reload (pure numpy model)
    X = report.X
    assert [s for s, _ in book.classify(X)] == report.labels
    assert style_of(some, path=tmp_path / "missing.json") is None


def test_broken_or_foreign_styles_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "styles.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        StyleBook.load(bad)
    bad.write_text(json.dumps({"schema": "something/9"}))
    with pytest.raises(ConfigError, match="schema"):
        StyleBook.load(bad)


def test_too_few_players_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="at least 3 players"):
        analyze_players([])


def test_cli_players_on_a_real_store(tmp_path: Path, train_population: list[dict[str, Any]]) -> None:
    from luanti_tune.cli.main import cli
    from luanti_tune.sim.session import to_store
    from luanti_tune.store.base import open_store

    db = f"sqlite:///{tmp_path / 'events.db'}"
    # three of the sessions: 21 players
    sessions = [e for e in train_population if e["source"] in ("sim-0", "sim-1", "sim-2")]
    with open_store(db) as store:
        to_store(sessions, store)
    data_dir = tmp_path / "data"
    res = CliRunner().invoke(cli, ["analyze", "players", "--db", db, "--data-dir", str(data_dir), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["players"] == 21
    for plot in summary["plots"]:
        assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    book = load_style_book(path=data_dir / "analysis" / "styles.json")
    assert book is not None and len(book.players) == 21
    # the table output works too, and --label-only keeps the stored model
    res = CliRunner().invoke(cli, ["analyze", "players", "--db", db, "--data-dir", str(data_dir), "--label-only"])
    assert res.exit_code == 0, res.output
    assert "Play styles" in res.output
    again = load_style_book(path=data_dir / "analysis" / "styles.json")
    assert again is not None and again.model.names == book.model.names


def test_players_of_styles_for_per_style_adaptation(tmp_path: Path, train_population: list[dict[str, Any]]) -> None:
    from luanti_tune.analysis.players import players_of_styles
    from luanti_tune.cli.main import cli

    path = tmp_path / "data" / "analysis" / "styles.json"
    # no analysis yet: the trainer refuses with a clear message, nothing trained
    res = CliRunner().invoke(cli, ["train", "pursuit", "--style", "builder", "--data-dir", str(tmp_path / "data")])
    assert res.exit_code != 0 and "analyze players" in str(res.exception or res.output)
    report = analyze_players(train_population, seed=0)
    report.book.save(path)
    builders = [p for p, lab in zip(report.players, report.labels, strict=True) if lab == "builder"]
    assert builders and players_of_styles(["builder"], path=path) == sorted(builders)
    assert all(true_style(p) == "builder" for p in builders)
    with pytest.raises(ConfigError, match="unknown play style"):
        players_of_styles(["astronaut"], path=path)
