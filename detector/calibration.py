"""Map raw scores to probabilities using the baseline's own score distribution.

Every calibrator has the same small interface: ``fit(baseline_scores) -> self``,
``transform(scores) -> probability``, ``log_survival(scores)``, ``get_params()``, ``get_state()`` /
``set_state(state)`` (plain arrays and numbers only, no pickle).

* ``EmpiricalCalibrator``: empirical CDF of the baseline with an exponential tail beyond its maximum.
* ``PotCalibrator``: empirical CDF below a high threshold ``u``, a Generalized Pareto tail above it
  (peaks over threshold), fitted by probability-weighted moments.

The saturation rule
-------------------
Probabilities rank rows all the way up and never equal 1.0: operators and benchmarks sweep
thresholds, and a pile of 1.0s cannot be ranked. float64 cannot hold ``1 - S`` for a survival
``S`` below about 1e-16, so survival is mapped to probability by (``log_survival_to_probability``)::

    p = 1 - S                                   if S >= S0 = 1e-6  (exact: "0.99" means 1 % exceed)
    p = 1 - S0 / (1 + ln(1 + ln(S0 / S)))       if S <  S0         (compressive, in (1 - S0, 1))

The second branch joins the first with the same value and slope at ``S0`` and is strictly
increasing in ``L = -ln S`` for every finite ``L``: even ``L = 1e308`` gives ``1 - p = 1.4e-9``, far
from float64's spacing near 1 (1.1e-16), so no finite score ever maps to the cap. Resolution
``dp/dL = S0 / ((1 + ln(1 + x))**2 (1 + x))`` with ``x = ln(S0 / S)``: about 2.6e-11 at
``-log10 S = 300`` (log-survivals 1e-4 apart still get different probabilities) and 1e-12 at
``-log10 S = 4300``; beyond that ranking degrades gracefully (it keeps ranking orders of magnitude
of ``L``). +inf scores map to ``nextafter(1, 0)``, as does a finite score whose log-survival
overflows to -inf (e.g. 1e308 over a 1e-12 tail scale); NaN stays NaN.
``log_survival`` is the unbounded version for anyone who needs it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

# The largest float64 below 1.0: what +inf scores map to (no finite score reaches it).
ALMOST_ONE = float(np.nextafter(1.0, 0.0))
# Below this survival, probabilities switch from 1 - S to the compressive map (module docstring).
SATURATION_SURVIVAL = 1e-6
_LOG_S0 = math.log(SATURATION_SURVIVAL)
# For xi < 0 the GPD has a finite endpoint; past the point where the local scale sigma + xi*y has
# shrunk to this fraction of sigma, the tail continues as an exponential with that local scale.
_LOCAL_SCALE_FLOOR = 0.1


class Calibrator(Protocol):
    """The interface every calibrator implements."""

    n_baseline_: int  # how many baseline scores it learned from (after ``fit``)
    # Those scores, finite and sorted; read-only, so the recalibration of its alarm level can share them.
    baseline_scores_: np.ndarray

    def fit(self, baseline_scores: np.ndarray) -> Calibrator: ...

    def transform(self, scores: np.ndarray) -> np.ndarray: ...

    def log_survival(self, scores: np.ndarray) -> np.ndarray: ...

    def get_params(self) -> dict[str, Any]: ...

    def get_state(self) -> dict[str, Any]: ...

    def set_state(self, state: Mapping[str, Any]) -> Calibrator: ...


def log_survival_to_probability(survival: np.ndarray, log_survival: np.ndarray) -> np.ndarray:
    """The saturation rule: ``1 - S`` for ``S >= 1e-6``, else ``1 - 1e-6 / (1 + ln(1 + ln(1e-6 / S)))``.

    ``survival`` is ``S`` computed directly (used, exactly, in the ordinary range; it may underflow
    to 0 far out); ``log_survival`` is ``ln S`` (used in the compressive range). NaN in
    ``log_survival`` gives NaN. Result in ``[0, nextafter(1, 0)]``, non-decreasing as ``S`` falls.
    """
    survival = np.asarray(survival, dtype=np.float64)
    log_survival = np.asarray(log_survival, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        excess = np.maximum(_LOG_S0 - log_survival, 0.0)  # >= 0, so the tail value <= S0
        compressed = SATURATION_SURVIVAL / (1.0 + np.log1p(excess))
        q = np.where(survival >= SATURATION_SURVIVAL, survival, compressed)
        p = np.minimum(1.0 - q, ALMOST_ONE)
    return np.where(np.isnan(log_survival), np.nan, p)


# ``(n + 1, ln(n + 1), top baseline score, tail scale)`` of an empirical calibrator: numbers, or arrays
# of one per score.
Tail = tuple[Any, Any, Any, Any]


def empirical_probability(scores: np.ndarray, below: np.ndarray, tail: Tail) -> np.ndarray:
    """``EmpiricalCalibrator.transform`` of ``scores`` with ``below`` baseline scores beneath each
    (``_rank_below``), given ``EmpiricalCalibrator._tail()``: numbers, or one per score (many
    calibrators' scores at once, ``detector.fleet``)."""
    n1, _, top, scale = tail
    with np.errstate(over="ignore", invalid="ignore"):
        beyond_top = np.exp(-(scores - top) / scale) / n1
    survival = np.where(scores > top, beyond_top, (n1 - below) / n1)
    return log_survival_to_probability(survival, empirical_log_survival(scores, below, tail))


def empirical_log_survival(scores: np.ndarray, below: np.ndarray, tail: Tail) -> np.ndarray:
    """``EmpiricalCalibrator.log_survival``, with the same arguments as ``empirical_probability``."""
    n1, log_n1, top, scale = tail
    inside = np.log1p(-below / n1)
    with np.errstate(over="ignore", invalid="ignore"):
        beyond = -log_n1 - (scores - top) / scale
    out = np.where(scores > top, beyond, inside)
    return np.where(np.isnan(scores), np.nan, out)


def _rank_below(sorted_scores: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """How many baseline scores lie below each score, ties counted half (the mid-rank).

    Counting ties in full would put a score equal to a tied top of the baseline at ``n / (n + 1)``:
    an asset whose readings never change (every score 0) would then sit above any alarm level on
    every row. With mid-ranks it sits in the middle, where a score like all the others belongs.
    """
    left = np.searchsorted(sorted_scores, scores, side="left")
    right = np.searchsorted(sorted_scores, scores, side="right")
    return (left + right) / 2.0


class EmpiricalCalibrator:
    """Empirical CDF with an exponential upper tail; output in ``[0, 1)``.

    With ``n`` baseline scores sorted as ``s_(1) <= ... <= s_(n)``:

    * ``score <= s_(n)``: ``p = (#{baseline < score} + #{baseline == score} / 2) / (n + 1)`` (ties
      count half, see ``_rank_below``). The ``n + 1`` keeps even the baseline maximum below 1.
    * ``score > s_(n)``: survival ``S = exp(-(score - s_(n)) / beta_) / (n + 1)``. ``beta_`` is the
      mean excess of the top ``tail_fraction`` of baseline scores over the threshold just below them
      (the maximum-likelihood exponential fit of the peaks over threshold). Because the exponential
      is memoryless, using it beyond ``s_(n)`` is the same model as beyond the threshold; the tail
      starts where the right-continuous ECDF ends (at ``s_(n)`` itself the mid-rank gives survival
      ``1.5 / (n + 1)``, between the ``2`` just below and the ``1`` just above: still decreasing).

    Probabilities follow the saturation rule (module docstring): ``p = 1 - S`` down to ``S = 1e-6``,
    then a compressive map that keeps ranking without ever reaching 1.0. NaN scores give NaN,
    ``-inf`` gives 0, ``+inf`` gives ``nextafter(1, 0)``.
    """

    def __init__(self, tail_fraction: float = 0.05) -> None:
        self.tail_fraction = tail_fraction

    def get_params(self) -> dict[str, Any]:
        return {"tail_fraction": self.tail_fraction}

    def fit(self, baseline_scores: np.ndarray) -> EmpiricalCalibrator:
        if not 0.0 < self.tail_fraction <= 1.0:
            raise ValueError(f"tail_fraction must be in (0, 1], got {self.tail_fraction}")
        scores = _finite_sorted(baseline_scores)
        self.baseline_scores_ = scores
        self.n_baseline_ = int(scores.size)
        self.max_score_ = float(scores[-1])
        self.tail_scale_ = _exponential_tail_scale(scores, self.tail_fraction)
        return self

    def log_survival(self, scores: np.ndarray) -> np.ndarray:
        """``ln S``: finite for every finite score, so it ranks even far beyond the baseline."""
        scores = np.asarray(scores, dtype=np.float64)
        return empirical_log_survival(scores, _rank_below(self.baseline_scores_, scores), self._tail())

    def transform(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities in ``[0, 1)``, same shape as ``scores``."""
        scores = np.asarray(scores, dtype=np.float64)
        return empirical_probability(scores, _rank_below(self.baseline_scores_, scores), self._tail())

    def _tail(self) -> Tail:
        """``(n + 1, ln(n + 1), the baseline's top score, the tail scale)``."""
        n1 = self.n_baseline_ + 1
        return n1, math.log(n1), self.max_score_, self.tail_scale_

    def get_state(self) -> dict[str, Any]:
        return {
            "baseline_scores": self.baseline_scores_.copy(),
            "tail_scale": float(self.tail_scale_),
        }

    def set_state(self, state: Mapping[str, Any]) -> EmpiricalCalibrator:
        scores = _read_only(np.asarray(state["baseline_scores"], dtype=np.float64).ravel().copy())
        self.baseline_scores_ = scores
        self.n_baseline_ = int(scores.size)
        self.max_score_ = float(scores[-1])
        self.tail_scale_ = float(np.asarray(state["tail_scale"]))
        return self


class PotCalibrator:
    """Peaks over threshold: empirical CDF below ``u``, Generalized Pareto tail above it.

    Fit on ``n`` finite baseline scores:

    * ``u = threshold_`` is the baseline's ``threshold_quantile`` (linear interpolation);
      ``N_u = n_exceed_`` baseline scores lie strictly above it.
    * The excesses ``y = s - u`` are fitted with a GPD, survival ``(1 + xi*y/sigma)**(-1/xi)``
      (``exp(-y/sigma)`` for ``xi = 0``), by probability-weighted moments (Hosking & Wallis 1987,
      plotting positions ``(i - 0.35) / N_u``). ``xi`` is clamped to ``xi_bounds`` (default
      ``[-0.5, 0.5]``), and then ``sigma = mean(y) * (1 - xi)`` so the tail keeps the observed mean
      excess. With fewer than ``min_exceedances`` excesses the tail is exponential (``xi = 0``,
      ``sigma = mean(y)``). A degenerate tail (no excess above ``u``) falls back to the baseline's
      standard deviation, then to a tiny scale (anything above a constant baseline is very unusual).
    * For ``xi < 0`` the GPD ends at ``u + sigma/|xi|``; so that scores beyond that still rank, once
      the local scale ``sigma + xi*y`` has shrunk to 10 % of ``sigma`` the log-survival continues
      linearly with that slope (an exponential tail; continuous with a continuous slope).

    Survival ``S(s)``, with the same ``n + 1`` convention as ``EmpiricalCalibrator``:

    * ``s <= u``: ``(#{baseline > s} + 1) / (n + 1)`` (so ``p = #{baseline <= s} / (n + 1)``), with
      ties counted half as in ``EmpiricalCalibrator``;
    * ``s > u``: ``(N_u + 1) / (n + 1) * GPD_survival(s - u)``, continuous at ``u``. The textbook
      ``N_u / n`` tail weight is used with the ``+1`` shift so the two pieces join exactly.

    Probabilities follow the saturation rule (module docstring): strictly increasing through the
    tail, never 1.0. NaN gives NaN, ``-inf`` gives 0, ``+inf`` gives ``nextafter(1, 0)``.
    """

    def __init__(
        self,
        threshold_quantile: float = 0.95,
        min_exceedances: int = 10,
        xi_bounds: tuple[float, float] = (-0.5, 0.5),
    ) -> None:
        self.threshold_quantile = threshold_quantile
        self.min_exceedances = min_exceedances
        self.xi_bounds = xi_bounds

    def get_params(self) -> dict[str, Any]:
        return {
            "threshold_quantile": self.threshold_quantile,
            "min_exceedances": self.min_exceedances,
            "xi_bounds": tuple(self.xi_bounds),
        }

    def fit(self, baseline_scores: np.ndarray) -> PotCalibrator:
        if not 0.0 < self.threshold_quantile < 1.0:
            raise ValueError(f"threshold_quantile must be in (0, 1), got {self.threshold_quantile}")
        lo, hi = (float(v) for v in self.xi_bounds)
        if not lo <= 0.0 <= hi:
            raise ValueError(f"xi_bounds must contain 0, got {self.xi_bounds}")
        scores = _finite_sorted(baseline_scores)
        u = float(np.quantile(scores, self.threshold_quantile))
        excess = scores[scores > u] - u
        xi, sigma = fit_gpd_tail(excess, self.min_exceedances, (lo, hi))
        if not (sigma > 0 and math.isfinite(sigma)):
            xi = 0.0
            spread = float(np.std(scores))
            sigma = spread if spread > 0 else max(abs(float(scores[-1])), 1.0) * 1e-12
        self._set(scores, u, xi, sigma)
        return self

    def _set(self, scores: np.ndarray, u: float, xi: float, sigma: float) -> None:
        self.baseline_scores_ = scores
        self.n_baseline_ = int(scores.size)
        self.threshold_ = u
        self.n_exceed_ = int(scores.size - np.searchsorted(scores, u, side="right"))
        self.xi_ = float(xi)
        self.sigma_ = float(sigma)
        self.tail_weight_ = (self.n_exceed_ + 1) / (self.n_baseline_ + 1)

    def _tail_log_sf(self, y: np.ndarray) -> np.ndarray:
        """``ln GPD_survival(y)`` for ``y > 0`` (with the linear continuation for ``xi < 0``)."""
        return gpd_log_sf(y, self.xi_, self.sigma_)

    def _parts(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(survival computed directly, log survival)."""
        n1 = self.n_baseline_ + 1
        above = scores > self.threshold_
        n_above = self.n_baseline_ - _rank_below(self.baseline_scores_, scores)
        emp = (n_above + 1) / n1
        with np.errstate(over="ignore", invalid="ignore"):
            y = np.where(above, scores - self.threshold_, 0.0)
            log_tail = self._tail_log_sf(y)
            survival = np.where(above, self.tail_weight_ * np.exp(log_tail), emp)
            log_s = np.where(above, math.log(self.tail_weight_) + log_tail, np.log(emp))
        return survival, np.where(np.isnan(scores), np.nan, log_s)

    def log_survival(self, scores: np.ndarray) -> np.ndarray:
        """``ln S``: finite for every finite score, unbounded below."""
        return self._parts(np.asarray(scores, dtype=np.float64))[1]

    def transform(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities in ``[0, 1)``, same shape as ``scores``."""
        survival, log_s = self._parts(np.asarray(scores, dtype=np.float64))
        return log_survival_to_probability(survival, log_s)

    def get_state(self) -> dict[str, Any]:
        return {
            "baseline_scores": self.baseline_scores_.copy(),
            "threshold": self.threshold_,
            "xi": self.xi_,
            "sigma": self.sigma_,
        }

    def set_state(self, state: Mapping[str, Any]) -> PotCalibrator:
        scores = _read_only(np.asarray(state["baseline_scores"], dtype=np.float64).ravel().copy())
        self._set(
            scores,
            float(np.asarray(state["threshold"])),
            float(np.asarray(state["xi"])),
            float(np.asarray(state["sigma"])),
        )
        return self


# Calibrators by their name in the settings (``detector.calibration``).
CALIBRATORS: dict[str, type[EmpiricalCalibrator] | type[PotCalibrator]] = {
    "pot": PotCalibrator,
    "empirical": EmpiricalCalibrator,
}


def fit_gpd_tail(excess: np.ndarray, min_exceedances: int, xi_bounds: tuple[float, float]) -> tuple[float, float]:
    """``(xi, sigma)`` of ``PotCalibrator``'s tail over these excesses: probability-weighted moments,
    ``xi`` clamped to ``xi_bounds`` (``sigma`` then keeps the mean excess); with fewer than
    ``min_exceedances`` (at least 2) an exponential tail of the mean excess (0 with none)."""
    lo, hi = xi_bounds
    if excess.size >= max(int(min_exceedances), 2):
        xi, sigma = fit_gpd_pwm(excess)
        if not (lo <= xi <= hi) or not (sigma > 0 and math.isfinite(sigma)):
            xi = min(max(xi, lo), hi) if math.isfinite(xi) else 0.0
            sigma = float(np.mean(excess)) * (1.0 - xi)
        return xi, sigma
    return 0.0, float(np.mean(excess)) if excess.size else 0.0


def gpd_log_sf(y: np.ndarray, xi: float, sigma: float) -> np.ndarray:
    """``ln`` of the GPD survival of excesses ``y > 0``; for ``xi < 0``, past the point where the local
    scale has shrunk to ``_LOCAL_SCALE_FLOOR`` of ``sigma``, it continues linearly (module docstring)."""
    if xi == 0.0:
        return -y / sigma
    if xi > 0.0:
        return -np.log1p(xi * y / sigma) / xi
    y_c = (1.0 - _LOCAL_SCALE_FLOOR) * sigma / -xi
    log_c = -math.log(_LOCAL_SCALE_FLOOR) / xi  # ln survival at y_c
    inside = -np.log1p(xi * np.minimum(y, y_c) / sigma) / xi
    return np.where(y <= y_c, inside, log_c - (y - y_c) / (_LOCAL_SCALE_FLOOR * sigma))


def gpd_excess_at_log_sf(log_sf: float, xi: float, sigma: float) -> float:
    """The inverse of :func:`gpd_log_sf`: the excess whose log-survival is ``log_sf`` (<= 0)."""
    if xi == 0.0:
        return -sigma * log_sf
    if xi < 0.0:
        log_c = -math.log(_LOCAL_SCALE_FLOOR) / xi
        if log_sf < log_c:  # on the linear continuation
            return (1.0 - _LOCAL_SCALE_FLOOR) * sigma / -xi + (log_c - log_sf) * _LOCAL_SCALE_FLOOR * sigma
    return sigma / xi * math.expm1(min(-xi * log_sf, 700.0))


def fit_gpd_pwm(excesses: np.ndarray) -> tuple[float, float]:
    """Generalized Pareto ``(xi, sigma)`` by probability-weighted moments (Hosking & Wallis 1987).

    ``a0 = mean(y)``, ``a1 = mean(y_(i) * (1 - p_i))`` with ``p_i = (i - 0.35) / m`` over the sorted
    excesses; ``k = a0 / (a0 - 2 a1) - 2``, ``sigma = 2 a0 a1 / (a0 - 2 a1)``, ``xi = -k`` (GPD
    survival ``(1 + xi*y/sigma)**(-1/xi)``). Unbiased-ish and stable for ``xi < 0.5``; no clamping
    here (``PotCalibrator`` clamps). Returns ``(nan, nan)`` for fewer than two excesses.
    """
    y = np.sort(np.asarray(excesses, dtype=np.float64).ravel())
    m = y.size
    if m < 2:
        return math.nan, math.nan
    p = (np.arange(1, m + 1) - 0.35) / m
    a0 = float(np.mean(y))
    a1 = float(np.mean(y * (1.0 - p)))
    denom = a0 - 2.0 * a1
    if not denom > 0:
        return math.nan, math.nan
    k = a0 / denom - 2.0
    return -k, 2.0 * a0 * a1 / denom


def holdout_split(n: int, fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic contiguous split of ``n`` baseline rows: ``(fit_idx, calib_idx)``.

    The first ``n - round(fraction * n)`` rows fit the detector; the last ``round(fraction * n)``
    rows (at least one of each when ``n >= 2``) calibrate it. Calibrating on the detector's own
    training rows (in-sample) is optimistic: flexible detectors (PCA with many components,
    IForest, kNN) score their training rows lower than new normal rows, so new normal rows look
    worse than nominal and false alarms exceed the nominal rate. Held-out rows fix that at the cost
    of fewer rows for each step (a noisier detector and a coarser empirical tail). Contiguous, not
    random, because rows are a time series: the later part also checks the detector generalises
    forward in time, and neighbouring rows are correlated, so a random split would leak.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 rows to split, got {n}")
    n_calib = min(max(int(round(fraction * n)), 1), n - 1)
    cut = n - n_calib
    return np.arange(cut), np.arange(cut, n)


def cross_fitting_folds(n: int, folds: int) -> list[np.ndarray]:
    """Row indices ``0..n-1`` in ``folds`` contiguous blocks of time, for cross-fitting."""
    return np.array_split(np.arange(n), folds)


def _finite_sorted(baseline_scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(baseline_scores, dtype=np.float64).ravel()
    scores = np.sort(scores[np.isfinite(scores)])
    if scores.size == 0:
        raise ValueError("need at least one finite baseline score")
    return _read_only(scores)


def _read_only(scores: np.ndarray) -> np.ndarray:
    """``scores``, which no one may change in place from now on: a calibrator's baseline scores are
    shared with its alarm level's recalibration (:mod:`detector.recalibration`)."""
    scores.flags.writeable = False
    return scores


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
