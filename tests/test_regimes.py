"""Operating regimes recognised online from an asset's settings (detector.regimes)."""

from __future__ import annotations

import numpy as np
import pytest

from detector.regimes import FixedRegimes, OnlineRegimes
from detector.rul import RegimeNormalizer

SETPOINTS = np.array([[0.3, 900.0], [0.6, 1200.0], [0.9, 1500.0]])  # load (fraction), speed (rpm)
TOLERANCE = (0.05, 50.0)


def schedule(rng: np.random.Generator, visits: list[int], hold: int = 200, ramp: int = 30) -> tuple[np.ndarray, ...]:
    """Settings rows holding each visited setpoint ``hold`` rows (with noise), ramping ``ramp`` rows between;
    returns the rows and, per row, the setpoint held (-1 on a ramp)."""
    rows, truth = [], []
    for i, v in enumerate(visits):
        if i:
            a, b = SETPOINTS[visits[i - 1]], SETPOINTS[v]
            for f in np.linspace(0, 1, ramp + 2)[1:-1]:
                rows.append(a + f * (b - a))
                truth.append(-1)
        for _ in range(hold):
            rows.append(SETPOINTS[v] + rng.normal(0, [0.005, 5.0]))
            truth.append(v)
    return np.array(rows), np.array(truth)


def test_three_setpoints_with_ramps_are_three_regimes() -> None:
    rows, truth = schedule(np.random.default_rng(0), [0, 1, 2, 1, 0, 2])
    regimes = OnlineRegimes(TOLERANCE, settle_rows=10)
    labels = np.array([-1 if (x := regimes.label(r)) is None else x for r in rows])
    assert regimes.centers_.shape == (3, 2)
    # numbered in the order first seen; each centre within a tenth of a tolerance of its setpoint
    assert np.all(np.abs(regimes.centers_ - SETPOINTS) <= [0.005, 5.0])
    held = truth >= 0
    settled = held & (labels >= 0)
    assert np.array_equal(labels[settled], truth[settled])  # never the wrong regime
    # only the first settle_rows - 1 rows of each newly met setpoint are left between regimes (fewer
    # when the ramp's last rows already started the candidate)
    assert 0 < int((held & (labels < 0)).sum()) <= 3 * 9
    ramp_labels = labels[~held]
    # a ramp's rows belong to a regime only within tolerance of its setpoint: never most of the ramp
    assert (ramp_labels < 0).mean() > 0.6
    assert regimes.counts_.sum() == int((labels >= 0).sum())


def test_a_ramp_never_becomes_a_regime_and_the_number_is_bounded() -> None:
    regimes = OnlineRegimes(TOLERANCE, settle_rows=10, max_regimes=2)
    slow = np.stack([np.linspace(0.1, 0.9, 400), np.linspace(800, 1600, 400)], axis=1)  # 0.002 per row
    labels = [regimes.label(r) for r in slow]
    # a slow ramp stays within tolerance of a candidate for 25 rows: it does settle, twice, then no more
    assert regimes.centers_.shape[0] == 2
    assert labels[-1] is None  # beyond both learned points, and no third is learned
    fast = OnlineRegimes(TOLERANCE, settle_rows=10)
    quick = np.stack([np.linspace(0.1, 0.9, 40), np.linspace(800, 1600, 40)], axis=1)  # 0.02 per row
    assert all(fast.label(r) is None for r in quick) and fast.centers_.shape[0] == 0


def test_missing_or_bad_settings_are_between_regimes() -> None:
    regimes = OnlineRegimes(TOLERANCE, settle_rows=1)
    assert regimes.label(np.array([0.3, 900.0])) == 0
    assert regimes.label(np.array([np.nan, 900.0])) is None
    assert regimes.label(np.array([0.3])) is None
    with pytest.raises(ValueError, match="tolerance"):
        OnlineRegimes((0.05, 0.0))
    with pytest.raises(ValueError, match="settle_rows"):
        OnlineRegimes(TOLERANCE, settle_rows=0)


def test_state_round_trip_continues_identically() -> None:
    rows, _ = schedule(np.random.default_rng(1), [2, 0, 1, 2])
    whole = OnlineRegimes(TOLERANCE)
    expected = [whole.label(r) for r in rows]
    cut = 215  # inside the first ramp's candidate
    first = OnlineRegimes(TOLERANCE)
    got = [first.label(r) for r in rows[:cut]]
    second = OnlineRegimes(TOLERANCE)
    second.set_state(first.get_state())
    got += [second.label(r) for r in rows[cut:]]
    assert got == expected
    np.testing.assert_array_equal(second.centers_, whole.centers_)


def test_fixed_regimes_take_the_nearest_centre_in_scaled_units() -> None:
    """A RUL model's regimes (its RegimeNormalizer, fitted on three conditions), assigned as the model does."""
    rows = np.repeat(SETPOINTS, 20, axis=0)
    fixed = FixedRegimes(RegimeNormalizer().fit(np.zeros((rows.shape[0], 1)), rows))
    assert fixed.label(np.array([0.62, 1180.0])) == 1
    # scaled by their training ranges (0.6, 600 rpm), 0.05 load and 250 rpm from centre 0 (0.08, 0.42) are
    # nearer than 0.35 load and 50 rpm from centre 1 (0.58, 0.08); unscaled, the speed would decide
    assert fixed.label(np.array([0.25, 1150.0])) == 0
    assert fixed.label(np.array([np.inf, 1.0])) is None
    np.testing.assert_allclose(fixed.center(2), SETPOINTS[2], rtol=1e-12)  # back in the settings' units
