"""PyOD models behind the detector contract ("pyod", plus "iforest", "ecod", "copod", "hbos", "knn", "lof").

* Inputs are standardised with the baseline median / robust scale before the model: HBOS, KNN,
  LOF, OCSVM, KDE … are scale-sensitive, and sensors come in wildly different units.
* Scores are PyOD's ``decision_function`` (higher = more anomalous), called once per batch: PyOD
  costs ~7–16 ms per call, so per-row calls would cap a detector at ~100 rows/s.
* **ECOD and COPOD are not row-wise in PyOD**: their ``decision_function`` appends the batch to the
  training data and recomputes the empirical CDFs (and skewness) over both, so a row's score
  depends on the other rows of its batch. Here they are evaluated against the *baseline* ECDFs
  only (``_EcdfTails``), which is what PyOD returns for a batch of one row (up to the skewness sign
  being taken from the baseline alone) — row-wise, micro-batch invariant, and O(d log n) per row.
* GMM and INNE are row-wise only up to rounding (``ROUNDING_ROWWISE_MODELS``): BLAS products
  inside scikit-learn differ in the last bits between batch sizes.
* State: PyOD's fitted objects (trees, neighbour indices, …) are not plain arrays, so the state is
  the baseline matrix plus the seed actually used, and **restore = deterministic refit**
  (``set_state`` refits on the stored baseline with the same parameters and seed; bit-identical
  scores, checked by the contract tests). Refit cost is the fit cost (HBOS's first fit in a process
  also pays ~3 s of numba JIT).
* Contributions: PyOD models give none; the row's robust per-sensor z is used instead. That is an
  approximation: it says which sensors are far from their median, not what the model weighed.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from detector.base import (
    DetectorMixin,
    State,
    StateValue,
    check_positive_eps,
    robust_center_scale,
    state_array,
    state_int,
)
from detector.registry import register

# name → (module, class) of the PyOD model.
PYOD_MODELS: dict[str, tuple[str, str]] = {
    "iforest": ("pyod.models.iforest", "IForest"),
    "ecod": ("pyod.models.ecod", "ECOD"),
    "copod": ("pyod.models.copod", "COPOD"),
    "hbos": ("pyod.models.hbos", "HBOS"),
    "knn": ("pyod.models.knn", "KNN"),
    "lof": ("pyod.models.lof", "LOF"),
    "pca": ("pyod.models.pca", "PCA"),
    "mcd": ("pyod.models.mcd", "MCD"),
    "ocsvm": ("pyod.models.ocsvm", "OCSVM"),
    "inne": ("pyod.models.inne", "INNE"),
    "loda": ("pyod.models.loda", "LODA"),
    "gmm": ("pyod.models.gmm", "GMM"),
    "kde": ("pyod.models.kde", "KDE"),
}

# Models whose PyOD scoring is batch-dependent; scored by ``_EcdfTails`` instead.
_ECDF_MODELS = ("ecod", "copod")

# Row-wise, but only up to floating-point rounding (~1e-12 relative): their sklearn internals use
# BLAS matrix products, whose kernels (and summation order) change with the batch size. Every
# other model gives bit-identical scores for any micro-batching.
ROUNDING_ROWWISE_MODELS = ("gmm", "inne")

# Parameters the adapter sets itself; passing them in ``model_params`` would be ambiguous.
_RESERVED = ("random_state",)


@register("pyod")
class PyODDetector(DetectorMixin):
    """A PyOD model on robustly standardised sensors.

    Parameters: ``model`` — one of ``PYOD_MODELS``; ``model_params`` — keyword arguments of the
    PyOD constructor (checked against its signature at fit; ``n_jobs`` defaults to 1, the machine
    is shared); ``random_state`` — seed for randomised models (``None``: a fresh seed is drawn at
    fit and kept in the state, so a restore is still exact); ``eps`` — spread of constant sensors.

    Learned state: ``center_``, ``scale_``, ``baseline_`` (the raw baseline rows), ``seed_``,
    ``n_features_in_``, and the fitted model ``model_`` (rebuilt from the others on restore).
    """

    def __init__(
        self,
        model: str = "iforest",
        model_params: Mapping[str, Any] | None = None,
        random_state: int | None = 0,
        eps: float = 1e-9,
    ) -> None:
        self.model = model
        self.model_params = model_params
        self.random_state = random_state
        self.eps = eps

    def fit(self, X: np.ndarray) -> PyODDetector:
        X = self._validate_fit_input(X)
        return self._fit(X.copy(), self._draw_seed())

    def _draw_seed(self) -> int:
        if self.random_state is None:
            # OS entropy, not the wall clock; recorded in seed_ so set_state reproduces the model.
            return int(np.random.SeedSequence().entropy % (2**32))  # type: ignore[operator]
        if isinstance(self.random_state, bool) or not isinstance(self.random_state, int | np.integer):
            raise ValueError(f"random_state must be an int or None, got {self.random_state!r}")
        return int(self.random_state)

    def _fit(self, baseline: np.ndarray, seed: int) -> PyODDetector:
        check_positive_eps(self.eps)
        kwargs = self._model_kwargs(seed)
        self.center_, self.scale_ = robust_center_scale(baseline, self.eps)
        self.baseline_ = baseline
        self.seed_ = seed
        self.n_features_in_ = baseline.shape[1]
        Z = (baseline - self.center_) / self.scale_
        if self.model in _ECDF_MODELS:
            self.model_: Any = _EcdfTails(self.model).fit(Z)
        else:
            self.model_ = _model_class(self.model)(**kwargs).fit(Z)
        return self

    def _model_kwargs(self, seed: int) -> dict[str, Any]:
        """Constructor arguments for the PyOD model, validated against its signature."""
        if self.model not in PYOD_MODELS:
            raise ValueError(f"unknown PyOD model {self.model!r}; known: {', '.join(PYOD_MODELS)}")
        kwargs = dict(self.model_params or {})
        accepted = set(inspect.signature(_model_class(self.model).__init__).parameters) - {"self"}
        bad = sorted((set(kwargs) - accepted) | (set(kwargs) & set(_RESERVED)))
        if bad:
            raise ValueError(
                f"model_params {bad} not accepted by PyOD {self.model!r} (random_state is a top-level "
                f"param); accepted: {sorted(accepted - set(_RESERVED))}"
            )
        if "random_state" in accepted:
            kwargs["random_state"] = seed
        if "n_jobs" in accepted:
            kwargs.setdefault("n_jobs", 1)
        return kwargs

    def score(self, X: np.ndarray) -> np.ndarray:
        Z = self._standardise(X)
        if Z.shape[0] == 0:
            return np.zeros(0)
        return np.asarray(self.model_.decision_function(Z), dtype=np.float64).reshape(-1)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Robust z per sensor (an approximation: PyOD models do not explain their scores)."""
        return self._standardise(X)

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        X = self._validate_score_input(X)
        return (X - self.center_) / self.scale_

    def get_state(self) -> State:
        self._check_fitted()
        return {"baseline_": self.baseline_.copy(), "seed_": self.seed_, "n_features_in_": self.n_features_in_}

    def set_state(self, state: Mapping[str, StateValue]) -> PyODDetector:
        """Restore by deterministic refit on the stored baseline with the stored seed."""
        baseline = state_array(state, "baseline_")
        n_features = state_int(state, "n_features_in_")
        return self._fit(baseline.reshape(-1, n_features), state_int(state, "seed_"))


def _model_class(name: str) -> Any:
    module, cls = PYOD_MODELS[name]
    # Imported lazily: PyOD (and numba for HBOS) are slow to import and only needed when used.
    return getattr(importlib.import_module(module), cls)


class _EcdfTails:
    """ECOD / COPOD scores against frozen baseline ECDFs (row-wise; see the module docstring).

    For a value ``x`` of sensor j: left tail ``(#{baseline <= x} + 1) / (n + 1)``, right tail
    ``(#{baseline >= x} + 1) / (n + 1)`` — exactly PyOD's ECDF of the row appended to the baseline.
    ECOD: row score = sum over sensors of the max of ``-log`` left, right and skew-chosen tail;
    COPOD: sum over sensors of max(skew-chosen tail, mean of both tails).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def fit(self, Z: np.ndarray) -> _EcdfTails:
        self.sorted_ = np.sort(Z, axis=0)
        self.skew_sign_ = np.sign(_skewness(Z))
        return self

    def decision_function(self, Z: np.ndarray) -> np.ndarray:
        n = self.sorted_.shape[0]
        below = np.empty(Z.shape)
        above = np.empty(Z.shape)
        for j in range(Z.shape[1]):
            col = self.sorted_[:, j]
            below[:, j] = np.searchsorted(col, Z[:, j], side="right")
            above[:, j] = n - np.searchsorted(col, Z[:, j], side="left")
        u_l = -np.log((below + 1.0) / (n + 1.0))
        u_r = -np.log((above + 1.0) / (n + 1.0))
        # PyOD's skew correction: negative skew → left tail, positive → right tail, zero → both.
        u_skew = -u_l * np.sign(self.skew_sign_ - 1) + u_r * np.sign(self.skew_sign_ + 1)
        if self.kind == "ecod":
            per_sensor = np.maximum(np.maximum(u_l, u_r), u_skew)
        else:
            per_sensor = np.maximum(u_skew, (u_l + u_r) / 2)
        return per_sensor.sum(axis=1)


def _skewness(Z: np.ndarray) -> np.ndarray:
    """Biased sample skewness per column (scipy.stats.skew's default), 0 for constant columns."""
    dev = Z - Z.mean(axis=0)
    m2 = (dev**2).mean(axis=0)
    m3 = (dev**3).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = m3 / m2**1.5
    return np.where(m2 > 0, skew, 0.0)


class _FixedModel(PyODDetector):
    """A ``PyODDetector`` with the model fixed by the registered name."""

    fixed_model: ClassVar[str]

    def __init__(
        self, model_params: Mapping[str, Any] | None = None, random_state: int | None = 0, eps: float = 1e-9
    ) -> None:
        super().__init__(self.fixed_model, model_params, random_state, eps)


@register("iforest")
class IForestDetector(_FixedModel):
    fixed_model = "iforest"


@register("ecod")
class ECODDetector(_FixedModel):
    fixed_model = "ecod"


@register("copod")
class COPODDetector(_FixedModel):
    fixed_model = "copod"


@register("hbos")
class HBOSDetector(_FixedModel):
    fixed_model = "hbos"


@register("knn")
class KNNDetector(_FixedModel):
    fixed_model = "knn"


@register("lof")
class LOFDetector(_FixedModel):
    fixed_model = "lof"
