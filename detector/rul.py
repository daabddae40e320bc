"""Remaining useful life (RUL) from run-to-failure histories.

Pipeline (all learned from the training fleet only):

1. **Regime normalisation** (:class:`RegimeNormalizer`). When settings columns exist, the settings are
   scaled, rounded and clustered with KMeans for k = 1..``max_regimes``; the smallest k whose clusters
   explain ≥ ``regime_explained`` (0.999) of the settings' variance is chosen (noise around one operating
   point never gets there, discrete operating conditions do). Every sensor is then standardised per regime, so
   a change of operating condition is not read as degradation. The threshold was 0.99 until C-MAPSS FD002:
   there five clusters explain 0.993 of its six conditions' variance (two conditions, settings 35/0.84/100 and
   42/0.84/100, merged into one "regime" whose sensor statistics mix two operating points); six explain 1.0.
   On FD001 (one condition, noise) six clusters explain 0.84.
2. **Column selection**: near-constant sensors (per-regime spread ≈ 0, or too few distinct values) and
   sensors whose |Spearman correlation| with the capped target is below ``min_abs_corr`` are dropped.
3. **Window features** per time step over the last ``window`` rows: last value, mean, least-squares slope
   against time, exponentially smoothed value, min, max, the smoothed value's drift from the asset's own
   first ``baseline`` rows (removes unit-to-unit offsets), plus the asset's age (time since its first row).
   Short histories use what is there. Defaults were chosen by GroupKFold CV on C-MAPSS FD001 *training*
   engines (see bench/rul.py).
4. **Regressor**: an average of ``n_models`` ``HistGradientBoostingRegressor`` (different seeds,
   feature subsampling per split) trained on every row of every training asset with the piece-wise linear target
   ``min(cap, t_fail - t)``.
5. **Intervals** bound the *true* (uncapped) RUL of an asset observed at an arbitrary point of its life;
   nominal ``coverage`` (80 %) over assets observed at a uniformly random time. Calibration is
   cross-validated split conformal (CV+ style) on training assets only: out-of-fold predictions from
   ``GroupKFold`` over *assets*; the residual of a row is ``t_fail - t - prediction`` (training assets run
   to failure, so every row's true RUL is known, beyond the cap too). Each row's prediction sees only that
   asset's past, so row ``i`` of a held-out asset is exactly the prediction at the last row of its history
   truncated at ``i``; weighting every row by ``1 / length`` makes every held-out asset count once with a
   uniformly random truncation point (the exact expectation of sampling cut-offs). Residuals are binned by
   predicted RUL (error grows with RUL: Mondrian conformal), bins being engine-weighted quantiles of the
   prediction merged until each holds at least ``min_bin_assets`` effective assets. ``low/high`` are the
   weighted residual quantiles ``(1 - coverage) / 2`` and ``(1 + coverage) / 2`` of the prediction's bin
   (with a finite-sample correction), so a prediction at the cap gets a wide, honest ``high``.

Persistence: :meth:`RulModel.get_state` returns (JSON-able dict, dict of plain arrays). The boosted trees
are not serialised; the training matrix, target, parameters and seeds are, and :meth:`RulModel.from_state`
refits deterministically and checks the refit reproduces stored predictions exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# scikit-learn (and SciPy with it: ~90 MB) is imported where a model is fitted or loaded, not by every
# service that merely could use one (plantwatch run without maintenance.rul_model).
if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingRegressor

# One training / prediction asset: (times (n,), sensors (n, d), settings (n, s) or None).
AssetHistory = tuple[np.ndarray, np.ndarray, np.ndarray | None]

STATE_VERSION = 1
FEATURES_PER_SENSOR = ("last", "mean", "slope", "ewm", "min", "max")


@dataclass(frozen=True, slots=True)
class RulPrediction:
    rul: float
    low: float
    high: float


# --------------------------------------------------------------------------------------------------
# Regime normalisation


class RegimeNormalizer:
    """Cluster operating settings into regimes and standardise sensors per regime.

    Learned state: ``k_`` (number of regimes), ``settings_center_``/``settings_scale_`` (s,),
    ``centers_`` (k, s) in scaled settings units, ``mean_``/``scale_`` (k, d) per regime and sensor,
    ``spread_`` (d,) the smallest per-regime standard deviation of each sensor (0 = constant somewhere).
    """

    def __init__(
        self, max_regimes: int = 6, explained: float = 0.999, decimals: int = 2, random_state: int = 0
    ) -> None:
        self.max_regimes = max_regimes
        self.explained = explained
        self.decimals = decimals
        self.random_state = random_state

    def _scaled(self, settings: np.ndarray) -> np.ndarray:
        return np.round((settings - self.settings_center_) / self.settings_scale_, self.decimals)

    def fit(self, X: np.ndarray, settings: np.ndarray | None) -> RegimeNormalizer:
        X = np.asarray(X, dtype=np.float64)
        if settings is None or settings.shape[1] == 0:
            self.settings_center_ = np.zeros(0)
            self.settings_scale_ = np.ones(0)
            self.centers_ = np.zeros((1, 0))
        else:
            S = np.asarray(settings, dtype=np.float64)
            lo, hi = S.min(axis=0), S.max(axis=0)
            rng = hi - lo
            self.settings_center_ = lo
            self.settings_scale_ = np.where(rng > 0, rng, 1.0)
            Z = self._scaled(S)
            self.centers_ = self._choose_centers(Z)
        self.k_ = int(self.centers_.shape[0])
        labels = self.assign(settings, X.shape[0])
        d = X.shape[1]
        self.mean_ = np.zeros((self.k_, d))
        self.scale_ = np.ones((self.k_, d))
        spread = np.full(d, np.inf)
        for r in range(self.k_):
            rows = X[labels == r]
            if rows.shape[0] == 0:
                continue
            mu = rows.mean(axis=0)
            sd = rows.std(axis=0)
            self.mean_[r] = mu
            self.scale_[r] = np.where(sd > 1e-12 * (1.0 + np.abs(mu)), sd, 1.0)
            spread = np.minimum(spread, np.where(sd > 1e-12 * (1.0 + np.abs(mu)), sd, 0.0))
        self.spread_ = np.where(np.isfinite(spread), spread, 0.0)
        return self

    def _choose_centers(self, Z: np.ndarray) -> np.ndarray:
        uniq, counts = np.unique(Z, axis=0, return_counts=True)
        total = float(np.sum(counts[:, None] * (uniq - np.average(uniq, axis=0, weights=counts)) ** 2))
        if total <= 0.0 or uniq.shape[0] == 1:
            return np.average(uniq, axis=0, weights=counts)[None, :]
        from sklearn.cluster import KMeans

        for k in range(2, min(self.max_regimes, uniq.shape[0]) + 1):
            km = KMeans(n_clusters=k, n_init=4, random_state=self.random_state)
            km.fit(uniq, sample_weight=counts)
            if 1.0 - km.inertia_ / total >= self.explained:
                order = np.lexsort(km.cluster_centers_.T[::-1])  # deterministic regime numbering
                return np.asarray(km.cluster_centers_[order], dtype=np.float64)
        return np.average(uniq, axis=0, weights=counts)[None, :]

    def assign(self, settings: np.ndarray | None, n: int) -> np.ndarray:
        if self.k_ == 1 or settings is None:
            return np.zeros(n, dtype=np.int64)
        Z = self._scaled(np.asarray(settings, dtype=np.float64))
        d2 = ((Z[:, None, :] - self.centers_[None, :, :]) ** 2).sum(axis=2)
        return np.asarray(np.argmin(d2, axis=1), dtype=np.int64)

    def transform(self, X: np.ndarray, settings: np.ndarray | None) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        labels = self.assign(settings, X.shape[0])
        return (X - self.mean_[labels]) / self.scale_[labels]

    _ARRAYS = ("settings_center_", "settings_scale_", "centers_", "mean_", "scale_", "spread_")

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        params = {
            "max_regimes": self.max_regimes,
            "explained": self.explained,
            "decimals": self.decimals,
            "random_state": self.random_state,
            "k_": self.k_,
        }
        return params, {name: np.asarray(getattr(self, name)) for name in self._ARRAYS}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> RegimeNormalizer:
        obj = cls(
            max_regimes=int(params["max_regimes"]),
            explained=float(params["explained"]),
            decimals=int(params["decimals"]),
            random_state=int(params["random_state"]),
        )
        obj.k_ = int(params["k_"])
        for name in cls._ARRAYS:
            setattr(obj, name, np.asarray(arrays[name], dtype=np.float64))
        return obj


# --------------------------------------------------------------------------------------------------
# Features


def window_features(times: np.ndarray, Z: np.ndarray, window: int, ewm_alpha: float, baseline: int = 0) -> np.ndarray:
    """Per row, features of the last ``window`` rows (fewer at the start): see ``FEATURES_PER_SENSOR``.

    Returns ``(n, 6 * d + 1)``: the six per-sensor blocks, then age (time since the first row). With
    ``baseline > 0`` a seventh block (before age) is the drift of the smoothed value from the asset's own
    first ``baseline`` rows (expanding mean while fewer rows exist), which removes unit-to-unit offsets.
    """
    t = np.asarray(times, dtype=np.float64)
    t = t - t[0]
    n, d = Z.shape
    w = max(1, int(window))
    pad_z = np.concatenate([np.full((w - 1, d), np.nan), Z], axis=0)
    pad_t = np.concatenate([np.full(w - 1, np.nan), t])
    Wz = sliding_window_view(pad_z, w, axis=0)  # (n, d, w)
    Wt = sliding_window_view(pad_t, w)  # (n, w)
    valid = ~np.isnan(Wt)
    cnt = valid.sum(axis=1).astype(np.float64)
    Wz0 = np.where(valid[:, None, :], Wz, 0.0)
    mean = Wz0.sum(axis=2) / cnt[:, None]
    Wt0 = np.where(valid, Wt, 0.0)
    tbar = Wt0.sum(axis=1) / cnt
    dt = np.where(valid, Wt - tbar[:, None], 0.0)
    sxx = (dt**2).sum(axis=1)
    sxy = (dt[:, None, :] * np.where(valid[:, None, :], Wz - mean[:, :, None], 0.0)).sum(axis=2)
    slope = np.where(sxx[:, None] > 0, sxy / np.where(sxx > 0, sxx, 1.0)[:, None], 0.0)
    mn = np.where(valid[:, None, :], Wz, np.inf).min(axis=2)
    mx = np.where(valid[:, None, :], Wz, -np.inf).max(axis=2)
    ewm = np.empty_like(Z)
    acc = Z[0].copy()
    for i in range(n):
        acc = ewm_alpha * Z[i] + (1.0 - ewm_alpha) * acc
        ewm[i] = acc
    blocks = [Z, mean, slope, ewm, mn, mx]
    if baseline > 0:
        k = np.minimum(np.arange(1, n + 1), baseline)
        ref = np.cumsum(Z, axis=0)[k - 1] / k[:, None]
        blocks.append(ewm - ref)
    return np.concatenate([*blocks, t[:, None]], axis=1)


def piecewise_rul(times: np.ndarray, cap: float) -> np.ndarray:
    """Training target for an asset whose log ends at its failure: ``min(cap, t_last - t)``."""
    t = np.asarray(times, dtype=np.float64)
    return np.minimum(float(cap), t[-1] - t)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx = np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(np.float64)
    ry = np.argsort(np.argsort(y, kind="stable"), kind="stable").astype(np.float64)
    rx -= rx.mean()
    ry -= ry.mean()
    den = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / den if den > 0 else 0.0


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """Conservative weighted quantile: smallest value whose cumulative weight share reaches ``q``."""
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cw = np.cumsum(w) / w.sum()
    idx = int(np.searchsorted(cw, min(max(q, 0.0), 1.0) - 1e-12, side="left"))
    return float(v[min(idx, v.size - 1)])


# --------------------------------------------------------------------------------------------------
# The model


def _validate_assets(assets: Sequence[AssetHistory]) -> list[AssetHistory]:
    out: list[AssetHistory] = []
    d: int | None = None
    for i, (times, X, settings) in enumerate(assets):
        t = np.asarray(times, dtype=np.float64).ravel()
        Xa = np.asarray(X, dtype=np.float64)
        if Xa.ndim != 2 or Xa.shape[0] != t.size or t.size == 0:
            raise ValueError(f"asset {i}: expected times (n,) and sensors (n, d) with n > 0")
        if not np.all(np.diff(t) > 0):
            raise ValueError(f"asset {i}: times must be strictly increasing")
        if not np.all(np.isfinite(Xa)):
            raise ValueError(f"asset {i}: sensors must be finite")
        d = Xa.shape[1] if d is None else d
        if Xa.shape[1] != d:
            raise ValueError(f"asset {i}: expected {d} sensors, got {Xa.shape[1]}")
        S = None if settings is None else np.asarray(settings, dtype=np.float64).reshape(t.size, -1)
        out.append((t, Xa, S))
    if not out:
        raise ValueError("no assets")
    return out


class RulModel:
    """Remaining-useful-life regressor with conformal intervals; see the module docstring.

    Learned state: ``normalizer_``, ``keep_`` (bool mask over input sensors), ``X_train_``/``y_train_``
    (feature matrix and capped target the regressors were fitted on), ``models_``, ``bin_edges_``,
    ``q_low_``/``q_high_`` (true-RUL residual quantiles per predicted-RUL bin), ``cv_rmse_`` (out-of-fold RMSE over
    all training rows, capped target), ``cv_rmse_last_`` (out-of-fold RMSE with every asset weighted
    equally, i.e. expected over a uniformly random cut-off point per asset, capped target), ``cv_rmse_life_`` and
    ``cv_phm08_life_`` (the same population against the true, uncapped RUL: weighted RMSE, and the PHM08 score's
    expected value per asset, so a subset's PHM08 total is about that times its number of assets; both
    ``None`` for models saved before they existed), ``cv_coverage_`` (interval coverage of the true RUL over
    the same population; in-sample for the calibration residuals), ``n_features_in_``.
    """

    def __init__(
        self,
        cap: float = 125.0,
        window: int = 90,
        ewm_alpha: float = 0.1,
        baseline: int = 30,
        max_iter: int = 300,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 200,
        l2_regularization: float = 1.0,
        max_features: float = 0.5,
        n_models: int = 1,
        coverage: float = 0.8,
        n_bins: int = 5,
        min_bin_assets: int = 30,
        cv_folds: int = 5,
        min_abs_corr: float = 0.05,
        min_distinct: int = 3,
        max_regimes: int = 6,
        regime_explained: float = 0.999,
        random_state: int = 0,
    ) -> None:
        self.cap = cap
        self.window = window
        self.ewm_alpha = ewm_alpha
        self.baseline = baseline
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.max_features = max_features
        self.n_models = n_models
        self.coverage = coverage
        self.n_bins = n_bins
        self.min_bin_assets = min_bin_assets
        self.cv_folds = cv_folds
        self.min_abs_corr = min_abs_corr
        self.min_distinct = min_distinct
        self.max_regimes = max_regimes
        self.regime_explained = regime_explained
        self.random_state = random_state

    _PARAMS = (
        "cap", "window", "ewm_alpha", "baseline", "max_iter", "learning_rate", "max_leaf_nodes", "min_samples_leaf",
        "l2_regularization", "max_features", "n_models", "coverage", "n_bins", "min_bin_assets", "cv_folds",
        "min_abs_corr", "min_distinct", "max_regimes", "regime_explained", "random_state",
    )  # fmt: skip

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._PARAMS}

    # ---- pieces shared by fit, CV and predict

    def _regressors(self) -> list[HistGradientBoostingRegressor]:
        from sklearn.ensemble import HistGradientBoostingRegressor

        return [
            HistGradientBoostingRegressor(
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                max_leaf_nodes=self.max_leaf_nodes,
                min_samples_leaf=self.min_samples_leaf,
                l2_regularization=self.l2_regularization,
                early_stopping=False,
                random_state=self.random_state + 1000 * m,
                max_features=self.max_features,
            )
            for m in range(self.n_models)
        ]

    def _fit_core(self, assets: list[AssetHistory]) -> tuple[RegimeNormalizer, np.ndarray, np.ndarray, np.ndarray]:
        X_all = np.concatenate([a[1] for a in assets], axis=0)
        has_settings = all(a[2] is not None for a in assets)
        S_all = np.concatenate([a[2] for a in assets], axis=0) if has_settings else None
        norm = RegimeNormalizer(self.max_regimes, self.regime_explained, random_state=self.random_state)
        norm.fit(X_all, S_all)
        y_all = np.concatenate([piecewise_rul(a[0], self.cap) for a in assets])
        Z_all = norm.transform(X_all, S_all)
        keep = norm.spread_ > 0
        for j in range(X_all.shape[1]):
            if not keep[j]:
                continue
            if (
                np.unique(X_all[:, j]).size < self.min_distinct
                or abs(_spearman(Z_all[:, j], y_all)) < self.min_abs_corr
            ):
                keep[j] = False
        if not keep.any():
            raise ValueError("no informative sensor columns (all constant or uncorrelated with life)")
        F = self._features(norm, keep, assets)
        return norm, keep, F, y_all

    def _features(self, norm: RegimeNormalizer, keep: np.ndarray, assets: list[AssetHistory]) -> np.ndarray:
        blocks = []
        for times, X, S in assets:
            Z = norm.transform(X, S)[:, keep]
            blocks.append(window_features(times, Z, self.window, self.ewm_alpha, self.baseline))
        return np.concatenate(blocks, axis=0)

    @staticmethod
    def _predict_models(models: list[HistGradientBoostingRegressor], F: np.ndarray) -> np.ndarray:
        return np.mean([m.predict(F) for m in models], axis=0)

    # ---- public API

    def fit(self, assets: Sequence[AssetHistory], progress: Callable[[int, int], None] | None = None) -> RulModel:
        """Fit on run-to-failure histories: each asset's last row is its failure. ``progress(1, total)``
        is called after each of the ``cv_folds + 1`` fits (the folds, then the final model)."""
        data = _validate_assets(assets)
        steps = self.cv_folds + 1
        if len(data) < max(2, self.cv_folds):
            raise ValueError(f"need at least {max(2, self.cv_folds)} run-to-failure assets, got {len(data)}")
        self.n_features_in_ = data[0][1].shape[1]
        lengths = np.array([a[0].size for a in data])
        groups = np.repeat(np.arange(len(data)), lengths)
        # Out-of-fold predictions by asset: CV score and conformal residuals.
        oof = np.zeros(int(lengths.sum()))
        from sklearn.model_selection import GroupKFold

        for tr, te in GroupKFold(n_splits=self.cv_folds).split(np.zeros(len(data)), groups=np.arange(len(data))):
            norm, keep, F, y = self._fit_core([data[i] for i in tr])
            models = self._regressors()
            for m in models:
                m.fit(F, y)
            Fte = self._features(norm, keep, [data[i] for i in te])
            pred = self._predict_models(models, Fte)
            starts = np.concatenate([[0], np.cumsum(lengths)])
            rows = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in te])
            oof[rows] = pred
            if progress is not None:
                progress(1, steps)
        y_true = np.concatenate([piecewise_rul(a[0], self.cap) for a in data])
        y_life = np.concatenate([a[0][-1] - a[0] for a in data])  # true (uncapped) RUL of every training row
        oof = np.clip(oof, 0.0, float(self.cap))
        weights = 1.0 / lengths[groups]  # each asset once, at a uniformly random truncation row
        self.cv_rmse_ = float(np.sqrt(np.mean((oof - y_true) ** 2)))
        self.cv_rmse_last_ = float(np.sqrt(np.sum(weights * (oof - y_true) ** 2) / weights.sum()))
        # against the true RUL, beyond the cap too: what a choice of ``cap`` is judged by
        err = oof - y_life
        phm = np.where(err < 0, np.expm1(-err / 13.0), np.expm1(err / 10.0))
        self.cv_rmse_life_: float | None = float(np.sqrt(np.sum(weights * err**2) / weights.sum()))
        self.cv_phm08_life_: float | None = float(np.sum(weights * phm) / weights.sum())
        self._calibrate(oof, y_life, weights, groups)
        lo, hi = self._interval(oof)
        self.cv_coverage_ = float(np.sum(weights * ((y_life >= lo) & (y_life <= hi))) / weights.sum())
        # Final model on every asset.
        self.normalizer_, self.keep_, self.X_train_, self.y_train_ = self._fit_core(data)
        self.models_ = self._regressors()
        for m in self.models_:
            m.fit(self.X_train_, self.y_train_)
        if progress is not None:
            progress(1, steps)
        return self

    def _calibrate(self, pred: np.ndarray, y: np.ndarray, weights: np.ndarray, groups: np.ndarray) -> None:
        """Per predicted-RUL bin, weighted quantiles of ``y - pred`` (``y``: true RUL of held-out rows)."""

        def n_eff(sel: np.ndarray) -> float:  # effective number of assets among the selected rows
            per_asset = np.bincount(groups[sel], weights=weights[sel])
            total = float(per_asset.sum())
            return total**2 / float(np.sum(per_asset**2)) if total > 0 else 0.0

        qs = np.linspace(0.0, 1.0, self.n_bins + 1)[1:-1]
        edges = sorted({weighted_quantile(pred, weights, float(q)) for q in qs})
        # merge the thinnest bin into its thinner neighbour until every bin has enough assets
        while edges:
            bins = np.searchsorted(np.asarray(edges), pred, side="right")
            ne = [n_eff(bins == b) for b in range(len(edges) + 1)]
            b = int(np.argmin(ne))
            if ne[b] >= max(self.min_bin_assets, 1):
                break
            if b == 0:
                edges.pop(0)
            elif b == len(edges):
                edges.pop()
            else:
                edges.pop(b - 1 if ne[b - 1] < ne[b + 1] else b)
        self.bin_edges_ = np.asarray(edges, dtype=np.float64)
        bins = np.searchsorted(self.bin_edges_, pred, side="right")
        alpha = 1.0 - float(self.coverage)
        resid = y - pred
        nb = self.bin_edges_.size + 1
        self.q_low_ = np.zeros(nb)
        self.q_high_ = np.zeros(nb)
        for b in range(nb):
            sel = bins == b
            r, w = resid[sel], weights[sel]
            # finite-sample (split conformal) correction on the effective number of assets in the bin
            adj = min(0.5, (1.0 - alpha / 2.0) / max(n_eff(sel), 1.0))
            self.q_low_[b] = weighted_quantile(r, w, alpha / 2.0 - adj)
            self.q_high_[b] = weighted_quantile(r, w, 1.0 - alpha / 2.0 + adj)

    def _interval(self, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bins = np.searchsorted(self.bin_edges_, pred, side="right")
        # the band always contains the point prediction (only ever widens it): low <= rul <= high
        low = np.clip(np.minimum(pred + self.q_low_[bins], pred), 0.0, None)
        high = np.maximum(pred + self.q_high_[bins], pred)
        return low, high

    def predict_rows(self, asset: AssetHistory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RUL, low, high for every row of one asset's history (each row sees only its past)."""
        data = _validate_assets([asset])
        if data[0][1].shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} sensors, got {data[0][1].shape[1]}")
        F = self._features(self.normalizer_, self.keep_, data)
        pred = np.clip(self._predict_models(self.models_, F), 0.0, float(self.cap))
        low, high = self._interval(pred)
        return pred, low, high

    def predict(self, assets: Sequence[AssetHistory]) -> list[RulPrediction]:
        """One prediction per asset, at its last row."""
        data = _validate_assets(assets)
        for _, X, _ in data:
            if X.shape[1] != self.n_features_in_:
                raise ValueError(f"expected {self.n_features_in_} sensors, got {X.shape[1]}")
        last = np.stack([self._features(self.normalizer_, self.keep_, [a])[-1] for a in data])
        pred = np.clip(self._predict_models(self.models_, last), 0.0, float(self.cap))
        low, high = self._interval(pred)
        return [RulPrediction(float(p), float(lo), float(hi)) for p, lo, hi in zip(pred, low, high, strict=True)]

    # ---- persistence: plain arrays + JSON; boosted trees are refitted deterministically

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        norm_params, norm_arrays = self.normalizer_.get_state()
        check_rows = self._check_rows()
        meta = {
            "version": STATE_VERSION,
            "params": self.get_params(),
            "normalizer": norm_params,
            "n_features_in": self.n_features_in_,
            "cv_rmse": self.cv_rmse_,
            "cv_rmse_last": self.cv_rmse_last_,
            "cv_rmse_life": self.cv_rmse_life_,
            "cv_phm08_life": self.cv_phm08_life_,
            "cv_coverage": self.cv_coverage_,
        }
        arrays = {f"norm_{k}": v for k, v in norm_arrays.items()}
        arrays.update(
            keep=self.keep_.astype(np.bool_),
            X_train=self.X_train_,
            y_train=self.y_train_,
            bin_edges=self.bin_edges_,
            q_low=self.q_low_,
            q_high=self.q_high_,
            check_rows=check_rows,
            check_pred=self._predict_models(self.models_, self.X_train_[check_rows]),
        )
        return meta, arrays

    def _check_rows(self) -> np.ndarray:
        n = self.X_train_.shape[0]
        return np.unique(np.linspace(0, n - 1, min(n, 256)).astype(np.int64))

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> RulModel:
        if meta.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported RUL model state version {meta.get('version')!r}")
        params = dict(meta["params"])
        unknown = set(params) - set(cls._PARAMS)
        if unknown:
            raise ValueError(f"unknown RUL model parameters: {sorted(unknown)}")
        obj = cls(**params)
        obj.n_features_in_ = int(meta["n_features_in"])
        obj.cv_rmse_ = float(meta["cv_rmse"])
        obj.cv_rmse_last_ = float(meta["cv_rmse_last"])
        life, phm = meta.get("cv_rmse_life"), meta.get("cv_phm08_life")  # absent in states saved before
        obj.cv_rmse_life_ = None if life is None else float(life)
        obj.cv_phm08_life_ = None if phm is None else float(phm)
        obj.cv_coverage_ = float(meta["cv_coverage"])
        obj.normalizer_ = RegimeNormalizer.from_state(
            meta["normalizer"], {k[5:]: v for k, v in arrays.items() if k.startswith("norm_")}
        )
        obj.keep_ = np.asarray(arrays["keep"], dtype=np.bool_)
        obj.X_train_ = np.asarray(arrays["X_train"], dtype=np.float64)
        obj.y_train_ = np.asarray(arrays["y_train"], dtype=np.float64)
        obj.bin_edges_ = np.asarray(arrays["bin_edges"], dtype=np.float64)
        obj.q_low_ = np.asarray(arrays["q_low"], dtype=np.float64)
        obj.q_high_ = np.asarray(arrays["q_high"], dtype=np.float64)
        if obj.keep_.shape != (obj.n_features_in_,) or obj.X_train_.shape[0] != obj.y_train_.shape[0]:
            raise ValueError("RUL model state is inconsistent")
        obj.models_ = obj._regressors()
        for m in obj.models_:
            m.fit(obj.X_train_, obj.y_train_)
        rows = np.asarray(arrays["check_rows"], dtype=np.int64)
        if not np.array_equal(obj._predict_models(obj.models_, obj.X_train_[rows]), arrays["check_pred"]):
            raise ValueError("restored RUL model does not reproduce its stored predictions")
        return obj
