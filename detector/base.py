"""The contract every detector follows: batch fit on a baseline, row-wise scoring, plain-data state.

``Detector`` is the structural type (a ``typing.Protocol``); ``DetectorMixin`` supplies the parts
that are the same everywhere (``get_params``, input checks, the ``median_`` alias). Detectors only
*score*: calibration, thresholds and alarm rules live elsewhere.

Contract
--------
* ``fit(X)`` learns from baseline rows ``X`` (shape ``(n, d)``, finite, float64), returns ``self``
  and never mutates ``X``. Hyperparameters are validated here, not in the constructor.
* ``score(X)`` gives one raw score per row, higher = more anomalous. It is **row-wise**: a row's
  score depends only on that row and the fitted state, so scoring any split of the rows into
  micro-batches gives the same numbers, which is what keeps the live pipeline causal. Given
  ``random_state`` everything is deterministic.
* ``contributions(X)`` gives shape ``(n, d)``: per-sensor signed contribution; the sign is the
  direction (positive = above the baseline centre), ``|c|`` is proportional to the sensor's share
  (the caller normalises ``|c|`` to shares).
* ``center_`` / ``scale_``: per-sensor baseline centre and spread, for "expected range" texts.
* ``get_params()`` returns the constructor arguments; ``get_state()`` the complete learned state
  as arrays / scalars / strings / lists only, and ``cls(**params).set_state(state)`` restores a
  detector whose scores are bit-identical. ``split_state`` / ``join_state`` turn a state into the
  ``np.savez(allow_pickle=False)`` + JSON pair it is stored as (no pickle anywhere).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np

StateValue = np.ndarray | float | int | str | list[Any]
State = dict[str, StateValue]


class NotFittedError(ValueError, AttributeError):
    """Scoring before ``fit`` / ``set_state``; same bases as scikit-learn's ``NotFittedError``.

    Defined here rather than imported: importing scikit-learn costs ~1.5 s, and ``detector.detectors.robust``
    (imported by every service process) should not pay it.
    """


# Consistency constants: these make MAD and IQR estimate the standard deviation for Gaussian data.
MAD_TO_SIGMA = 1.4826
IQR_TO_SIGMA = 1.0 / 1.349
# Percent clipped at each end before the spread's standard deviation: a few spikes do not count.
WINSOR_PERCENT = 1.0


@runtime_checkable
class Detector(Protocol):
    """Batch-fit / row-wise-score detector; see the module docstring for the full contract."""

    center_: np.ndarray
    scale_: np.ndarray
    n_features_in_: int

    def fit(self, X: np.ndarray) -> Self: ...

    def score(self, X: np.ndarray) -> np.ndarray: ...

    def contributions(self, X: np.ndarray) -> np.ndarray: ...

    def get_params(self) -> dict[str, Any]: ...

    def get_state(self) -> State: ...

    def set_state(self, state: Mapping[str, StateValue]) -> Self: ...


class DetectorMixin:
    """Shared plumbing: parameter introspection, input validation, the ``median_`` alias."""

    center_: np.ndarray
    scale_: np.ndarray
    n_features_in_: int

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments by name, the objects themselves, as scikit-learn's ``get_params``.

        ``sklearn.base.clone`` relies on both: it passes ``deep`` and checks that a new detector
        stores exactly the objects it was given. There are no nested estimators to expand (an
        ensemble's members are plain specs), so ``deep`` changes nothing. Copy before mutating.
        """
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Any:
        """Set constructor arguments by name (scikit-learn's ``set_params``); unknown names fail."""
        unknown = sorted(set(params) - set(self._param_names()))
        if unknown:
            raise ValueError(f"{type(self).__name__} has no parameter(s) {unknown}; known: {self._param_names()}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    @classmethod
    def _param_names(cls) -> list[str]:
        params = inspect.signature(cls).parameters.values()
        return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    # ``median_`` is the robust detector's historical name for ``center_``; every detector answers to it.
    @property
    def median_(self) -> np.ndarray:
        return self.center_

    @median_.setter
    def median_(self, value: np.ndarray) -> None:
        self.center_ = value

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or set_state() first")

    def _validate_fit_input(self, X: np.ndarray) -> np.ndarray:
        X = as_2d(X)
        if X.shape[0] == 0:
            raise ValueError("cannot fit on zero rows")
        if not np.isfinite(X).all():
            raise ValueError("baseline rows must be finite")
        return X

    def _validate_score_input(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        X = as_2d(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} sensors, got {X.shape[1]}")
        return X


def as_2d(X: np.ndarray) -> np.ndarray:
    """``X`` as a float64 ``(n, d)`` array (a copy only when the dtype has to change)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array (rows, sensors), got shape {X.shape}")
    return X


def robust_center_scale(X: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-column median and a robust spread that quantised sensors cannot collapse.

    Spread = the larger of MAD·1.4826 and the standard deviation of the values winsorised at the
    ``WINSOR_PERCENT`` and ``100 - WINSOR_PERCENT`` percentiles. MAD alone is not enough: a sensor
    that reports in steps (a flow meter reading 31, 32 or 33 l/min, each with a little jitter) has
    more than half of its values on one step, so its MAD is the jitter (1e-3) while the real spread
    is the step (~0.5). Standardised by the MAD, an ordinary step reads as z ≈ 700 and that one
    sensor swamps every multivariate statistic. The winsorised standard deviation sees the steps
    but, like the MAD, ignores a few spikes (anything beyond the clipping percentiles counts only
    as the percentile). If both are zero the spread falls back to IQR/1.349, the plain standard
    deviation, then ``eps``: a truly constant sensor gets ``eps``, so any later movement of it is
    (rightly) extreme. NaN-aware, so a caller fitting directly on a log with gaps still gets sane
    statistics.
    """
    # The nan-aware versions run column by column in Python; detectors fit on finite baselines.
    finite = bool(np.isfinite(X).all())
    median_of, percentile_of, std_of = (np.median, np.percentile, np.std) if finite else _NAN_AWARE
    median = median_of(X, axis=0)
    mad = median_of(np.abs(X - median), axis=0) * MAD_TO_SIGMA
    low, q25, q75, high = percentile_of(X, [WINSOR_PERCENT, 25.0, 75.0, 100.0 - WINSOR_PERCENT], axis=0)
    winsorised = std_of(np.clip(X, low, high), axis=0)
    iqr = (q75 - q25) * IQR_TO_SIGMA
    std = std_of(X, axis=0)
    spread = np.fmax(mad, winsorised)  # fmax: a NaN (all-NaN column) defers to the fallbacks
    return np.nan_to_num(median, nan=0.0), first_positive(spread, iqr, std, fallback=float(eps))


_NAN_AWARE = (np.nanmedian, np.nanpercentile, np.nanstd)


def first_positive(*candidates: np.ndarray, fallback: float) -> np.ndarray:
    """Per column, the first candidate that is finite and > 0, else ``fallback``."""
    out = np.full(candidates[0].shape, np.nan)
    for cand in candidates:
        take = np.isnan(out) & np.isfinite(cand) & (cand > 0)
        out[take] = cand[take]
    out[np.isnan(out)] = fallback
    return out


def direction_sign(z: np.ndarray) -> np.ndarray:
    """+1 where ``z >= 0`` else -1: the same "high"/"low" rule as the monitor's explanations."""
    return np.where(z >= 0, 1.0, -1.0)


def check_positive_eps(eps: float) -> None:
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


# -- state storage -------------------------------------------------------------------------------


def split_state(state: Mapping[str, StateValue]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split a state into ``(arrays, meta)``: arrays for ``np.savez``, the rest for ``json.dump``.

    Raises ``TypeError`` for anything that would need pickle (object arrays, numpy integer
    scalars, nested objects that are not lists of plain values).
    """
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                raise TypeError(f"state[{key!r}] is an object array; it would need pickle")
            arrays[key] = value
        elif _is_plain(value):
            meta[key] = value
        else:
            raise TypeError(f"state[{key!r}] has type {type(value).__name__}; only arrays and plain values")
    return arrays, meta


def join_state(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> State:
    """Inverse of ``split_state`` (``arrays`` may be an ``np.load`` result)."""
    state: State = {key: np.asarray(arrays[key]) for key in arrays}
    overlap = state.keys() & meta.keys()
    if overlap:
        raise ValueError(f"keys in both arrays and meta: {sorted(overlap)}")
    state.update(meta)
    return state


def _is_plain(value: object) -> bool:
    # bool is an int subclass and JSON-safe; np.float64 is a float subclass and JSON-safe.
    if value is None or isinstance(value, str | bool | int | float):
        return type(value).__module__ == "builtins" or isinstance(value, float)
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    return False


def state_array(state: Mapping[str, StateValue], key: str) -> np.ndarray:
    """A float64 array from a state (a copy, so the detector never aliases the caller's data)."""
    return np.array(state[key], dtype=np.float64)


def state_int(state: Mapping[str, StateValue], key: str) -> int:
    """An int from a state; accepts a 0-d array (how ``np.load`` may hand a scalar back)."""
    value = state[key]
    if isinstance(value, np.ndarray):
        return int(value.item())
    if isinstance(value, int | float):
        return int(value)
    raise TypeError(f"state[{key!r}] must be an int, got {type(value).__name__}")


def state_float(state: Mapping[str, StateValue], key: str) -> float:
    """A float from a state; accepts a 0-d array."""
    value = state[key]
    if isinstance(value, np.ndarray):
        return float(value.item())
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"state[{key!r}] must be a number, got {type(value).__name__}")


def rowwise_matmul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A @ B`` computed so that each output row depends only on its own input row, bit for bit.

    BLAS picks different kernels (gemv / blocked gemm, with different summation orders) for
    different batch sizes, so ``(A @ B)[:k]`` and ``A[:k] @ B`` can differ in the last bit. Row-wise
    scoring must be micro-batch invariant *exactly*, so accumulate over the (small) inner dimension
    with elementwise operations instead: the same sequence of roundings for every row, any ``n``.

    ``B`` may also hold one matrix per row, shape ``(n, inner, k)`` (many models' rows at once,
    ``detector.fleet``): each row is then summed exactly as with its own matrix alone.
    """
    n, inner = A.shape
    if B.ndim == 2:
        B = B[None, :, :]
    if 0 < n * inner * B.shape[2] <= ROWWISE_AT_ONCE:
        # The same sums in three calls instead of two per inner column (a stream's few rows spent most
        # of the time in the loop's calls): every product at once, then ``np.cumsum`` along the inner
        # axis, which adds strictly in order. Starting from the first product rather than from 0.0
        # changes nothing but the sign of a zero sum, which adding 0.0 at the end makes +0.0 as the loop's
        # (tests/test_rowwise_matmul.py; a NaN's bit pattern may differ, never whether it is NaN).
        products = A[:, :, None] * B
        return 0.0 + np.cumsum(products, axis=1, dtype=np.float64)[:, -1]
    return _rowwise_matmul_loop(A, B)


ROWWISE_AT_ONCE = 1 << 16  # products formed at once (512 KB); a longer batch takes the loop, as fast per row


def _rowwise_matmul_loop(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``rowwise_matmul`` one inner column at a time; ``B`` one matrix, or one per row."""
    if B.ndim == 2:
        B = B[None, :, :]
    out = np.zeros((A.shape[0], B.shape[2]))
    for j in range(A.shape[1]):
        out += A[:, j : j + 1] * B[:, j]
    return out
