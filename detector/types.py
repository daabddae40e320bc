"""Messages produced by the detector layer, and the range of values it can use."""

from __future__ import annotations

from dataclasses import dataclass

# Values beyond this are unusable: their squares overflow float64, so spreads would turn to NaN and
# the row pass as normal. No plant quantity is near it; such a value is an "invalid" sentinel
# (DBL_MAX). The monitor skips rows holding one and the MQTT decoder refuses them.
MAX_ABS_VALUE = 1e150

# Features whose range is not a baseline's: a maintenance driver's drift (its range is the drift at
# the maintenance threshold), a reading stuck at one value, a sensor silent for ``value`` seconds.
NO_RANGE_FEATURES = frozenset({"drift", "flat", "silent"})


@dataclass(frozen=True, slots=True)
class Contribution:
    """How much one sensor drives a row's score, and how far it is from what the baseline expects."""

    sensor: str
    share: float  # fraction of the row's score attributed to this sensor, in [0, 1]
    direction: str  # "high" or "low"
    # The driving feature's current value and the baseline's central 99 % of it: the reading for
    # "raw", the rolling level for "level", the rolling spread for "spread", and so on.
    value: float
    expected_low: float
    expected_high: float
    feature: str = ""  # the feature that drives it most: "raw", "level", "spread", "slope", ...

    @property
    def within_expected(self) -> bool:
        """The value is inside the baseline's range: the sensor is not off on its own, its
        combination with the others is (a broken correlation, seen by the model's residual).
        Always False for the features of NO_RANGE_FEATURES: being inside their range says nothing
        about the other sensors."""
        return self.feature not in NO_RANGE_FEATURES and self.expected_low <= self.value <= self.expected_high


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why one anomalous row scored high: its top sensors, and whether it lies at an operating point
    the baseline never covered (most sensors' levels beyond the baseline's range together, their
    relations kept: :mod:`detector.operating_point`) rather than at a fault of those sensors."""

    contributions: tuple[Contribution, ...]
    unseen_operating_point: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """The detector's output for one aligned row of one asset."""

    asset: str
    ts_ns: int
    score: float  # raw score, higher = more anomalous
    probability: float  # calibrated, in [0, 1), never exactly 1.0
    anomaly: bool  # the alarm rule's decision (after hysteresis / minimum duration)
    contributions: tuple[Contribution, ...] = ()
    warming_up: bool = False  # True while the baseline is still being learned
    # False while the asset is stopped (``running_when`` false): not scored, score and probability NaN,
    # anomaly False. Rows settling after a start give no verdict, as rows refilling after a gap.
    running: bool = True
    # The explanation's judgement (anomalous rows only): the row lies at an operating point the baseline
    # never covered, so its contributions name sensors beyond the baseline's range together, not faults.
    unseen_operating_point: bool = False
    # The calibrated probability the alarm entered at when the row was scored (None for a row not
    # scored): beside ``probability`` in InfluxDB, so a chart draws the level the row was judged by.
    alarm_enter: float | None = None
