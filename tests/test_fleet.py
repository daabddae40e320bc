"""detector.fleet: many models' rows scored and calibrated together, bit for bit each model's own."""

from __future__ import annotations

import numpy as np

from detector.calibration import EmpiricalCalibrator, PotCalibrator
from detector.detectors.pca_spc import PcaSpc
from detector.fleet import score_together


def _model(rng: np.random.Generator, d: int = 16, **params: object) -> tuple[PcaSpc, EmpiricalCalibrator]:
    baseline = rng.normal(size=(600, d)) @ rng.normal(size=(d, d)) * rng.uniform(0.1, 10.0)
    detector = PcaSpc(variance=float(rng.choice([0.8, 0.9, 0.95])), **params).fit(baseline)  # type: ignore[arg-type]
    calibrator = EmpiricalCalibrator().fit(detector.score(baseline[::2] + rng.normal(scale=0.1, size=(300, d))))
    return detector, calibrator


def test_rows_scored_together_equal_each_models_own_scores_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    together = 0
    for _ in range(40):
        batches = []
        for _ in range(int(rng.integers(2, 10))):
            detector, calibrator = _model(rng)
            n = int(rng.integers(1, 30))
            spread = float(rng.choice([0.01, 1.0, 30.0]))
            F = rng.normal(scale=spread, size=(n, 16)) * detector.scale_ + detector.center_
            if rng.random() < 0.3:
                F[0] *= float(rng.choice([1e6, 1e200]))  # far beyond the baseline: the tail, or an infinite score
            batches.append((detector, calibrator, F))
        for (detector, calibrator, F), got in zip(batches, score_together(batches), strict=True):
            if got is None:  # alone with its number of components
                continue
            together += 1
            raw = detector.score(F)
            np.testing.assert_array_equal(got[0], raw)
            np.testing.assert_array_equal(got[1], calibrator.transform(raw))
    assert together > 100


def test_models_that_cannot_join_are_left_to_score_themselves() -> None:
    rng = np.random.default_rng(1)
    (d1, c1), (d2, c2) = _model(rng), _model(rng)
    d2.components_, d2.explained_variance_ = d1.components_, d1.explained_variance_  # the same shape
    rows = rng.normal(size=(3, 16))
    pot = PotCalibrator().fit(d1.score(rng.normal(size=(600, 16))))
    got = score_together(
        [
            (d1, c1, rows),
            (d2, c2, rows),
            (d1, pot, rows),  # another calibrator
            (d2, c2, rows[:, :8]),  # rows of another width: score() refuses them
            (d1, c1, rows[:0]),  # no rows
            (_model(rng, score_mode="sum")[0], c1, rows),  # another score mode, alone
        ]
    )
    assert got[0] is not None and got[1] is not None
    assert got[2:] == [None, None, None, None]
    np.testing.assert_array_equal(got[1][1], c2.transform(d2.score(rows)))
