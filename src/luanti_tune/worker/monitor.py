"""Live monitoring of the pursuit champion and automatic rollback.

Every poll the monitor rebuilds pursuit windows from the most recent ``player.move`` events
(a bounded id range), measures the champion's and its predecessor's prediction error on the
same windows, and exports them as Prometheus gauges. During a probation period after each
promotion (only events that arrived after the promotion count), a champion whose live error
exceeds its predecessor's by more than ``rollback_threshold`` (relative) is rolled back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from luanti_tune.errors import ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorConfig:
    window_events: int = 6000
    min_windows: int = 100
    rollback_threshold: float = 0.15
    probation_events: int = 50_000


@dataclass
class MonitorReport:
    family: str
    champion: str | None
    windows: int = 0
    champion_error: float | None = None
    previous: str | None = None
    previous_error: float | None = None
    baseline_error: float | None = None
    rolled_back: str | None = None
    reason: str = ""


class PursuitMonitor:
    """Caches loaded models per version; evaluates on recent windows; decides rollbacks."""

    family = "pursuit"

    def __init__(self, registry: Any, cfg: MonitorConfig | None = None) -> None:
        self.registry = registry
        self.cfg = cfg or MonitorConfig()
        self._models: dict[str, Any] = {}

    def _model(self, version: str) -> Any:
        m = self._models.get(version)
        if m is None:
            if len(self._models) > 4:
                self._models.clear()
            m = self._models[version] = self.registry.load(self.family, version)
        return m

    def check(self, store: Any, max_id: int, probation_after_id: int | None) -> MonitorReport:
        from luanti_tune.datasets.pursuit import PursuitSpec, build_from_store
        from luanti_tune.policies import pursuit as fam

        champion = self.registry.champion_version(self.family)
        report = MonitorReport(self.family, champion)
        if champion is None:
            report.reason = "no champion"
            return report
        try:
            champ = self._model(champion)
        except ModelError as exc:
            report.reason = f"champion unloadable: {exc}"
            return report
        arch = champ.manifest["architecture"]
        after = max(0, max_id - self.cfg.window_events)
        if probation_after_id is not None:
            after = max(after, probation_after_id)
        data = build_from_store(store, PursuitSpec.from_arch(arch, val_fraction=0.0), after_id=after, until_id=max_id)
        report.windows = len(data)
        if report.windows == 0:
            report.reason = "no complete windows yet"
            return report
        report.champion_error = fam.evaluate(champ.module, data.arrays)["ade"]
        report.baseline_error = fam.baseline_metrics(data.arrays, arch["horizons"])["ade"]
        prev_list = self.registry.aliases(self.family).get("previous") or []
        if prev_list:
            report.previous = str(prev_list[-1])
            try:
                report.previous_error = fam.evaluate(self._model(report.previous).module, data.arrays)["ade"]
            except ModelError as exc:
                report.reason = f"previous unloadable: {exc}"
        if (
            probation_after_id is not None
            and report.previous_error is not None
            and report.windows >= self.cfg.min_windows
            and report.champion_error > report.previous_error * (1.0 + self.cfg.rollback_threshold)
        ):
            reason = (
                f"live prediction error {report.champion_error:.3f} of {champion} exceeds predecessor "
                f"{report.previous} ({report.previous_error:.3f}) by more than {self.cfg.rollback_threshold:.0%} "
                f"on {report.windows} windows"
            )
            report.rolled_back = self.registry.rollback(self.family, reason=f"auto: {reason}")
            report.reason = reason
        return report
