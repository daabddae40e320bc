"""An asset's operating regime, recognised online from its operating settings (load, speed, recipe).

A machine driven at several operating points moves its sensors with them, and a health index that
mixes two operating points reads a change of point as a change of health: more hours at the high
load this afternoon looks like wear. So the health trend is judged per regime
(:mod:`plantwatch.maintenance.tracker`), and a regime must be recognised row by row, online.

Two recognisers, one interface (``label(settings) -> int | None``, ``center(label)``):

* :class:`OnlineRegimes` learns an asset's regimes from its own history, given a tolerance per
  setting in the setting's own units ("the same speed" = within 50 rpm). A row within tolerance of a
  known regime's centre (every setting) belongs to the nearest one; a row that is not starts a
  candidate, which becomes a regime once ``settle_rows`` consecutive rows stayed within tolerance of
  it. Rows of a ramp between two points, and of a candidate not yet settled, are *between regimes*
  (``None``): a transient is not an operating point. No more than ``max_regimes`` are learned; past
  that, an unmatched row is between regimes too. A regime's centre is the running mean of the rows
  that confirmed or joined it, so it follows a setpoint that was written down roughly.
* :class:`FixedRegimes` uses regimes learned elsewhere: those a RUL model clustered from a training
  fleet (:class:`detector.rul.RegimeNormalizer`), every row assigned by the model's own rule, so the
  regime shown is the one the model judged the row in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from detector.rul import RegimeNormalizer


class Regimes(Protocol):
    """What the maintenance tracker asks of a recogniser."""

    def label(self, settings: np.ndarray) -> int | None: ...

    def center(self, label: int) -> np.ndarray: ...

    def get_state(self) -> dict[str, Any]: ...

    def set_state(self, state: dict[str, Any]) -> None: ...


class OnlineRegimes:
    """Regimes learned online from one asset's settings rows (see the module docstring).

    Learned state: ``centers_`` (k, s) in setting units, ``counts_`` (k,) rows per regime,
    ``candidate_`` (s,) or None, the first row of an unconfirmed regime, and ``candidate_rows_``.
    """

    def __init__(self, tolerance: Sequence[float], settle_rows: int = 60, max_regimes: int = 8) -> None:
        self.tolerance = tolerance
        self.settle_rows = settle_rows
        self.max_regimes = max_regimes
        tol = np.asarray(tolerance, dtype=np.float64)
        if tol.ndim != 1 or tol.size == 0 or not np.all(np.isfinite(tol) & (tol > 0)):
            raise ValueError(f"tolerance must be one positive number per setting, got {list(tolerance)}")
        if settle_rows < 1 or max_regimes < 1:
            raise ValueError(f"settle_rows and max_regimes must be >= 1, got {settle_rows}, {max_regimes}")
        self._tol = tol
        self.centers_ = np.zeros((0, tol.size))
        self.counts_ = np.zeros(0, dtype=np.int64)
        self.candidate_: np.ndarray | None = None
        self.candidate_rows_ = 0

    def _nearest(self, points: np.ndarray, s: np.ndarray) -> tuple[int, float]:
        """Index and distance (in tolerances, the largest over the settings) of the nearest point."""
        if points.shape[0] == 0:
            return -1, float("inf")
        d = np.max(np.abs(points - s) / self._tol, axis=1)
        i = int(np.argmin(d))
        return i, float(d[i])

    def label(self, settings: np.ndarray) -> int | None:
        """The regime of one settings row, learning from it; None between regimes."""
        s = np.asarray(settings, dtype=np.float64)
        if s.shape != self._tol.shape or not np.all(np.isfinite(s)):
            return None
        i, d = self._nearest(self.centers_, s)
        if d <= 1.0:
            self.counts_[i] += 1
            self.centers_[i] += (s - self.centers_[i]) / self.counts_[i]
            self.candidate_, self.candidate_rows_ = None, 0
            return i
        if self.centers_.shape[0] >= self.max_regimes:
            return None
        if self.candidate_ is None or np.max(np.abs(s - self.candidate_) / self._tol) > 1.0:
            self.candidate_, self.candidate_rows_ = s.copy(), 1
        else:
            self.candidate_rows_ += 1
        if self.candidate_rows_ < self.settle_rows:
            return None
        self.centers_ = np.vstack([self.centers_, self.candidate_[None, :]])
        self.counts_ = np.append(self.counts_, 1)
        self.candidate_, self.candidate_rows_ = None, 0
        return self.centers_.shape[0] - 1

    def center(self, label: int) -> np.ndarray:
        return np.asarray(self.centers_[label])

    def get_state(self) -> dict[str, Any]:
        """JSON-able learned state (no hyperparameters: those come from the settings)."""
        return {
            "centers": self.centers_.tolist(),
            "counts": self.counts_.tolist(),
            "candidate": None if self.candidate_ is None else self.candidate_.tolist(),
            "candidate_rows": self.candidate_rows_,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        centers = np.asarray(state["centers"], dtype=np.float64).reshape(-1, self._tol.size)
        counts = np.asarray(state["counts"], dtype=np.int64)
        if counts.shape != (centers.shape[0],):
            raise ValueError(f"{centers.shape[0]} regime centres but {counts.size} counts")
        self.centers_, self.counts_ = centers, counts
        candidate = state.get("candidate")
        self.candidate_ = None if candidate is None else np.asarray(candidate, dtype=np.float64)
        self.candidate_rows_ = int(state.get("candidate_rows", 0))


class FixedRegimes:
    """Regimes learned elsewhere: those a RUL model clustered from its training fleet. Each row is assigned
    as the model assigns it (:meth:`detector.rul.RegimeNormalizer.assign`: its settings scaled by their
    training range, rounded, nearest centre), so the regime shown is the one the model judged the row in."""

    def __init__(self, normalizer: RegimeNormalizer) -> None:
        self.normalizer = normalizer

    def label(self, settings: np.ndarray) -> int | None:
        s = np.asarray(settings, dtype=np.float64)
        if s.shape != self.normalizer.settings_scale_.shape or not np.all(np.isfinite(s)):
            return None
        return int(self.normalizer.assign(s[None, :], 1)[0])

    def center(self, label: int) -> np.ndarray:
        """The regime's centre in the settings' own units."""
        norm = self.normalizer
        return np.asarray(norm.centers_[label] * norm.settings_scale_ + norm.settings_center_)

    def get_state(self) -> dict[str, Any]:
        return {}  # nothing learned here

    def set_state(self, state: dict[str, Any]) -> None:
        pass
