"""Exceptions shared by every layer.

Each error names what is wrong so that a boundary (CLI, HTTP) can report it as-is.
"""

from __future__ import annotations


class LuantiTuneError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(LuantiTuneError):
    """A configuration value is missing or invalid."""


class ValidationFailed(LuantiTuneError):
    """Input failed validation; ``errors`` lists ``{"loc": "...", "msg": "..."}`` items."""

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class StoreUnavailable(LuantiTuneError):
    """The event store cannot be reached or has failed (maps to HTTP 503)."""


class ModelError(LuantiTuneError):
    """A model version is missing, corrupted, tampered with or cannot run."""


class TrainingSkipped(LuantiTuneError):
    """A training cycle was skipped on purpose (too little data, nothing new)."""
