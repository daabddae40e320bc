"""Explain one row's score: which sensors drive it, in which direction, against what range."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detector.types import Contribution

EXPECTED_RANGE_SCALES = 3.0


def top_contributions(
    sensors: Sequence[str],
    values: np.ndarray,
    z: np.ndarray,
    median: np.ndarray,
    scale: np.ndarray,
    k: int = 3,
) -> tuple[Contribution, ...]:
    """The ``k`` sensors with the largest ``|z|`` in one row, largest first.

    * ``share = z_i**2 / sum(z**2)``: with the RMS row score this is each sensor's exact fraction of
      ``score**2``; all shares are 0 when every ``z`` is 0.
    * ``direction`` is ``"high"`` for ``z >= 0`` and ``"low"`` for ``z < 0``.
    * The expected range is ``median ± 3·scale``: the baseline's robust centre ± 3 robust standard
      deviations (about 99.7 % of a Gaussian baseline; not a learned quantile).

    Ties in ``|z|`` keep sensor order, so the output is deterministic.
    """
    values = np.asarray(values, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    z2 = z * z
    total = float(z2.sum())
    order = np.argsort(-np.abs(z), kind="stable")[: max(k, 0)]
    low = np.asarray(median) - EXPECTED_RANGE_SCALES * np.asarray(scale)
    high = np.asarray(median) + EXPECTED_RANGE_SCALES * np.asarray(scale)
    return tuple(
        Contribution(
            sensor=sensors[i],
            share=float(z2[i] / total) if total > 0 else 0.0,
            direction="high" if z[i] >= 0 else "low",
            value=float(values[i]),
            expected_low=float(low[i]),
            expected_high=float(high[i]),
        )
        for i in order.tolist()
    )
