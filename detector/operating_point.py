"""Whether an anomalous row lies at an operating point the baseline never covered, rather than at a fault.

A plant driven to a load (a speed, a throughput) its baseline never ran at moves every sensor that
follows the load: their levels leave the baseline's range together, each the way the baseline's
correlations say it goes with the others (the current up with the flow, the flow up with the
speed). A fault moves one sensor, or the few around one component, or sends a sensor against its
relations. So an anomalous row is judged to lie at an *unseen operating point* when more than half
of the sensors judged by their level, and at least two, are

1. beyond the baseline's central 99 % of levels: the rolling ``level`` feature against the
   baseline's ``feature_low``/``feature_high`` of it (without that feature the reading, against
   ``expected_low``/``expected_high``); and
2. moved the way the others move them through the baseline's correlations, where the detector
   models those (``pca_spc``): the model plane, given the rest of the row, puts the sensor's level
   on the same side of the baseline's centre as the row has it. A direction, not a distance: a
   plant's relations are not linear (pressure goes with the speed squared, power with its cube),
   so at a load well beyond the baseline's the row is also far off the plane fitted to it, and
   SPE/Q grows about as fast as T² ("T² beyond its limit by more than Q" missed most such rows).
   The direction survives a curved relation; a sensor sent against the others does not, and
   neither does one the others say nothing of: a baseline that ran at one load teaches no relation
   between the sensors, so nothing says they moved together. Other detectors have no structure to
   ask: rule 1 alone judges.

Drifting sensors (:mod:`detector.baseline`) count neither way: their level wanders with the weather,
so being beyond the baseline's range says nothing of the load. More than half, not all: some
sensors do not follow the load (a supply voltage, a temperature that lags it by minutes). More than
half, not "several": a fault of one component moves its own sensors, on SKAB's valve rig up to half
of the six (docs/detection.md, "Unseen operating points"). Two at least: one sensor beyond its
range alone is as likely a fault of that sensor. The judgement changes no score and no alarm: the
alert still opens, and says what it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from detector.baseline import BaselineModel

MOST = 0.5  # more than this share of the level-judged sensors must be beyond the baseline together
MIN_SENSORS = 2  # and at least this many: one sensor beyond its range is as likely its own fault


@runtime_checkable
class ModelPlane(Protocol):
    """A detector with a model of the baseline's correlation structure: ``pca_spc``."""

    def from_the_others(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def unseen_operating_point(
    model: BaselineModel,
    column_features: Sequence[str],
    readings: np.ndarray,
    features: np.ndarray,
    F: np.ndarray,
) -> np.ndarray:
    """Per row, whether it lies at an operating point the baseline never covered (see the module).

    ``readings``: the rows' readings (n, sensors); ``features``: their rolling features over every
    feature column (NaN where the model leaves a column out); ``F``: their model feature rows.
    """
    moved = levels_beyond_baseline(model, column_features, readings, features)
    moved &= along_the_structure(model, column_features, F)
    steady = ~model.drifting
    count = moved[:, steady].sum(axis=1)
    return (count > MOST * int(steady.sum())) & (count >= MIN_SENSORS)


def levels_beyond_baseline(
    model: BaselineModel, column_features: Sequence[str], readings: np.ndarray, features: np.ndarray
) -> np.ndarray:
    """Per row and sensor, whether its level lies outside the baseline's central 99 % of levels."""
    if "level" in column_features:
        k, column = len(column_features), column_features.index("level")
        level, low, high = features[:, column::k], model.feature_low[column::k], model.feature_high[column::k]
    else:  # no rolling level: the reading itself
        level, low, high = readings, model.expected_low, model.expected_high
    return (level < low) | (level > high)


def along_the_structure(model: BaselineModel, column_features: Sequence[str], F: np.ndarray) -> np.ndarray:
    """Per row and sensor, whether the model plane, given the rest of the row, moves its level the way
    the row moved it (True where the detector has no plane, or the model no level column of it)."""
    detector, d = model.detector, model.drifting.size
    level = next((column_features.index(f) for f in ("level", "raw") if f in column_features), None)
    if not isinstance(detector, ModelPlane) or level is None:
        return np.ones((F.shape[0], d), dtype=bool)
    z, others = detector.from_the_others(F)
    agrees = np.ones((F.shape[0], d * len(column_features)), dtype=bool)
    columns = slice(None) if model.columns is None else model.columns
    agrees[:, columns] = np.sign(z) == np.sign(others)
    return agrees[:, level :: len(column_features)]
