"""Calibrators: empirical and peaks-over-threshold; the saturation rule; state; holdout split."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.calibration import (
    ALMOST_ONE,
    EmpiricalCalibrator,
    PotCalibrator,
    fit_gpd_pwm,
    gpd_excess_at_log_sf,
    gpd_log_sf,
    holdout_split,
    log_survival_to_probability,
)

# -- EmpiricalCalibrator --------------------------------------------------------------------


def test_calibration_is_monotone_and_never_one() -> None:
    base = np.random.default_rng(2).gamma(2.0, 1.0, 500)
    cal = EmpiricalCalibrator(tail_fraction=0.05).fit(base)
    grid = np.concatenate([np.linspace(-1, base.max() + 50, 5000), [1e3, 1e6, 1e300, np.inf]])
    p = cal.transform(grid)
    assert np.all(np.diff(p) >= 0)
    assert np.all((p >= 0) & (p < 1.0))
    assert p[-1] == ALMOST_ONE and cal.transform(np.array([-np.inf]))[0] == 0.0
    # Beyond the baseline maximum the tail keeps ranking (strictly increasing) ...
    beyond = np.linspace(base.max() + 0.01, base.max() + 5, 50)
    assert np.all(np.diff(cal.transform(beyond)) > 0)
    # ... and log_survival ranks even where float64 probabilities have saturated.
    ls = cal.log_survival(np.array([1e3, 1e6, 1e9]))
    assert np.all(np.isfinite(ls)) and np.all(np.diff(ls) < 0)


def test_calibration_matches_ecdf_inside_and_is_continuous_at_max() -> None:
    base = np.arange(1.0, 100.0)  # 99 scores
    cal = EmpiricalCalibrator().fit(base)
    assert cal.transform(np.array([50.5]))[0] == pytest.approx(50 / 100)
    assert cal.transform(np.array([50.0]))[0] == pytest.approx(49.5 / 100)  # a tie counts half
    at_max = cal.transform(np.array([99.0]))[0]
    just_below, just_above = cal.transform(np.array([99.0 - 1e-9, 99.0 + 1e-9]))
    assert just_below == pytest.approx(0.98) and at_max == pytest.approx(0.985)
    assert just_above == pytest.approx(0.99, abs=1e-9)  # the tail starts where the ECDF ends
    # Tail scale = mean excess of the top 5 over the 6th largest: (1+2+3+4+5)/5 = 3.
    assert cal.tail_scale_ == pytest.approx(3.0)
    assert cal.transform(np.array([99.0 + 3.0]))[0] == pytest.approx(1 - math.exp(-1) / 100)


def test_calibration_constant_baseline_and_nan() -> None:
    cal = EmpiricalCalibrator().fit(np.zeros(50))
    p = cal.transform(np.array([0.0, 1e-3, 1.0, np.nan]))
    # A score like every baseline score sits in the middle, not above any alarm level (an asset
    # whose readings never change must not alarm on every row).
    assert p[0] == pytest.approx(25 / 51)
    assert p[1] > p[0] and p[2] < 1.0 and math.isnan(p[3])


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=60),
    st.lists(st.floats(-1e308, 1e308, allow_nan=False), min_size=2, max_size=60),
)
def test_calibration_property(baseline: list[float], scores: list[float]) -> None:
    cal = EmpiricalCalibrator().fit(np.array(baseline))
    s = np.sort(np.array(scores))
    p = cal.transform(s)
    assert np.all((p >= 0) & (p < 1.0))
    assert np.all(np.diff(p) >= 0)


# -- saturation rule ------------------------------------------------------------------------


def _calibrators() -> list[EmpiricalCalibrator | PotCalibrator]:
    base = np.random.default_rng(7).gamma(2.0, 1.0, 2000)
    return [EmpiricalCalibrator().fit(base), PotCalibrator().fit(base)]


@pytest.mark.parametrize("cal", _calibrators(), ids=["empirical", "pot"])
def test_probabilities_never_saturate(cal: EmpiricalCalibrator | PotCalibrator) -> None:
    """Scores over a huge range: strictly increasing, all < 1, down to -log10 S = 300 and beyond."""
    top = float(cal.baseline_scores_[-1])
    # Find the score where -log10(S) = 300 by bisection on the (monotone) log survival.
    lo, hi = top, top + 1.0
    while cal.log_survival(np.array([hi]))[0] > -300 * math.log(10):
        hi = top + 2 * (hi - top)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cal.log_survival(np.array([mid]))[0] > -300 * math.log(10) else (lo, mid)
    scores = np.concatenate([np.linspace(0.0, top, 500), top + (hi - top) * np.geomspace(1e-6, 1.0, 3000)])
    scores = np.unique(scores)
    p = cal.transform(scores)
    assert np.all(np.diff(p) >= 0)
    tail = scores > top
    assert np.all(np.diff(p[tail]) > 0), "probabilities must rank every distinct score in the tail"
    assert np.all(p < 1.0) and p[-1] > 1 - 1e-6
    assert -cal.log_survival(scores[-1:])[0] / math.log(10) == pytest.approx(300, rel=1e-6)
    # Still strictly increasing and < 1 for absurd scores; only +inf reaches the largest float below 1.
    far = np.array([hi, hi * 10, 1e10, 1e100, 1e300, np.inf])
    pf = cal.transform(far)
    assert np.all(np.diff(pf) > 0) and np.all(pf < 1.0) and pf[-1] == ALMOST_ONE
    assert math.isnan(cal.transform(np.array([np.nan]))[0])
    assert cal.transform(np.array([-np.inf]))[0] == 0.0


def test_saturation_map_keeps_one_minus_s_in_the_ordinary_range() -> None:
    s = np.array([0.5, 0.01, 1e-3, 1e-6])
    p = log_survival_to_probability(s, np.log(s))
    np.testing.assert_array_equal(p, 1.0 - s)
    # Beyond 1e-6: continuous at the join, compressive, strictly monotone in log survival.
    log_s = np.log(1e-6) - np.array([0.0, 1e-9, 1.0, 10.0, 690.0, 1e4, 1e6, 1e12, 1e100, 1e308])
    q = log_survival_to_probability(np.exp(log_s), log_s)
    assert q[0] == 1.0 - 1e-6 and np.all(np.diff(q) > 0) and np.all(q < ALMOST_ONE)
    assert q[2] == pytest.approx(1 - 1e-6 / (1 + math.log(2)), abs=1e-15)
    # Resolution at -log10 S = 300: log survivals 1e-4 apart still differ.
    ls = -300 * math.log(10) - np.arange(100) * 1e-4
    pp = log_survival_to_probability(np.exp(ls), ls)
    assert np.all(np.diff(pp) > 0)
    assert log_survival_to_probability(np.array([0.0]), np.array([-np.inf]))[0] == ALMOST_ONE


# -- POT ------------------------------------------------------------------------------------


def _gpd_sample(xi: float, sigma: float, n: int, seed: int) -> np.ndarray:
    u = np.random.default_rng(seed).uniform(size=n)
    if xi == 0:
        return -sigma * np.log1p(-u)
    return sigma / xi * ((1 - u) ** (-xi) - 1)


@pytest.mark.parametrize("xi", [-0.2, 0.0, 0.25])
def test_gpd_pwm_recovers_parameters(xi: float) -> None:
    y = _gpd_sample(xi, 2.0, 20_000, seed=11)
    xi_hat, sigma_hat = fit_gpd_pwm(y)
    assert xi_hat == pytest.approx(xi, abs=0.05)
    assert sigma_hat == pytest.approx(2.0, rel=0.05)


def test_pot_calibrator_fits_the_tail_of_a_gpd_sample() -> None:
    # Above any threshold u, GPD(xi, sigma) excesses are GPD(xi, sigma + xi * u).
    s = _gpd_sample(0.2, 1.0, 40_000, seed=12)
    cal = PotCalibrator(threshold_quantile=0.9).fit(s)
    assert cal.xi_ == pytest.approx(0.2, abs=0.07)
    assert cal.sigma_ == pytest.approx(1.0 + 0.2 * cal.threshold_, rel=0.1)
    assert cal.n_exceed_ == pytest.approx(4000, abs=2)


def test_pot_false_alarm_rate_on_held_out_normal_scores() -> None:
    rng = np.random.default_rng(13)

    # RMS of 8 robust z-scores: a typical light-tailed normal score.
    def scores(n: int) -> np.ndarray:
        return np.sqrt((rng.standard_normal((n, 8)) ** 2).mean(axis=1))

    cal = PotCalibrator().fit(scores(5000))
    fresh = cal.transform(scores(200_000))
    for nominal in (0.95, 0.99, 0.999):
        rate = float(np.mean(fresh >= nominal))
        assert rate == pytest.approx(1 - nominal, rel=0.3), (nominal, rate)


def test_pot_is_continuous_at_the_threshold_and_matches_the_ecdf_below() -> None:
    base = np.arange(1.0, 101.0)  # 100 scores
    cal = PotCalibrator(threshold_quantile=0.9, min_exceedances=5).fit(base)
    assert cal.threshold_ == pytest.approx(90.1) and cal.n_exceed_ == 10
    assert cal.transform(np.array([50.0]))[0] == pytest.approx(49.5 / 101)  # a tie counts half
    assert cal.transform(np.array([50.5]))[0] == pytest.approx(50 / 101)
    at_u = cal.transform(np.array([cal.threshold_]))[0]
    just_above = cal.transform(np.array([cal.threshold_ + 1e-9]))[0]
    assert at_u == pytest.approx(90 / 101) and 0 <= just_above - at_u < 1e-9


def test_pot_few_exceedances_fall_back_to_exponential_and_constant_baseline() -> None:
    cal = PotCalibrator().fit(np.arange(100.0))  # 5 exceedances < 10
    assert cal.xi_ == 0.0 and cal.sigma_ > 0
    const = PotCalibrator().fit(np.zeros(50))
    p = const.transform(np.array([0.0, 1e-3, 1.0, 1e9]))
    assert p[0] == pytest.approx(25 / 51) and np.all(np.diff(p) > 0) and np.all(p < 1.0)


def test_pot_negative_shape_still_ranks_beyond_the_endpoint() -> None:
    base = np.random.default_rng(14).uniform(0, 1, 5000)  # bounded: xi close to -1, clamped
    cal = PotCalibrator().fit(base)
    assert cal.xi_ == -0.5
    endpoint = cal.threshold_ + cal.sigma_ / 0.5
    s = np.linspace(cal.threshold_, endpoint + 5.0, 2000)
    ls = cal.log_survival(s)
    assert np.all(np.isfinite(ls)) and np.all(np.diff(ls) < 0)
    assert np.all(np.diff(cal.transform(s)) > 0)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=80),
    st.lists(st.floats(-1e308, 1e308, allow_nan=False), min_size=2, max_size=60),
    st.sampled_from([0.5, 0.9, 0.95]),
)
def test_pot_property(baseline: list[float], scores: list[float], q: float) -> None:
    cal = PotCalibrator(threshold_quantile=q, min_exceedances=3).fit(np.array(baseline))
    s = np.sort(np.array(scores))
    p = cal.transform(s)
    assert np.all((p >= 0) & (p < 1.0))
    assert np.all(np.diff(p) >= 0)


# -- state, params, holdout -----------------------------------------------------------------


@pytest.mark.parametrize("cls", [EmpiricalCalibrator, PotCalibrator])
def test_calibrator_state_round_trip(cls: type[EmpiricalCalibrator] | type[PotCalibrator]) -> None:
    base = np.random.default_rng(15).gamma(2.0, 1.0, 1000)
    cal = cls().fit(base)
    state = cal.get_state()
    assert all(isinstance(v, np.ndarray | float) for v in state.values())
    arrays = {k: np.asarray(v) for k, v in state.items()}  # as it comes back from np.savez
    restored = cls(**cal.get_params()).set_state(arrays)
    s = np.concatenate([np.linspace(-1, 30, 1001), [np.nan, np.inf, 1e300]])
    np.testing.assert_array_equal(restored.transform(s), cal.transform(s))
    np.testing.assert_array_equal(restored.log_survival(s), cal.log_survival(s))


def test_holdout_split_is_contiguous_and_deterministic() -> None:
    fit_idx, calib_idx = holdout_split(10, 0.3)
    assert fit_idx.tolist() == list(range(7)) and calib_idx.tolist() == [7, 8, 9]
    a, b = holdout_split(2, 0.01)
    assert a.tolist() == [0] and b.tolist() == [1]
    with pytest.raises(ValueError):
        holdout_split(10, 1.0)
    with pytest.raises(ValueError):
        holdout_split(1)


@pytest.mark.parametrize("xi", [-0.5, -0.2, 0.0, 0.3])
def test_the_gpd_excess_at_a_log_survival_inverts_the_tail_and_its_continuation(xi: float) -> None:
    # recalibration reads its level through this inverse: it must agree with PotCalibrator's tail,
    # past the point where a bounded tail (xi < 0) continues linearly too
    y = np.array([0.01, 0.5, 1.0, 1.7, 1.95, 3.0, 10.0])
    for excess, log_sf in zip(y.tolist(), gpd_log_sf(y, xi, 1.0).tolist(), strict=True):
        assert gpd_excess_at_log_sf(log_sf, xi, 1.0) == pytest.approx(excess, rel=1e-9)
