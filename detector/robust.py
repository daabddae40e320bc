"""Per-sensor robust z-scores: the first, deliberately simple raw-score detector.

Row score = root-mean-square of the per-sensor robust z (``sqrt(mean(z**2))``). Chosen over
``max |z|`` because

* it decomposes exactly: ``d * score**2 == sum(z**2)``, so the contribution shares ``z**2 / sum(z**2)``
  add up to the whole score, and
* small simultaneous shifts on several sensors (a common mechanical fault signature) accumulate
  instead of only the single worst sensor counting.

The price: a fault on one sensor out of ``d`` is diluted by ``sqrt(d)`` relative to ``max |z|``. The
calibrator maps either to a probability, so ranking matters, not the absolute number.
"""

from __future__ import annotations

import numpy as np

# Consistency constants: these make MAD and IQR estimate the standard deviation for Gaussian data.
MAD_TO_SIGMA = 1.4826
IQR_TO_SIGMA = 1.0 / 1.349


class RobustZScore:
    """Median / MAD standardisation per sensor; higher score = more anomalous.

    Learned state: ``median_`` and ``scale_`` (shape ``(d,)``), ``n_features_in_``.
    Scale falls back MAD·1.4826 → IQR/1.349 → std → ``eps`` per sensor, so a sensor that is
    mostly constant (MAD 0) still gets a data-driven spread if it varies at all, and a truly
    constant one gets ``eps``: any later movement of it is then (rightly) extreme.
    """

    def __init__(self, eps: float = 1e-9) -> None:
        self.eps = eps

    def fit(self, X: np.ndarray) -> RobustZScore:
        X = _as_2d(X)
        if X.shape[0] == 0:
            raise ValueError("cannot fit on zero rows")
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        # nan-aware so a caller fitting directly on a log with gaps still gets sane statistics.
        median = np.nanmedian(X, axis=0)
        mad = np.nanmedian(np.abs(X - median), axis=0) * MAD_TO_SIGMA
        q75, q25 = np.nanpercentile(X, [75.0, 25.0], axis=0)
        iqr = (q75 - q25) * IQR_TO_SIGMA
        std = np.nanstd(X, axis=0)
        self.median_ = np.nan_to_num(median, nan=0.0)
        self.scale_ = _first_positive(mad, iqr, std, fallback=float(self.eps))
        self.n_features_in_ = X.shape[1]
        return self

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Signed robust z per sensor, shape ``(n, d)``: positive = above the baseline median."""
        X = _as_2d(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} sensors, got {X.shape[1]}")
        return (X - self.median_) / self.scale_

    def score(self, X: np.ndarray) -> np.ndarray:
        """Row score ``sqrt(mean(z**2))``, shape ``(n,)``."""
        z = self.contributions(X)
        return np.sqrt(np.einsum("ij,ij->i", z, z) / z.shape[1])


def _as_2d(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array (rows, sensors), got shape {X.shape}")
    return X


def _first_positive(*candidates: np.ndarray, fallback: float) -> np.ndarray:
    """Per column, the first candidate that is finite and > 0, else ``fallback``."""
    out = np.full(candidates[0].shape, np.nan)
    for cand in candidates:
        take = np.isnan(out) & np.isfinite(cand) & (cand > 0)
        out[take] = cand[take]
    out[np.isnan(out)] = fallback
    return out
