"""Map raw scores to probabilities using the baseline's own score distribution.

Inside the baseline's range the probability is the empirical CDF; beyond the baseline maximum an
exponential tail (peaks-over-threshold) takes over, so scores larger than anything seen in the
baseline still rank by size instead of all collapsing to "1.0".
"""

from __future__ import annotations

import math

import numpy as np

# The largest float64 below 1.0. Used only where float64 cannot represent 1 - survival any more.
ALMOST_ONE = float(np.nextafter(1.0, 0.0))


class EmpiricalCalibrator:
    """Empirical CDF with an exponential upper tail; output in ``[0, 1)``.

    With ``n`` baseline scores sorted as ``s_(1) <= ... <= s_(n)``:

    * ``score <= s_(n)``: ``p = #{baseline <= score} / (n + 1)``. The ``n + 1`` keeps even the
      baseline maximum below 1 (its survival is ``1 / (n + 1)``).
    * ``score > s_(n)``: ``p = 1 - exp(-(score - s_(n)) / beta_) / (n + 1)``. ``beta_`` is the mean
      excess of the top ``tail_fraction`` of baseline scores over the threshold just below them (the
      maximum-likelihood exponential fit of the peaks over threshold). Because the exponential is
      memoryless, using it beyond ``s_(n)`` is the same model as beyond the threshold, and the curve
      is continuous at ``s_(n)``.

    float64 cannot hold ``1 - x`` for ``x < 2**-53``, so for scores more than ~37·``beta_`` beyond
    the baseline maximum the probability saturates at ``nextafter(1, 0)``; ``log_survival`` keeps
    ranking there. NaN scores give NaN, ``-inf`` gives 0, ``+inf`` gives ``nextafter(1, 0)``.
    """

    def __init__(self, tail_fraction: float = 0.05) -> None:
        self.tail_fraction = tail_fraction

    def fit(self, baseline_scores: np.ndarray) -> EmpiricalCalibrator:
        if not 0.0 < self.tail_fraction <= 1.0:
            raise ValueError(f"tail_fraction must be in (0, 1], got {self.tail_fraction}")
        scores = np.asarray(baseline_scores, dtype=np.float64).ravel()
        scores = np.sort(scores[np.isfinite(scores)])
        if scores.size == 0:
            raise ValueError("need at least one finite baseline score")
        self.baseline_scores_ = scores
        self.n_baseline_ = int(scores.size)
        self.max_score_ = float(scores[-1])
        self.tail_scale_ = _exponential_tail_scale(scores, self.tail_fraction)
        return self

    def log_survival(self, scores: np.ndarray) -> np.ndarray:
        """``log(1 - p)``: finite for every finite score, so it ranks even where ``p`` saturates."""
        scores = np.asarray(scores, dtype=np.float64)
        n1 = self.n_baseline_ + 1
        below = np.searchsorted(self.baseline_scores_, scores, side="right")
        with np.errstate(divide="ignore"):
            inside = np.log1p(-below / n1)
        beyond = -math.log(n1) - (scores - self.max_score_) / self.tail_scale_
        out = np.where(scores > self.max_score_, beyond, inside)
        return np.where(np.isnan(scores), np.nan, out)

    def transform(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities in ``[0, 1)``, same shape as ``scores``."""
        scores = np.asarray(scores, dtype=np.float64)
        n1 = self.n_baseline_ + 1
        inside = np.searchsorted(self.baseline_scores_, scores, side="right") / n1
        with np.errstate(over="ignore", invalid="ignore"):
            survival = np.exp(-(scores - self.max_score_) / self.tail_scale_) / n1
        out = np.where(scores > self.max_score_, 1.0 - survival, inside)
        # Last resort: float64 rounding of 1 - (tiny survival) and +inf scores.
        out = np.minimum(out, ALMOST_ONE)
        return np.where(np.isnan(scores), np.nan, out)


def _exponential_tail_scale(sorted_scores: np.ndarray, tail_fraction: float) -> float:
    """MLE scale of an exponential fitted to the excesses of the top scores over a threshold."""
    n = sorted_scores.size
    k = min(max(math.ceil(tail_fraction * n), 1), n - 1)  # exceedances; leave one for the threshold
    if k >= 1:
        threshold = sorted_scores[n - k - 1]
        beta = float(np.mean(sorted_scores[n - k :] - threshold))
        if beta > 0 and math.isfinite(beta):
            return beta
    # Degenerate tail (ties or a single score): fall back to the overall spread, then to a tiny
    # positive scale so that anything above a constant baseline is immediately very surprising.
    spread = float(np.std(sorted_scores))
    if spread > 0:
        return spread
    return max(abs(float(sorted_scores[-1])), 1.0) * 1e-12
