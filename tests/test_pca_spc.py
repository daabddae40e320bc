"""PcaSpc: control limits, what T² and Q each see, contributions, degenerate inputs."""

from __future__ import annotations

import numpy as np
import pytest
from test_detector_contract import CURRENT, PRESSURE, faulty, plant_data

from detector.detectors.pca_spc import PcaSpc

BASELINE = plant_data(1000, seed=0)


@pytest.fixture(scope="module")
def spc() -> PcaSpc:
    return PcaSpc().fit(BASELINE)


def test_limits_match_their_quantile_on_fresh_normal_data() -> None:
    det = PcaSpc(limit_quantile=0.99).fit(plant_data(4000, seed=0))
    fresh = plant_data(20_000, seed=5)
    t2_rate = float(np.mean(det.t2(fresh) > det.t2_limit_))
    q_rate = float(np.mean(det.spe(fresh) > det.q_limit_))
    assert 0.005 <= t2_rate <= 0.02
    assert 0.005 <= q_rate <= 0.02
    # "max": either chart out of control, so at most the two rates added.
    assert float(np.mean(det.score(fresh) > 1.0)) <= t2_rate + q_rate


def test_correlation_break_raises_q_but_not_t2(spc: PcaSpc) -> None:
    X, fault = faulty("correlation_break")
    t2_ratio, q_ratio = spc.t2(X) / spc.t2_limit_, spc.spe(X) / spc.q_limit_
    # Every sensor stays in range, so the model-plane statistic does not move ...
    assert np.mean(t2_ratio[fault] > 1.0) < 0.03
    assert np.median(t2_ratio[fault]) <= 1.5 * np.median(t2_ratio[~fault])
    # ... while the residual does, on every faulty row.
    assert np.mean(q_ratio[fault] > 1.0) > 0.95
    assert np.mean(q_ratio[~fault] > 1.0) < 0.03
    # And the explanation names the two decoupled sensors.
    top = np.abs(spc.contributions(X[fault])).argmax(axis=1)
    assert np.isin(top, [CURRENT, PRESSURE]).mean() > 0.95


def test_step_fault_contributions_name_the_broken_sensor_first_and_point_up(spc: PcaSpc) -> None:
    X, fault = faulty("step")
    c = spc.contributions(X[fault])
    assert (np.abs(c).argmax(axis=1) == CURRENT).mean() > 0.98
    assert (c[:, CURRENT] > 0).mean() > 0.98


def test_reconstruction_based_contributions_also_name_the_broken_sensor_and_leave_the_score_alone(
    spc: PcaSpc,
) -> None:
    rbc = PcaSpc(contribution="reconstruction").fit(BASELINE)
    X, fault = faulty("step")
    c = rbc.contributions(X[fault])
    assert (np.abs(c).argmax(axis=1) == CURRENT).mean() > 0.98 and (c[:, CURRENT] > 0).mean() > 0.98
    np.testing.assert_array_equal(rbc.score(X), spc.score(X))  # only the split among sensors differs
    with pytest.raises(ValueError, match="contribution"):
        PcaSpc(contribution="shapley").fit(BASELINE)


@pytest.mark.parametrize("mode", ["max", "sum", "t2", "q"])
def test_score_modes_combine_the_limit_normalised_statistics(spc: PcaSpc, mode: str) -> None:
    det = PcaSpc(score_mode=mode).fit(BASELINE)
    X = faulty("spike")[0]
    r_t2, r_q = spc.t2(X) / spc.t2_limit_, spc.spe(X) / spc.q_limit_
    expected = {"max": np.maximum(r_t2, r_q), "sum": r_t2 + r_q, "t2": r_t2, "q": r_q}[mode]
    np.testing.assert_allclose(det.score(X), expected, rtol=1e-12)
    # Contribution magnitudes add up to the score: exactly for Q (squared residuals), at least
    # for T² (its negative parts are clipped to 0, which can only add).
    mag, score = np.abs(det.contributions(X)).sum(axis=1), det.score(X)
    if mode == "q":
        np.testing.assert_allclose(mag, score, rtol=1e-10)
    assert np.all(mag >= score * (1 - 1e-10))


def test_single_sensor_degenerates_to_a_squared_z() -> None:
    x = BASELINE[:, [CURRENT]]
    det = PcaSpc().fit(x)
    assert det.n_components_ == 1
    rows = np.array([[det.center_[0]], [det.center_[0] + 2 * det.scale_[0]], [det.center_[0] - 4 * det.scale_[0]]])
    z = (rows[:, 0] - det.center_[0]) / det.scale_[0]
    score = det.score(rows)
    np.testing.assert_allclose(det.spe(rows), 0.0, atol=1e-20)
    np.testing.assert_allclose(score, z**2 * score[1] / 4.0, rtol=1e-10)
    np.testing.assert_allclose(det.contributions(rows)[:, 0], np.sign(z + 0.0) * score, rtol=1e-10, atol=1e-20)


def test_constant_sensor_is_tolerated_and_any_movement_of_it_is_extreme() -> None:
    X = BASELINE.copy()
    X[:, 2] = 7.0  # e.g. a setpoint that never moved during the baseline
    det = PcaSpc().fit(X)
    assert np.isfinite(det.score(X)).all()
    assert np.mean(det.score(X) > 1.0) < 0.03
    moved = X[:5].copy()
    moved[:, 2] = 7.01
    assert (det.score(moved) > 1e6).all()
    assert (np.abs(det.contributions(moved)).argmax(axis=1) == 2).all()


def test_collinear_sensors_keep_the_model_finite_and_q_catches_the_split() -> None:
    # Two transmitters on the same line (exact duplicate) and a unit conversion of a third.
    X = np.column_stack([BASELINE, BASELINE[:, CURRENT], BASELINE[:, PRESSURE] * 14.5038])
    det = PcaSpc(variance=1.0).fit(X)
    assert det.n_components_ <= 8  # zero-variance directions are never retained
    assert np.all(det.explained_variance_ > 0)
    assert np.isfinite(det.score(X)).all()
    split = X[:20].copy()
    split[:, 8] += 0.5  # the duplicate now reads 1 A higher than its twin
    assert (det.score(split) > 100).all()


def test_n_components_overrides_variance_and_is_capped_at_the_rank() -> None:
    assert PcaSpc(n_components=3).fit(BASELINE).n_components_ == 3
    assert PcaSpc(n_components=50).fit(BASELINE).n_components_ == 8
    assert PcaSpc(variance=1.0).fit(BASELINE).n_components_ == 8
    with pytest.raises(ValueError, match="n_components"):
        PcaSpc(n_components=0).fit(BASELINE)
    with pytest.raises(ValueError, match="limit_quantile"):
        PcaSpc(limit_quantile=1.0).fit(BASELINE)
