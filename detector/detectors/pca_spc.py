"""PCA-based multivariate statistical process control (MSPC): Hotelling T² and SPE/Q.

The process-monitoring standard (pharmaceutical manufacturing, chemicals): a PCA model of the
normal operating baseline splits every row into

* its projection on the ``k`` retained components — **T²** (Mahalanobis distance inside the model
  plane) flags rows that move *along* the normal correlation structure but too far (e.g. the plant
  running at an unusual load), and
* its residual — **SPE / Q** (squared prediction error) flags rows that break the correlation
  structure (e.g. the pressure no longer following the flow), even when every sensor is
  individually in range.

Both statistics get an upper control limit: the empirical ``limit_quantile`` of their baseline
values (no distributional assumption, and no scipy for F / chi² limits). The score is built from
the limit-normalised statistics, so 1.0 means "at the control limit":

* ``"max"`` (default): ``max(T²/T²_lim, Q/Q_lim)`` — the classic "either chart is out of control"
  rule. A fault that shows in one statistic only (a correlation break is Q-only) is not diluted
  by the other statistic's normal noise, as it would be in the sum.
* ``"sum"``: ``T²/T²_lim + Q/Q_lim`` — a combined index (Yue & Qin 2001 style); a little more
  sensitive to faults that move both a bit.
* ``"t2"`` / ``"q"``: one chart only.

Standardisation uses the baseline median and robust scale (``robust_center_scale``), so a few
spikes in the baseline do not inflate the units; the PCA is the eigen-decomposition of the second
moment of those robust z about the median. Numerically: components with (numerically) zero
variance are never retained (collinear sensors, constant sensors — their directions stay in the
residual, where any change is then very large in Q), and limits have a tiny floor so a residual
that is exactly zero on the baseline does not give 0/0. With ``d = 1`` the single component is
retained, Q is 0 and the score degenerates to a squared z.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from detector.base import (
    DetectorMixin,
    State,
    StateValue,
    check_choice,
    check_positive_eps,
    direction_sign,
    robust_center_scale,
    rowwise_matmul,
    state_array,
    state_float,
    state_int,
)
from detector.registry import register

SCORE_MODES = ("max", "sum", "t2", "q")
CONTRIBUTIONS = ("partial", "reconstruction")
# I - P P' of a sensor the retained components explain almost fully: its residual is noise, so its
# reconstruction-based Q share is held to at most 1/RESIDUAL_FLOOR times its squared residual.
RESIDUAL_FLOOR = 1e-2

# Lower bound for the control limits (statistics are in squared robust-z units, O(1) for normal
# rows): avoids 0/0 when the baseline residual is exactly zero (k == d, or perfectly collinear
# sensors) while keeping any real deviation from such an exact relationship hugely significant.
LIMIT_FLOOR = 1e-12


@register("pca_spc")
class PcaSpc(DetectorMixin):
    """PCA T² / Q monitoring; ``score`` is the limit-normalised combination chosen by ``score_mode``.

    Parameters: ``variance`` — fraction of the baseline variance the retained components explain
    (ignored when ``n_components`` is given; ``n_components`` is capped at the numerical rank);
    ``limit_quantile`` — baseline quantile used as the control limit of T² and of Q; ``eps`` —
    spread of constant sensors.

    Learned state: ``center_``, ``scale_`` (d,), ``components_`` (d, k) loadings,
    ``explained_variance_`` (k,), ``t2_limit_``, ``q_limit_``, ``n_components_``, ``n_features_in_``.
    """

    def __init__(
        self,
        variance: float = 0.95,
        n_components: int | None = None,
        limit_quantile: float = 0.99,
        score_mode: str = "max",
        eps: float = 1e-9,
        contribution: str = "partial",
    ) -> None:
        self.variance = variance
        self.n_components = n_components
        self.limit_quantile = limit_quantile
        self.score_mode = score_mode
        self.eps = eps
        self.contribution = contribution

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, X: np.ndarray) -> PcaSpc:
        X = self._validate_fit_input(X)
        self._check_params()
        self.center_, self.scale_ = robust_center_scale(X, self.eps)
        self.n_features_in_ = X.shape[1]
        Z = (X - self.center_) / self.scale_
        eigvals, eigvecs = _principal_axes(Z)
        k = self._choose_k(eigvals)
        self.components_ = eigvecs[:, :k].copy()
        self.explained_variance_ = eigvals[:k].copy()
        self.n_components_ = k
        t2, q, _, _ = self._statistics(Z)
        self.t2_limit_ = max(float(np.quantile(t2, self.limit_quantile)), LIMIT_FLOOR)
        self.q_limit_ = max(float(np.quantile(q, self.limit_quantile)), LIMIT_FLOOR)
        return self

    def _check_params(self) -> None:
        if not 0.0 < self.variance <= 1.0:
            raise ValueError(f"variance must be in (0, 1], got {self.variance}")
        if self.n_components is not None and not (isinstance(self.n_components, int) and self.n_components >= 1):
            raise ValueError(f"n_components must be a positive int or None, got {self.n_components!r}")
        if not 0.0 < self.limit_quantile < 1.0:
            raise ValueError(f"limit_quantile must be in (0, 1), got {self.limit_quantile}")
        check_choice("score_mode", self.score_mode, SCORE_MODES)
        check_choice("contribution", self.contribution, CONTRIBUTIONS)
        check_positive_eps(self.eps)

    def _choose_k(self, eigvals: np.ndarray) -> int:
        rank = int(eigvals.size)
        if rank == 0:
            return 0
        if self.n_components is not None:
            return min(self.n_components, rank)
        explained = np.cumsum(eigvals) / eigvals.sum()
        # Tolerance: variance=1.0 must select the full rank despite rounding in the cumulative sum.
        return min(int(np.searchsorted(explained, self.variance - 1e-12)) + 1, rank)

    # -- statistics --------------------------------------------------------------------------

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        X = self._validate_score_input(X)
        return (X - self.center_) / self.scale_

    def _statistics(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(T², Q, scores t, residual)`` for standardised rows ``Z``."""
        return statistics(Z, self.components_, self.explained_variance_)

    def t2(self, X: np.ndarray) -> np.ndarray:
        """Hotelling T² per row: ``sum_a t_a**2 / lambda_a`` over the retained components."""
        return self._statistics(self._standardise(X))[0]

    def spe(self, X: np.ndarray) -> np.ndarray:
        """SPE / Q per row: squared norm of the residual off the PCA model plane (robust-z units)."""
        return self._statistics(self._standardise(X))[1]

    def from_the_others(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(z, others)``: the rows in robust-z units, and where the model plane puts each column judged
        from the rest of its row: the row's projection on the plane less the column's own part
        (``sum_{i != j} H_ji z_i``, with ``H = P Pᵀ`` the projection). ``detector.operating_point``
        asks whether the baseline's correlations move a sensor the way it moved."""
        Z = self._standardise(X)
        resid = self._statistics(Z)[3]
        own = np.einsum("ja,ja->j", self.components_, self.components_)  # the diagonal of H
        return Z, Z - resid - Z * own

    def score(self, X: np.ndarray) -> np.ndarray:
        t2, q, _, _ = self._statistics(self._standardise(X))
        return combined(t2 / self.t2_limit_, q / self.q_limit_, self.score_mode)

    # -- contributions -----------------------------------------------------------------------

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-sensor contributions to the score, signed by the sensor's standardised deviation.

        ``contribution="partial"`` (the default): Q's ``e_j**2`` (they sum to Q) and T²'s
        ``c_j = z_j * sum_a (t_a / lambda_a) p_ja`` (they sum to T²; negative ones set to 0, the
        Kourti–MacGregor convention: a sensor pulling the row back toward the centre does not drive
        the alarm).

        ``contribution="reconstruction"``: reconstruction-based contributions (Alcala & Qin, 2009),
        how much of each statistic goes away when that one sensor is reconstructed from the others,
        ``(xi_j' M z)**2 / (xi_j' M xi_j)`` with ``M = I - P P'`` for Q and ``M = P diag(1/lambda) P'``
        for T². In theory they resist "smearing" (a fault of one sensor leaking into the residuals of
        the sensors it correlates with); measured on single-sensor steps (``bench/explanations.py``)
        they named the stepped sensor first exactly as often as the partial ones, and among the top
        three less often, so they are not the default.

        Both are divided by their control limit and combined like the score (``"max"``: the
        contributions of whichever statistic is larger for that row). The sign is that of
        ``(x - center_) / scale_``, matching the "expected range" shown next to it.
        """
        Z = self._standardise(X)
        t2, q, t, resid = self._statistics(Z)
        weighted = rowwise_matmul(t / self.explained_variance_, self.components_.T)  # D z, D = P diag(1/l) P'
        if self.contribution == "partial":
            c_t2 = np.maximum(Z * weighted, 0.0)
            c_q = resid * resid
        else:
            loadings = self.components_
            # The diagonals of D and of I - P P'; a sensor the model explains fully has no residual of its own.
            d_diag = np.maximum(np.sum(loadings * loadings / self.explained_variance_, axis=1), LIMIT_FLOOR)
            residual_diag = np.maximum(1.0 - np.sum(loadings * loadings, axis=1), RESIDUAL_FLOOR)
            c_t2 = weighted * weighted / d_diag
            c_q = resid * resid / residual_diag
        c_t2 = c_t2 / self.t2_limit_
        c_q = c_q / self.q_limit_
        if self.score_mode == "t2":
            mag = c_t2
        elif self.score_mode == "q":
            mag = c_q
        elif self.score_mode == "sum":
            mag = c_t2 + c_q
        else:
            t2_wins = (t2 / self.t2_limit_ >= q / self.q_limit_)[:, None]
            mag = np.where(t2_wins, c_t2, c_q)
        return direction_sign(Z) * mag

    # -- state -------------------------------------------------------------------------------

    def get_state(self) -> State:
        self._check_fitted()
        return {
            "center_": self.center_.copy(),
            "scale_": self.scale_.copy(),
            "components_": self.components_.copy(),
            "explained_variance_": self.explained_variance_.copy(),
            "t2_limit_": self.t2_limit_,
            "q_limit_": self.q_limit_,
            "n_components_": self.n_components_,
            "n_features_in_": self.n_features_in_,
        }

    def set_state(self, state: Mapping[str, StateValue]) -> PcaSpc:
        self._check_params()
        self.center_ = state_array(state, "center_")
        self.scale_ = state_array(state, "scale_")
        self.n_features_in_ = state_int(state, "n_features_in_")
        self.n_components_ = state_int(state, "n_components_")
        self.components_ = state_array(state, "components_").reshape(self.n_features_in_, self.n_components_)
        self.explained_variance_ = state_array(state, "explained_variance_").reshape(self.n_components_)
        self.t2_limit_ = state_float(state, "t2_limit_")
        self.q_limit_ = state_float(state, "q_limit_")
        return self


def _principal_axes(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, numerically non-zero only) and unit eigenvectors ``(d, r)``.

    SVD of ``Z`` rather than an eigen-decomposition of ``Z.T @ Z``: squaring the data would square
    its condition number, which matters for nearly collinear sensors.
    """
    n, d = Z.shape
    _, s, vt = np.linalg.svd(Z, full_matrices=False)
    # numpy.linalg.matrix_rank's default tolerance: singular values below it are rounding noise.
    tol = s.max(initial=0.0) * max(n, d) * np.finfo(np.float64).eps
    keep = s > tol
    vecs = vt[keep].T
    # Deterministic sign (LAPACK may return either): largest-|.| loading of each axis positive.
    flip = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(vecs.shape[1])])
    vecs = vecs * np.where(flip == 0, 1.0, flip)
    return s[keep] ** 2 / max(n - 1, 1), vecs


def statistics(
    Z: np.ndarray, components: np.ndarray, variance: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(T², Q, scores t, residual)`` of standardised rows ``Z`` with loadings ``components`` (d, k)
    and component variances ``variance`` (k,), or one of each per row ((n, d, k) and (n, k))."""
    t = rowwise_matmul(Z, components)
    t2 = np.einsum("ij,ij->i", t, t / variance)
    resid = Z - rowwise_matmul(t, np.swapaxes(components, -1, -2))
    q = np.einsum("ij,ij->i", resid, resid)
    return t2, q, t, resid


def combined(r_t2: np.ndarray, r_q: np.ndarray, score_mode: str) -> np.ndarray:
    """The score of limit-normalised T² and Q (``score_mode``: module docstring)."""
    if score_mode == "t2":
        return r_t2
    if score_mode == "q":
        return r_q
    if score_mode == "sum":
        return r_t2 + r_q
    return np.maximum(r_t2, r_q)
