"""Which sensors drive an anomalous row, how far each is from what the baseline expects, and whether
the row lies at an operating point the baseline never covered (:mod:`detector.operating_point`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detector.baseline import BaselineModel
from detector.operating_point import unseen_operating_point
from detector.types import Contribution, Explanation


@dataclass(frozen=True, slots=True)
class Explainer:
    """Explains rows by ``model``, the one that scored them: the top ``top_k`` sensors of each.

    ``column_features``: the feature of each sensor's columns (``MonitorConfig.column_features``).
    """

    model: BaselineModel
    names: Sequence[str]
    column_features: Sequence[str]
    top_k: int

    def rows(self, X: np.ndarray, rows: np.ndarray, F: np.ndarray) -> dict[int, Explanation]:
        """The given rows of ``X`` (their model feature rows ``F``), keyed by row index."""
        model = self.model
        per_feature = model.detector.contributions(F)
        features = F
        if model.columns is not None:  # back to every sensor's columns; left-out ones contribute 0
            per_feature, features = _widen(per_feature, model.columns, 0.0), _widen(features, model.columns, np.nan)
        unseen = unseen_operating_point(model, self.column_features, X[rows], features, F).tolist()
        return {
            int(r): Explanation(self.top(X[r], features[j], per_feature[j]), unseen[j])
            for j, r in enumerate(rows.tolist())
        }

    def top(self, values: np.ndarray, features: np.ndarray, contribution: np.ndarray) -> tuple[Contribution, ...]:
        """One row's per-feature contributions aggregated to sensors: share, direction, value, expected range.

        The value and range are those of the sensor's driving feature: its reading against the
        baseline's readings for ``raw``, its rolling level against the baseline's levels for ``level``
        (a level shift inside the readings' noise band is still far outside the levels'), "spread 0.8
        against 0.05-0.2" for a fluctuation. The reading alone would not say how far off.
        """
        model, d = self.model, len(self.names)
        k = contribution.size // d
        per_sensor = np.abs(contribution).reshape(d, k)  # features are grouped by sensor
        magnitude = per_sensor.sum(axis=1)
        total = float(magnitude.sum())
        order = np.argsort(-magnitude, kind="stable")[: self.top_k]
        order = order[magnitude[order] > 0]  # a sensor that adds nothing to the score is no explanation
        out = []
        for i in order.tolist():
            dominant = int(np.argmax(per_sensor[i]))
            column = i * k + dominant
            feature = self.column_features[dominant]
            if feature == "raw":
                value, low, high = values[i], model.expected_low[i], model.expected_high[i]
            else:
                value, low, high = features[column], model.feature_low[column], model.feature_high[column]
            out.append(
                Contribution(
                    sensor=self.names[i],
                    share=float(magnitude[i] / total) if total > 0 else 0.0,
                    direction="high" if contribution[column] >= 0 else "low",
                    value=float(value),
                    expected_low=float(low),
                    expected_high=float(high),
                    feature=feature,
                )
            )
        return tuple(out)


def _widen(rows: np.ndarray, columns: np.ndarray, fill: float) -> np.ndarray:
    """Rows over the model's columns back to every feature column; the others get ``fill``."""
    wide = np.full((rows.shape[0], columns.size), fill)
    wide[:, columns] = rows
    return wide
