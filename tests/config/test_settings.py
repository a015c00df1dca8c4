"""Configuration precedence: CLI flag > env var > config file > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from luanti_tune.config import load_settings
from luanti_tune.errors import ConfigError


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "lt.toml"
    cfg.write_text("port = 7001\ntraining_interval = 50\nseed = 3\n")
    s = load_settings(cfg)
    assert (s.port, s.training_interval, s.seed) == (7001, 50, 3)
    monkeypatch.setenv("LUANTI_TUNE_PORT", "7002")
    s = load_settings(cfg)
    assert s.port == 7002 and s.training_interval == 50
    s = load_settings(cfg, port=7003, training_interval=None)
    assert s.port == 7003 and s.training_interval == 50


def test_defaults_do_not_depend_on_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.data_dir.is_absolute()
    assert s.resolved_db_url == f"sqlite:///{s.data_dir / 'events.db'}"
    assert s.resolved_model_path == s.data_dir / "models"


def test_bad_config_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "lt.toml"
    cfg.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")
    monkeypatch.setenv("LUANTI_TUNE_TRAINING_INTERVAL", "zero")
    with pytest.raises(ConfigError, match="training_interval"):
        load_settings()
    monkeypatch.delenv("LUANTI_TUNE_TRAINING_INTERVAL")
    with pytest.raises(ConfigError, match="token"):
        load_settings(host="0.0.0.0")
    assert load_settings(host="0.0.0.0", token="s3cret").token == "s3cret"
    with pytest.raises(ConfigError, match="db_url"):
        load_settings(db_url="mysql://x")
