"""Per-sensor robust z-scores: the robust univariate / per-sensor detector ("robust_z").

Each sensor is standardised by its baseline median and robust spread. Row score, by ``score_mode``:

* ``"rms"`` (default, the skeleton's behaviour): ``sqrt(mean(z**2))``. It decomposes exactly —
  ``d * score**2 == sum(z**2)`` — so contribution shares ``z**2 / sum(z**2)`` add up to the whole
  score, and small simultaneous shifts on several sensors (a common mechanical fault signature)
  accumulate instead of only the single worst sensor counting. The price: a fault on one sensor out
  of ``d`` is diluted by ``sqrt(d)``.
* ``"max"``: ``max |z|``. No dilution, so it is the better choice for single-sensor faults
  (a failing transmitter, a blocked line).

The calibrator maps either to a probability, so ranking matters, not the absolute number.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from detector.base import (
    IQR_TO_SIGMA,
    MAD_TO_SIGMA,
    DetectorMixin,
    State,
    StateValue,
    as_2d,
    check_choice,
    check_positive_eps,
    first_positive,
    robust_center_scale,
    state_array,
    state_int,
)
from detector.registry import register

__all__ = ["IQR_TO_SIGMA", "MAD_TO_SIGMA", "RobustZScore"]

SCORE_MODES = ("rms", "max")


@register("robust_z")
class RobustZScore(DetectorMixin):
    """Median / robust-scale standardisation per sensor; higher score = more anomalous.

    Learned state: ``center_`` (alias ``median_``) and ``scale_`` (shape ``(d,)``),
    ``n_features_in_``. Scale: the larger of MAD·1.4826 and a winsorised std, then fallbacks (see
    ``robust_center_scale``). Unlike the other detectors, ``fit`` tolerates NaN (nan-aware
    statistics), because the skeleton's callers rely on it.
    """

    def __init__(self, eps: float = 1e-9, score_mode: str = "rms") -> None:
        self.eps = eps
        self.score_mode = score_mode

    def fit(self, X: np.ndarray) -> RobustZScore:
        X = as_2d(X)
        if X.shape[0] == 0:
            raise ValueError("cannot fit on zero rows")
        check_positive_eps(self.eps)
        check_choice("score_mode", self.score_mode, SCORE_MODES)
        self.center_, self.scale_ = robust_center_scale(X, self.eps)
        self.n_features_in_ = X.shape[1]
        return self

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Signed robust z per sensor, shape ``(n, d)``: positive = above the baseline median."""
        X = self._validate_score_input(X)
        return (X - self.center_) / self.scale_

    def score(self, X: np.ndarray) -> np.ndarray:
        """Row score, shape ``(n,)``: ``sqrt(mean(z**2))`` or ``max |z|`` (``score_mode``)."""
        z = self.contributions(X)
        if self.score_mode == "max":
            return np.abs(z).max(axis=1) if z.shape[0] else np.zeros(0)
        return np.sqrt(np.einsum("ij,ij->i", z, z) / z.shape[1])

    def get_state(self) -> State:
        self._check_fitted()
        return {"center_": self.center_.copy(), "scale_": self.scale_.copy(), "n_features_in_": self.n_features_in_}

    def set_state(self, state: Mapping[str, StateValue]) -> RobustZScore:
        check_choice("score_mode", self.score_mode, SCORE_MODES)
        self.center_ = state_array(state, "center_")
        self.scale_ = state_array(state, "scale_")
        self.n_features_in_ = state_int(state, "n_features_in_")
        return self


# Kept for callers of the skeleton's private helpers.
_as_2d = as_2d
_first_positive = first_positive
