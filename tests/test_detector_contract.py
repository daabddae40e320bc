"""The detector contract (``detector.base``), checked for every registered detector.

Parametrised over ``available()``, so a newly registered detector is covered automatically (it
must also get a row in ``AUC_FLOORS``, which forces its author to say what it should catch).
Slow detectors run with small parameters (``FAST_PARAMS``).

Synthetic plant: 8 sensors on one pump. A latent flow drives current, pressure, speed, motor and
bearing temperature and vibration (each with its own noise); the coolant level is independent.
Rows are i.i.d. — the detectors are row-wise and never see time order anyway.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from detector.base import Detector, DetectorMixin, join_state, split_state
from detector.detectors.pyod_adapter import PYOD_MODELS, ROUNDING_ROWWISE_MODELS, PyODDetector
from detector.registry import available, make_detector, make_spec, register

SENSORS = ("flow", "current", "pressure", "speed", "motor_temp", "bearing_temp", "vibration", "coolant_level")
FLOW, CURRENT, PRESSURE, SPEED, MOTOR_T, BEARING_T, VIBRATION, COOLANT = range(8)
FAULTS = ("step", "drift", "spike", "stuck", "correlation_break")

FAST_IFOREST = {"model_params": {"n_estimators": 50}}
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "iforest": FAST_IFOREST,
    "pyod": {"model": "iforest", **FAST_IFOREST},
    "ensemble": {
        "members": [
            {"kind": "pca_spc", "params": {}},
            {"kind": "robust_z", "params": {"score_mode": "max"}},
            {"kind": "iforest", "params": FAST_IFOREST},
        ]
    },
}

# ROC-AUC floors per fault (None = the method cannot see this fault row by row; not tested).
# * Structure-aware (PCA T²/Q, KNN/LOF on standardised sensors, the PCA-based ensemble): every
#   fault. "stuck" (current frozen at its median) is visible only as a broken correlation with the
#   flow, and not at all in rows where the flow happens to be near its median: AUC caps near 0.9.
# * Per-sensor marginal (robust z, ECOD, COPOD, HBOS): step / drift / spike only; stuck and
#   correlation break keep every sensor in range — invisible by construction. ECOD/COPOD/HBOS sum
#   over all 8 sensors (the 7 normal ones dilute a single-sensor fault) and their ECDF/histogram
#   tails saturate beyond the baseline range, hence lower floors; robust_z defaults to RMS (also
#   diluted; its "max" mode does better on single-sensor faults, see test_robust_max_mode).
# * IForest: axis-parallel splits see correlations only weakly.
AUC_FLOORS: dict[str, dict[str, float | None]] = {
    "pca_spc": {"step": 0.99, "drift": 0.9, "spike": 0.99, "stuck": 0.7, "correlation_break": 0.97},
    "knn": {"step": 0.99, "drift": 0.9, "spike": 0.99, "stuck": 0.7, "correlation_break": 0.97},
    "lof": {"step": 0.99, "drift": 0.9, "spike": 0.99, "stuck": 0.7, "correlation_break": 0.97},
    "ensemble": {"step": 0.99, "drift": 0.9, "spike": 0.99, "stuck": 0.6, "correlation_break": 0.97},
    "robust_z": {"step": 0.8, "drift": 0.75, "spike": 0.95, "stuck": None, "correlation_break": None},
    "ecod": {"step": 0.7, "drift": 0.65, "spike": 0.75, "stuck": None, "correlation_break": None},
    "copod": {"step": 0.65, "drift": 0.6, "spike": 0.72, "stuck": None, "correlation_break": None},
    "hbos": {"step": 0.65, "drift": 0.6, "spike": 0.7, "stuck": None, "correlation_break": None},
    "iforest": {"step": 0.8, "drift": 0.75, "spike": 0.8, "stuck": None, "correlation_break": 0.8},
    "pyod": {"step": 0.8, "drift": 0.75, "spike": 0.8, "stuck": None, "correlation_break": 0.8},
}

NAMES = available()
SATURATING_TAILS = ("ecod", "copod", "hbos")


# -- synthetic plant ---------------------------------------------------------------------------


def plant_data(n: int, seed: int) -> np.ndarray:
    """``n`` normal rows of the 8 sensors (columns in ``SENSORS`` order)."""
    rng = np.random.default_rng(seed)
    flow = 100.0 + 10.0 * rng.standard_normal(n)
    return np.column_stack([flow, *_driven_sensors(flow, rng)])


def _driven_sensors(flow: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    n = flow.size
    motor_t = 40.0 + 0.2 * flow + rng.normal(0, 0.5, n)
    return [
        0.5 * flow + rng.normal(0, 0.5, n),  # current
        2.0 + 0.03 * flow + rng.normal(0, 0.05, n),  # pressure
        15.0 * flow + rng.normal(0, 10.0, n),  # speed
        motor_t,
        10.0 + 0.5 * motor_t + rng.normal(0, 0.3, n),  # bearing temperature follows the motor
        1.0 + 0.01 * flow + rng.normal(0, 0.05, n),  # vibration
        50.0 + rng.normal(0, 1.0, n),  # coolant level: independent of the flow
    ]


def faulty(kind: str, n: int = 1000, n_fault: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Normal rows with a fault injected into the last ``n_fault`` rows (spikes: scattered rows)."""
    rng = np.random.default_rng(seed + 100)
    X = plant_data(n, seed)
    sd = X.std(axis=0)
    labels = np.zeros(n, dtype=bool)
    seg = slice(n - n_fault, n)
    labels[seg] = True
    if kind == "step":  # current jumps by 3 of its (marginal) standard deviations
        X[seg, CURRENT] += 3.0 * sd[CURRENT]
    elif kind == "drift":  # motor temperature ramps from 0 to 6 sd
        X[seg, MOTOR_T] += np.linspace(0.0, 6.0, n_fault) * sd[MOTOR_T]
    elif kind == "spike":  # 5 % of rows: one random sensor ±6 sd
        labels[:] = False
        rows = rng.choice(n, size=n // 20, replace=False)
        cols = rng.integers(0, X.shape[1], size=rows.size)
        X[rows, cols] += rng.choice([-1.0, 1.0], size=rows.size) * 6.0 * sd[cols]
        labels[rows] = True
    elif kind == "stuck":  # the current transmitter freezes at a plausible level (its median)
        X[seg, CURRENT] = np.median(X[:, CURRENT])
    elif kind == "correlation_break":
        # Current and pressure behave as if the flow were 2 sd away (toward the centre, so each
        # stays inside its normal range) while the flow meter and the rest follow the true flow.
        flow = X[seg, FLOW]
        other = flow - 20.0 * np.sign(flow - 100.0)
        X[seg, CURRENT] = 0.5 * other + rng.normal(0, 0.5, n_fault)
        X[seg, PRESSURE] = 2.0 + 0.03 * other + rng.normal(0, 0.05, n_fault)
    else:
        raise ValueError(kind)
    return X, labels


BASELINE = plant_data(1000, seed=0)
NORMAL = plant_data(300, seed=7)


def make(name: str) -> Detector:
    return make_detector(name, FAST_PARAMS.get(name))


_FITTED: dict[str, Detector] = {}


def fitted(name: str) -> Detector:
    """One detector per name fitted on ``BASELINE``, shared by the read-only tests."""
    if name not in _FITTED:
        _FITTED[name] = make(name).fit(BASELINE)
    return _FITTED[name]


@pytest.fixture(autouse=True)
def _quiet_pyod() -> Any:
    # PyOD / sklearn emit deprecation and convergence chatter that is not ours to fix.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def save_and_restore(det: Detector, name: str, tmp_path: Path) -> Detector:
    """Persist as the service will (npz without pickle + JSON), then restore via the registry."""
    arrays, meta = split_state(det.get_state())
    np.savez(tmp_path / "state.npz", **arrays)  # type: ignore[arg-type]
    with open(tmp_path / "state.json", "w") as fh:
        json.dump({"kind": name, "params": det.get_params(), "meta": meta}, fh)
    with np.load(tmp_path / "state.npz", allow_pickle=False) as npz:
        loaded = {key: npz[key] for key in npz.files}
    with open(tmp_path / "state.json") as fh:
        doc = json.load(fh)
    return make_detector(doc["kind"], doc["params"]).set_state(join_state(loaded, doc["meta"]))


# -- the contract, for every registered detector ------------------------------------------------


def test_every_detector_has_auc_floors() -> None:
    assert sorted(AUC_FLOORS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_identical_scores(name: str) -> None:
    X, _ = faulty("spike")
    a, b = make(name).fit(BASELINE), make(name).fit(BASELINE)
    assert np.array_equal(a.score(X), b.score(X))
    assert np.array_equal(a.contributions(X), b.contributions(X))


@pytest.mark.parametrize("name", NAMES)
def test_inputs_are_not_mutated(name: str) -> None:
    base, X = BASELINE.copy(), faulty("step")[0]
    X_copy = X.copy()
    det = make(name).fit(base)
    det.score(X)
    det.contributions(X)
    assert np.array_equal(base, BASELINE)
    assert np.array_equal(X, X_copy)


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_through_npz_and_json_gives_identical_scores(name: str, tmp_path: Path) -> None:
    det = fitted(name)
    restored = save_and_restore(det, name, tmp_path)
    X = faulty("correlation_break")[0]
    assert np.array_equal(restored.score(X), det.score(X))
    assert np.array_equal(restored.contributions(X), det.contributions(X))
    assert np.array_equal(restored.center_, det.center_)
    assert np.array_equal(restored.scale_, det.scale_)


@pytest.mark.parametrize("name", NAMES)
def test_scores_are_row_wise_and_micro_batch_invariant(name: str) -> None:
    det = fitted(name)
    X = faulty("spike", n=400)[0]
    full, contrib = det.score(X), det.contributions(X)
    for k in (1, 17, 200):
        assert np.array_equal(det.score(X[:k]), full[:k])
    rng = np.random.default_rng(3)
    cuts = np.unique(np.concatenate([[0, 1, 2, 3], rng.integers(0, X.shape[0], 25), [X.shape[0]]]))
    batches = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    assert np.array_equal(np.concatenate([det.score(X[s]) for s in batches]), full)
    assert np.array_equal(np.concatenate([det.contributions(X[s]) for s in batches]), contrib)


@pytest.mark.parametrize("name", NAMES)
def test_contributions_have_shape_n_by_d_and_are_finite(name: str) -> None:
    X = faulty("step")[0]
    c = fitted(name).contributions(X)
    assert c.shape == X.shape
    assert np.isfinite(c).all()
    assert np.isfinite(fitted(name).score(X)).all()


@pytest.mark.parametrize("name", NAMES)
def test_gross_outlier_scores_above_every_normal_row(name: str) -> None:
    det = fitted(name)
    outlier = det.center_ + 10.0 * det.scale_  # every sensor 10 robust sd high
    normal = det.score(NORMAL)
    # ECDF / histogram tails saturate beyond the baseline range, and COPOD's skew correction halves
    # the weight of the "wrong" tail: a normal row at the low edge of all correlated sensors can
    # outscore any gross outlier there (COPOD: above the 99th percentile of normal rows on this
    # plant). Those only have to beat the normal rows' 95th percentile.
    bar = np.quantile(normal, 0.95) if name in SATURATING_TAILS else normal.max()
    assert det.score(outlier[None, :])[0] > bar
    # ... and its contributions point up.
    assert (det.contributions(outlier[None, :]) >= 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_params_and_registry_round_trip(name: str) -> None:
    det = make(name)
    params = det.get_params()
    assert make_detector(name, params).get_params() == params
    assert json.loads(json.dumps(params)) == json.loads(
        json.dumps(make_spec({"kind": name, "params": params}).get_params())
    )


@pytest.mark.parametrize("name", NAMES)
def test_scikit_learn_clone_and_set_params(name: str) -> None:
    from sklearn.base import clone

    det = make(name).fit(NORMAL)
    twin = clone(det)
    assert type(twin) is type(det) and twin.get_params() == det.get_params()
    with pytest.raises(ValueError, match="not fitted"):  # a clone carries no learned state
        twin.score(NORMAL)
    param = next(iter(det.get_params()))
    assert isinstance(twin, DetectorMixin) and twin.set_params(**{param: det.get_params()[param]}) is twin
    with pytest.raises(ValueError, match="no parameter"):
        twin.set_params(no_such_parameter=1)


@pytest.mark.parametrize("name", NAMES)
def test_scoring_before_fit_raises(name: str) -> None:
    with pytest.raises(ValueError, match="not fitted"):
        make(name).score(NORMAL)


@pytest.mark.parametrize(
    ("name", "fault", "floor"),
    [
        (name, fault, floor)
        for name, floors in sorted(AUC_FLOORS.items())
        for fault, floor in floors.items()
        if floor is not None
    ],
)
def test_roc_auc_floor_per_fault(name: str, fault: str, floor: float) -> None:
    X, labels = faulty(fault)
    assert roc_auc_score(labels, fitted(name).score(X)) >= floor


# -- registry ------------------------------------------------------------------------------------


def test_registry_lists_builtins() -> None:
    expected = {"robust_z", "pca_spc", "pyod", "iforest", "ecod", "copod", "hbos", "knn", "lof", "ensemble"}
    assert expected <= set(available())


def test_unknown_detector_name_lists_known_names() -> None:
    with pytest.raises(ValueError, match="unknown detector 'nope'.*pca_spc"):
        make_detector("nope")


def test_bad_param_names_are_listed() -> None:
    with pytest.raises(ValueError, match=r"unknown params \['bogus', 'varience'\].*variance"):
        make_detector("pca_spc", {"varience": 0.9, "bogus": 1})
    with pytest.raises(ValueError, match="kind"):
        make_spec({"params": {}})


def test_registering_a_name_twice_for_another_class_fails() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register("pca_spc")(type("Other", (), {}))


def test_invalid_hyperparameters_fail_at_fit_not_construction() -> None:
    det = make_detector("pca_spc", {"score_mode": "median"})
    with pytest.raises(ValueError, match="score_mode"):
        det.fit(BASELINE)
    with pytest.raises(ValueError, match="n_neighbours"):
        make_detector("knn", {"model_params": {"n_neighbours": 3}}).fit(BASELINE)
    with pytest.raises(ValueError, match="finite"):
        make_detector("pca_spc").fit(np.full((10, 2), np.nan))


# -- detector-specific parts of the contract --------------------------------------------------------

SMALL_BASE = plant_data(200, seed=11)[:, :5]
SMALL_X = faulty("spike", n=120, seed=12)[0][:, :5]


@pytest.mark.parametrize("model", [m for m in PYOD_MODELS if m != "hbos"])  # hbos: covered above (JIT ~3 s)
def test_every_pyod_model_is_deterministic_row_wise_and_restorable(model: str, tmp_path: Path) -> None:
    params = {"model": model, "model_params": {"n_estimators": 20} if model in ("iforest", "inne") else None}
    det = make_detector("pyod", params).fit(SMALL_BASE)
    full = det.score(SMALL_X)
    assert full.shape == (SMALL_X.shape[0],) and np.isfinite(full).all()
    assert np.array_equal(make_detector("pyod", params).fit(SMALL_BASE).score(SMALL_X), full)
    one_by_one = np.concatenate([det.score(SMALL_X[i : i + 1]) for i in range(SMALL_X.shape[0])])
    if model in ROUNDING_ROWWISE_MODELS:
        np.testing.assert_allclose(one_by_one, full, rtol=1e-9, atol=1e-9)
    else:
        assert np.array_equal(one_by_one, full)
    assert np.array_equal(save_and_restore(det, "pyod", tmp_path).score(SMALL_X), full)


@pytest.mark.parametrize("model", ["ecod", "copod"])
def test_frozen_ecdf_equals_pyod_scoring_each_row_alone(model: str) -> None:
    """PyOD's ECOD/COPOD recompute ECDFs over train + batch; ours equals PyOD on one-row batches."""
    det = PyODDetector(model).fit(SMALL_BASE)
    Z = (SMALL_X - det.center_) / det.scale_
    ref_model = _pyod_model(model).fit((SMALL_BASE - det.center_) / det.scale_)
    ref = np.array([ref_model.decision_function(Z[i : i + 1])[0] for i in range(8)])
    np.testing.assert_allclose(det.score(SMALL_X[:8]), ref, rtol=1e-12)


def _pyod_model(model: str) -> Any:
    from pyod.models.copod import COPOD
    from pyod.models.ecod import ECOD

    return ECOD() if model == "ecod" else COPOD()


def test_pyod_random_state_none_draws_a_seed_that_restores_exactly(tmp_path: Path) -> None:
    det = make_detector("iforest", {"random_state": None, **FAST_IFOREST}).fit(SMALL_BASE)
    assert np.array_equal(save_and_restore(det, "iforest", tmp_path).score(SMALL_X), det.score(SMALL_X))


def test_robust_max_mode_is_max_abs_z_and_beats_rms_on_a_single_sensor_step() -> None:
    rms, mx = make_detector("robust_z").fit(BASELINE), make_detector("robust_z", {"score_mode": "max"}).fit(BASELINE)
    X, labels = faulty("step")
    assert np.array_equal(mx.score(X), np.abs(mx.contributions(X)).max(axis=1))
    assert isinstance(rms, DetectorMixin) and np.array_equal(rms.median_, rms.center_)
    assert roc_auc_score(labels, mx.score(X)) > roc_auc_score(labels, rms.score(X)) + 0.05


def test_ensemble_evidence_is_finite_and_keeps_ranking_far_beyond_the_baseline() -> None:
    ens = fitted("ensemble")
    assert isinstance(ens, type(make("ensemble")))
    rows = ens.center_ + np.outer([0.0, 50.0, 1e3, 1e6], ens.scale_)
    scores = ens.score(rows)
    assert np.isfinite(scores).all()
    assert np.all(np.diff(scores) > 0)
    shares = np.abs(ens.contributions(rows[1:]))  # the centre row has nothing to share out
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)


def test_ensemble_typical_rows_carry_no_evidence_and_a_nan_baseline_score_is_ignored() -> None:
    from detector.detectors.ensemble import Ensemble

    ens = Ensemble(members=[{"kind": "robust_z"}, {"kind": "pca_spc"}], combine="max").fit(NORMAL)
    evidence = ens.member_evidence(NORMAL)
    assert (evidence >= 0).all() and (evidence == 0).any()
    typical = np.flatnonzero(evidence.max(axis=1) == 0)[:5]
    shares = np.abs(ens.contributions(NORMAL[typical]))
    assert np.isfinite(shares).all()
    # A member score that is NaN on one baseline row is left out, as the calibrator leaves it out.
    scores = list(ens.baseline_scores_)
    scores[0] = scores[0].copy()
    scores[0][3] = np.nan
    ens._finish(list(ens.members_), scores)
    assert np.isfinite(ens.typical_evidence_).all() and np.isfinite(ens.score(NORMAL)).all()
