"""Configuration in one place: CLI flag > env var ``LUANTI_TUNE_*`` > config file > default."""

from luanti_tune.config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
