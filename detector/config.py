"""The settings of one asset's monitor, as one frozen value: :class:`MonitorConfig`.

The live service builds it from the YAML ``detector`` section (``DetectorSettings.as_config(asset)``,
per-asset overrides applied); the backtest takes the same value with ``baseline_rows`` replaced
(``dataclasses.replace(config, baseline_rows=train_rows)``); tests build it directly. It is checked
once, when made: a monitor never meets a setting it cannot use.

The names are the YAML keys' (``detector`` for ``kind``, ``detector_params`` for ``params``,
``max_staleness_ns`` for ``max_staleness_s``). The defaults are the product's
(``plantwatch/default.yaml``), except ``max_staleness_ns``: 10 s here, 30 s in the service.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from detector.alarm import HysteresisAlarm
from detector.align import FrameAligner
from detector.base import Detector
from detector.calibration import CALIBRATORS, Calibrator
from detector.registry import make_detector
from detector.running_rule import RunningRule

DEFAULT_MAX_STALENESS_NS = 10_000_000_000  # 10 s: a few missed samples of a 1 Hz sensor
MIN_BASELINE_ROWS = 10  # fewer rows cannot be cross-fitted into a calibration worth the name

# The settings a saved model depends on: a model learned with other values of these is not restored.
MODEL_SETTINGS = (
    "baseline_rows",
    "detector",
    "detector_params",
    "features",
    "window_s",
    "window_samples",
    "calibration",
    "calibration_fraction",
    "calibration_folds",
    "adapt",
    "adapt_every",
    "drift_ratio",
)


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """Everything an :class:`~detector.monitor.AssetMonitor` is told; see ``plantwatch/default.yaml``."""

    # baseline and model
    baseline_rows: int = 600
    # A baseline that saw a sensor move one way only goes on this many more baseline_rows at most
    # (detector.transitions): learning changes one way teaches nothing of the way back.
    baseline_extensions: int = 3
    detector: str = "pca_spc"
    detector_params: Mapping[str, Any] = field(default_factory=dict, hash=False)  # a read-only mapping: unhashable
    features: Sequence[str] | None = ("level", "spread")  # None (or empty): the readings themselves
    window_s: float | None = None  # None: window_samples x the baseline's median sampling interval
    window_samples: int = 15
    drift_ratio: float = 20.0  # 0 turns the drifting-sensor rule off
    # calibration
    calibration: str = "empirical"
    calibration_fraction: float = 0.3  # with calibration_folds 0: the newest part, held out
    calibration_folds: int = 10
    # alarm rule
    false_alerts_per_week: float | None = 1.0  # None: the alarm enters at ``enter`` (a per-row quantile)
    enter: float = 0.995  # with false_alerts_per_week, the lowest entry level the derived one may take
    exit: float = 0.8
    min_duration: int = 2
    exit_duration: int = 5
    suppress_rows: int = 0
    # explanations
    top_k: int = 3
    # alignment of live readings
    max_staleness_ns: int = DEFAULT_MAX_STALENESS_NS
    discovery_ns: int | None = None  # None: max_staleness_ns
    # adaptation
    adapt: bool = False
    adapt_every: int = 500
    # recalibration: the calibrator keeps learning live normal scores (off while adapt refits it anyway)
    recalibrate: bool = True
    # operating states (detector.running): not model settings, a changed rule keeps the baseline
    running_when: str | None = None  # None: always running
    settle_s: float = 0.0  # after each start, not scored (the feature window refills after it anyway)
    running_rule: RunningRule | None = field(default=None, init=False, repr=False, compare=False)  # parsed

    def __post_init__(self) -> None:
        # Frozen all the way down where it is cheap: a private copy of the params, read-only, and a
        # tuple of features. Nested params (an ensemble's members) are copied, not frozen.
        object.__setattr__(self, "detector_params", MappingProxyType(copy.deepcopy(dict(self.detector_params or {}))))
        object.__setattr__(self, "features", tuple(self.features) if self.features else None)
        self._check()
        object.__setattr__(self, "running_rule", self._parse_running_when())

    def _check(self) -> None:
        """``ValueError`` naming the first unusable setting (in this order, which the messages of the
        settings check and the backtest rely on)."""
        if self.baseline_rows < MIN_BASELINE_ROWS:
            raise ValueError(f"baseline_rows must be >= {MIN_BASELINE_ROWS}, got {self.baseline_rows}")
        if self.baseline_extensions < 0:
            raise ValueError(f"baseline_extensions must be >= 0, got {self.baseline_extensions}")
        if self.calibration not in CALIBRATORS:
            raise ValueError(f"calibration must be one of {sorted(CALIBRATORS)}, got {self.calibration!r}")
        if self.calibration_folds == 1 or self.calibration_folds < 0:
            raise ValueError(f"calibration_folds must be 0 (hold-out) or >= 2, got {self.calibration_folds}")
        if not 0.0 < self.calibration_fraction < 1.0:
            raise ValueError(f"calibration_fraction must be in (0, 1), got {self.calibration_fraction}")
        if self.window_s is not None and not self.window_s > 0:
            raise ValueError(f"window_s must be > 0, got {self.window_s}")
        if self.window_samples < 2:
            raise ValueError(f"window_samples must be >= 2, got {self.window_samples}")
        if not self.drift_ratio >= 0:
            raise ValueError(f"drift_ratio must be >= 0 (0 = off), got {self.drift_ratio}")
        if self.false_alerts_per_week is not None and not self.false_alerts_per_week > 0:
            target = self.false_alerts_per_week
            raise ValueError(f"false_alerts_per_week must be > 0 (or null: enter is the level), got {target}")
        if self.adapt and self.adapt_every < 1:
            raise ValueError(f"adapt_every must be >= 1, got {self.adapt_every}")
        if not 0 <= self.settle_s < float("inf"):
            raise ValueError(f"settle_s must be >= 0 (seconds not scored after each start), got {self.settle_s}")
        self.make_detector()  # unknown kinds and params
        self.make_aligner(None)  # the aligner and the alarm check their own parameters
        self.make_alarm()

    def _parse_running_when(self) -> RunningRule | None:
        if self.running_when is None:
            return None
        if not isinstance(self.running_when, str):
            raise ValueError(f"running_when must be a condition text or None, got {self.running_when!r}")
        try:
            return RunningRule.parse(self.running_when)
        except ValueError as exc:
            raise ValueError(f"running_when {self.running_when!r}: {exc}") from None

    # -- the parts it configures ---------------------------------------------------------------

    def make_detector(self) -> Detector:
        """A fresh, unfitted detector of the configured kind."""
        return make_detector(self.detector, self.detector_params)

    def make_calibrator(self) -> Calibrator:
        calibrator: Calibrator = CALIBRATORS[self.calibration]()
        return calibrator

    def make_aligner(self, sensors: Sequence[str] | None) -> FrameAligner:
        """An aligner for these sensors (None: discover them from the first readings)."""
        return FrameAligner(sensors, max_staleness_ns=self.max_staleness_ns, discovery_ns=self.discovery_ns)

    def make_alarm(self) -> HysteresisAlarm:
        return HysteresisAlarm(self.enter, self.exit, self.min_duration, self.exit_duration, self.suppress_rows)

    @property
    def recalibrates(self) -> bool:
        """Whether the calibrator is refitted on live normal scores (:mod:`detector.recalibration`)."""
        return self.recalibrate and not self.adapt

    @property
    def column_features(self) -> tuple[str, ...]:
        """The feature of each sensor's model columns, in column order (``raw`` when features are off)."""
        return tuple(self.features) if self.features else ("raw",)

    # -- as plain data -----------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        """Every setting as plain JSON values (lists, dicts), e.g. to print or compare."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        values["detector_params"] = copy.deepcopy(dict(self.detector_params))
        values["features"] = list(self.features) if self.features else None
        return values

    def model_settings(self) -> dict[str, Any]:
        """The settings a saved model depends on (``MODEL_SETTINGS``), as plain JSON values."""
        values = self.as_dict()
        return {name: values[name] for name in MODEL_SETTINGS}
