"""Combine several detectors into one ("ensemble").

Raw scores of different detectors live on unrelated scales (a T²/Q ratio, an isolation depth, a
sum of log tail probabilities), so each member's score is first turned into a baseline-relative
tail measure: ``-log10`` of its survival probability against that member's own baseline scores
(``EmpiricalCalibrator.log_survival``: empirical survival inside the baseline range, an
exponential tail beyond the baseline maximum — finite for every finite score and still ranking far
outliers, where a probability would saturate), counted from the member's typical baseline row
(its baseline median gives 0; below it, 0). "3" then means "1000 times rarer than a typical
baseline row" for every member, and the measures are combined by ``combine``:

* ``"mean"``: evidence from several members accumulates; one noisy member cannot alarm alone.
* ``"max"``: the most alarmed member decides; best when members cover different fault types.

Caveat: the baseline scores are in-sample (each member scores the rows it was fitted on), which
slightly understates how unusual new normal rows look for members that memorise their training
rows (KNN, LOF). It shifts all rows alike, so ranking is preserved; the downstream calibrator
absorbs the rest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from detector.base import (
    Detector,
    DetectorMixin,
    State,
    StateValue,
    check_choice,
    check_positive_eps,
    direction_sign,
    robust_center_scale,
    state_array,
    state_int,
)
from detector.calibration import EmpiricalCalibrator
from detector.registry import make_spec, register

COMBINE_MODES = ("mean", "max")
_LN10 = math.log(10.0)


@register("ensemble")
class Ensemble(DetectorMixin):
    """Members given as ``[{"kind": name, "params": {...}}, ...]``, each fitted on the same baseline.

    Score: ``combine`` over members of ``-log10(survival)`` (see the module docstring).
    Contributions: per member, ``|c| / sum |c|`` (each member's shares), averaged with weights =
    the member's share of the row's evidence (``"mean"``) or all weight on the winning member
    (``"max"``); signed by the row's robust z against the ensemble's own ``center_`` / ``scale_``.

    Learned state: ``members_`` (fitted detectors), ``calibrators_`` (one per member, from its
    baseline scores), ``typical_evidence_`` (each member's evidence at its baseline median, rebuilt
    from the baseline scores on restore), ``center_``, ``scale_``, ``n_features_in_``. ``get_state`` flattens the
    members' states under ``"members.<i>.<key>"`` and their baseline scores under
    ``"baseline_scores.<i>"``.
    """

    def __init__(
        self,
        members: Sequence[Mapping[str, Any]] = (
            {"kind": "pca_spc", "params": {}},
            {"kind": "robust_z", "params": {"score_mode": "max"}},
        ),
        combine: str = "mean",
        tail_fraction: float = 0.05,
        eps: float = 1e-9,
    ) -> None:
        self.members = members
        self.combine = combine
        self.tail_fraction = tail_fraction
        self.eps = eps

    # -- fitting -----------------------------------------------------------------------------

    def _build_members(self) -> list[Detector]:
        check_choice("combine", self.combine, COMBINE_MODES)
        check_positive_eps(self.eps)
        if not 0.0 < self.tail_fraction <= 1.0:
            raise ValueError(f"tail_fraction must be in (0, 1], got {self.tail_fraction}")
        if len(self.members) == 0:
            raise ValueError("an ensemble needs at least one member")
        return [make_spec(spec) for spec in self.members]

    def fit(self, X: np.ndarray) -> Ensemble:
        X = self._validate_fit_input(X)
        members = self._build_members()
        baseline_scores = [member.fit(X).score(X) for member in members]
        self.center_, self.scale_ = robust_center_scale(X, self.eps)
        self.n_features_in_ = X.shape[1]
        self._finish(members, baseline_scores)
        return self

    def _finish(self, members: list[Detector], baseline_scores: list[np.ndarray]) -> None:
        self.members_ = members
        self.baseline_scores_ = baseline_scores
        self.calibrators_ = [EmpiricalCalibrator(self.tail_fraction).fit(s) for s in baseline_scores]
        # Evidence counts from a typical baseline row up: a member's score at its baseline median
        # gives 0, whatever the number of baseline rows (the ``+1`` of the survival makes a plain
        # -log10 S of a tied score depend on it, and cross-fitted and live ensembles differ in it).
        self.typical_evidence_ = np.array(
            [
                -float(cal.log_survival(np.median(cal.baseline_scores_))) / _LN10  # finite scores only
                for cal in self.calibrators_
            ]
        )

    # -- scoring -----------------------------------------------------------------------------

    def member_evidence(self, X: np.ndarray) -> np.ndarray:
        """``-log10(survival)`` of each member's score beyond that of its typical baseline row,
        shape ``(n, n_members)``, >= 0."""
        X = self._validate_score_input(X)
        cols = [-cal.log_survival(m.score(X)) / _LN10 for m, cal in zip(self.members_, self.calibrators_, strict=True)]
        if not cols:
            return np.zeros((X.shape[0], 0))
        return np.maximum(np.column_stack(cols) - self.typical_evidence_, 0.0)

    def score(self, X: np.ndarray) -> np.ndarray:
        evidence = self.member_evidence(X)
        if self.combine == "max":
            return evidence.max(axis=1, initial=0.0)
        return evidence.mean(axis=1)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        X = self._validate_score_input(X)
        evidence = self.member_evidence(X)
        weights = _member_weights(evidence, self.combine)
        mag = np.zeros(X.shape)
        for i, member in enumerate(self.members_):
            mag += weights[:, i : i + 1] * _shares(member.contributions(X))
        z = (X - self.center_) / self.scale_
        return direction_sign(z) * mag

    # -- state -------------------------------------------------------------------------------

    def get_state(self) -> State:
        self._check_fitted()
        state: State = {
            "center_": self.center_.copy(),
            "scale_": self.scale_.copy(),
            "n_features_in_": self.n_features_in_,
            "n_members_": len(self.members_),
        }
        for i, (member, scores) in enumerate(zip(self.members_, self.baseline_scores_, strict=True)):
            state[f"baseline_scores.{i}"] = scores.copy()
            for key, value in member.get_state().items():
                state[f"members.{i}.{key}"] = value
        return state

    def set_state(self, state: Mapping[str, StateValue]) -> Ensemble:
        members = self._build_members()
        if state_int(state, "n_members_") != len(members):
            raise ValueError(f"state has {state_int(state, 'n_members_')} members, params have {len(members)}")
        for i, member in enumerate(members):
            prefix = f"members.{i}."
            member.set_state({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        self.center_ = state_array(state, "center_")
        self.scale_ = state_array(state, "scale_")
        self.n_features_in_ = state_int(state, "n_features_in_")
        self._finish(members, [state_array(state, f"baseline_scores.{i}") for i in range(len(members))])
        return self


def _member_weights(evidence: np.ndarray, combine: str) -> np.ndarray:
    """Per row, how much each member's explanation counts; rows sum to 1."""
    n, m = evidence.shape
    if combine == "max":
        weights = np.zeros((n, m))
        weights[np.arange(n), np.argmax(evidence, axis=1)] = 1.0
        # No evidence anywhere (a typical row): every member counts equally, as with "mean".
        return np.where(evidence.max(axis=1, keepdims=True, initial=0.0) > 0, weights, 1.0 / m)
    total = evidence.sum(axis=1, keepdims=True)
    # No evidence anywhere (row below every baseline score): every member counts equally.
    return np.where(total > 0, evidence / np.where(total > 0, total, 1.0), 1.0 / m)


def _shares(c: np.ndarray) -> np.ndarray:
    """``|c|`` normalised per row to sum to 1 (all zeros stays zeros)."""
    mag = np.abs(c)
    total = mag.sum(axis=1, keepdims=True)
    return mag / np.where(total > 0, total, 1.0)
