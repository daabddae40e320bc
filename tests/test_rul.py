"""RUL model on small synthetic run-to-failure fleets (generated here; no shared data sets)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from detector.rul import RegimeNormalizer, RulModel, piecewise_rul, window_features
from plantwatch.cli.common import CommandError
from plantwatch.cli.rul import add_parser as add_rul_parser
from plantwatch.maintenance.rul_files import load_model, read_fleet_csv

REGIMES = np.array([[0.0, 0.0], [10.0, 0.25], [25.0, 0.62]])


def make_fleet(n_units: int, seed: int, regimes: int = 3, truncate: bool = False):
    """Units degrade exponentially to failure. 4 informative sensors, 1 noise, 1 constant, 1 regime-only."""
    rng = np.random.default_rng(seed)
    assets, true_rul = [], []
    offsets = np.random.default_rng(0).normal(0, 20, size=(len(REGIMES), 7))  # same plant for every fleet
    for _ in range(n_units):
        life = int(rng.integers(120, 220))
        t = np.arange(1, life + 1, dtype=float)
        wear = np.exp((t - life) / 40.0)  # 1 at failure
        r = rng.integers(0, regimes, size=life)
        S = REGIMES[r] + rng.normal(0, 0.002, size=(life, 2))
        X = np.empty((life, 7))
        X[:, 0] = 100 + 3 * wear
        X[:, 1] = 50 - 2 * wear
        X[:, 2] = 20 + 1.5 * wear
        X[:, 3] = 5 + 2.5 * wear
        X[:, 4] = 0.0
        X[:, 5] = 7.0  # constant
        X[:, 6] = 0.0
        X += offsets[r] * np.array([1, 1, 1, 1, 1, 0, 1])
        X[:, :5] += rng.normal(0, 0.4, size=(life, 5))
        cut = life
        if truncate:
            cut = int(rng.integers(40, life))
        true_rul.append(float(life - cut))
        assets.append((t[:cut], X[:cut], S[:cut]))
    return assets, np.array(true_rul)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # the CI box is 2 shared cores: OpenMP oversubscription (HistGradientBoosting, KMeans) costs far more than it gains
    with threadpool_limits(limits=1):
        yield


SMALL = dict(max_iter=60, learning_rate=0.1, n_models=1, cv_folds=3, window=15, min_samples_leaf=50)


@pytest.fixture(scope="module")
def fitted(_one_thread):
    train, _ = make_fleet(36, seed=1)
    steps: list[tuple[int, int]] = []
    model = RulModel(**SMALL).fit(train, progress=lambda done, total: steps.append((done, total)))
    assert steps == [(1, 4)] * 4  # each of the 3 folds, then the final model
    return model


def test_piecewise_target_is_capped_and_reaches_zero():
    y = piecewise_rul(np.arange(1, 201, dtype=float), cap=125)
    assert y[0] == 125 and y[-1] == 0 and np.all(np.diff(y) <= 0)


def test_regime_normaliser_finds_three_regimes_and_removes_jumps():
    train, _ = make_fleet(10, seed=2)
    X = np.concatenate([a[1] for a in train])
    S = np.concatenate([a[2] for a in train])
    norm = RegimeNormalizer().fit(X, S)
    assert norm.k_ == 3
    Z = norm.transform(X, S)
    labels = norm.assign(S, X.shape[0])
    raw_means = [X[labels == r, 0].mean() for r in range(3)]
    z_means = [Z[labels == r, 0].mean() for r in range(3)]
    assert np.ptp(raw_means) > 5 and np.ptp(z_means) < 0.1  # regime jumps removed
    assert np.abs(Z[:, 6]).max() < 1e-6  # a regime-only column carries nothing after normalisation
    # column 6 only depends on the regime: after normalisation it is (numerically) constant per regime
    assert norm.spread_[6] == 0.0 and norm.spread_[5] == 0.0 and norm.spread_[0] > 0
    # noise around a single operating point stays one regime
    one, _ = make_fleet(6, seed=3, regimes=1)
    X1 = np.concatenate([a[1] for a in one])
    S1 = np.concatenate([a[2] for a in one])
    assert RegimeNormalizer().fit(X1, S1).k_ == 1


def test_constant_and_uninformative_columns_dropped(fitted):
    assert fitted.normalizer_.k_ == 3
    assert list(fitted.keep_[:4]) == [True] * 4
    assert not fitted.keep_[5] and not fitted.keep_[6]  # constant, regime-only


def test_model_learns_decreasing_rul(fitted):
    test, true_rul = make_fleet(12, seed=5)
    pred, low, high = fitted.predict_rows(test[0])
    late = pred[-40:]
    assert np.corrcoef(late, np.arange(late.size))[0, 1] < -0.9
    assert pred[-1] < 15 and np.mean(pred[:20]) > 90
    assert np.all(low <= pred) and np.all(pred <= high)


def test_truncated_prediction_error_and_interval_coverage(fitted):
    test, true_rul = make_fleet(60, seed=7, truncate=True)
    preds = fitted.predict(test)
    target = np.minimum(true_rul, fitted.cap)
    rul = np.array([p.rul for p in preds])
    assert np.sqrt(np.mean((rul - target) ** 2)) < 15
    # intervals claim the true (uncapped) RUL
    inside = np.mean([p.low <= y <= p.high for p, y in zip(preds, true_rul, strict=True)])
    assert 0.65 <= inside <= 0.95  # nominal 0.8
    assert 0.75 <= fitted.cv_coverage_ <= 0.9
    assert all(p.low <= p.rul <= p.high for p in preds)


def test_short_history_uses_what_is_there(fitted):
    test, _ = make_fleet(2, seed=9)
    t, X, S = test[0]
    (p,) = fitted.predict([(t[:3], X[:3], S[:3])])
    assert np.isfinite(p.rul) and p.low <= p.rul <= p.high


def test_window_features_slope_and_mean():
    t = np.arange(10, dtype=float)
    Z = np.column_stack([2.0 * t, np.ones(10)])
    F = window_features(t, Z, window=4, ewm_alpha=0.5)
    d = 2
    last, mean, slope = F[:, :d], F[:, d : 2 * d], F[:, 2 * d : 3 * d]
    assert np.allclose(last, Z)
    assert np.allclose(slope[1:, 0], 2.0) and slope[0, 0] == 0.0 and np.allclose(slope[:, 1], 0.0)
    assert mean[9, 0] == pytest.approx(np.mean([12, 14, 16, 18]))
    assert F[9, -1] == 9.0  # age


def test_state_roundtrip_identical(fitted, tmp_path: Path):
    from plantwatch.maintenance.rul_files import save_model

    save_model(fitted, tmp_path / "m", [f"s{i}" for i in range(7)], ["setting1", "setting2"])
    restored, sensors, settings = load_model(tmp_path / "m")
    test, _ = make_fleet(5, seed=11, truncate=True)
    a = fitted.predict(test)
    b = restored.predict(test)
    assert a == b
    assert sensors[0] == "s0" and settings == ["setting1", "setting2"]
    with np.load(tmp_path / "m" / "arrays.npz", allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)


def test_cv_against_true_rul_and_older_states(fitted):
    # the uncapped figure counts the life beyond the cap, which a capped model cannot predict
    assert fitted.cv_rmse_life_ is not None and fitted.cv_rmse_life_ > fitted.cv_rmse_last_
    assert fitted.cv_phm08_life_ is not None and fitted.cv_phm08_life_ > 0
    meta, arrays = fitted.get_state()
    assert meta["cv_rmse_life"] == fitted.cv_rmse_life_
    older = {k: v for k, v in meta.items() if k not in ("cv_rmse_life", "cv_phm08_life")}
    restored = RulModel.from_state(older, arrays)  # saved before the figures existed: still restores
    assert restored.cv_rmse_life_ is None and restored.cv_phm08_life_ is None
    assert restored.cv_rmse_last_ == fitted.cv_rmse_last_


def test_load_refuses_files_outside_model_dir(fitted, tmp_path: Path):
    from plantwatch.maintenance.rul_files import save_model

    save_model(fitted, tmp_path / "good", ["a"] * 7, [])
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "model.json").symlink_to(tmp_path / "good" / "model.json")
    (evil / "arrays.npz").symlink_to(tmp_path / "good" / "arrays.npz")
    with pytest.raises(ValueError, match="outside"):
        load_model(evil)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError):
        load_model(bad)


def _write_csv(path: Path, assets, names, with_label: bool = False) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["unit", "cycle", "setting1", "setting2"] + [f"s{i}" for i in range(7)] + (["note"] if with_label else [])
        )
        for name, (t, X, S) in zip(names, assets, strict=True):
            for i in range(t.size):
                w.writerow([name, int(t[i]), *S[i], *X[i]] + (["x"] if with_label else []))


def test_cli_fit_predict_roundtrip(tmp_path: Path, monkeypatch, capsys):
    import argparse

    import detector.rul as rul_mod

    # keep the CLI test fast: small boosting
    orig = rul_mod.RulModel.__init__

    def small_init(self, *a, **kw):
        orig(self, *a, **{**SMALL, **kw})

    monkeypatch.setattr(rul_mod.RulModel, "__init__", small_init)
    train, _ = make_fleet(12, seed=13)
    test, truth = make_fleet(4, seed=14, truncate=True)
    names = ["pump-A", "pump B", "7", "Ünit-4"]
    _write_csv(tmp_path / "train.csv", train, [f"u{i}" for i in range(len(train))])
    _write_csv(tmp_path / "test.csv", test, names, with_label=True)

    parser = argparse.ArgumentParser(prog="plantwatch")
    sub = parser.add_subparsers(required=True)
    add_rul_parser(sub)
    args = parser.parse_args(
        ["rul", "fit", str(tmp_path / "train.csv"), "--asset-column", "unit", "--time-column", "cycle",
         "--out", str(tmp_path / "MODEL")]
    )  # fmt: skip
    assert args.func(args) == 0
    assert (tmp_path / "MODEL" / "model.json").is_file() and (tmp_path / "MODEL" / "arrays.npz").is_file()
    args = parser.parse_args(
        ["rul", "predict", str(tmp_path / "test.csv"), "--model", str(tmp_path / "MODEL"), "--asset-column", "unit",
         "--time-column", "cycle", "--out", str(tmp_path / "RUL.csv")]
    )  # fmt: skip
    assert args.func(args) == 0
    with (tmp_path / "RUL.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["asset", "rul", "rul_low", "rul_high"]
    assert [r[0] for r in rows[1:]] == names
    for r in rows[1:]:
        rul, lo, hi = map(float, r[1:])
        assert 0 <= lo <= rul <= hi

    # --plot, with the truth beside the predictions (a CSV asset,rul; or one value per line in order)
    (tmp_path / "truth.csv").write_text(
        "asset,rul\n" + "".join(f"{n},{t}\n" for n, t in zip(names, truth, strict=True))
    )
    (tmp_path / "truth.txt").write_text("".join(f"{t}\n" for t in truth))
    predict = ["rul", "predict", str(tmp_path / "test.csv"), "--model", str(tmp_path / "MODEL"), "--asset-column",
               "unit", "--time-column", "cycle", "--out", str(tmp_path / "RUL.csv")]  # fmt: skip
    for given in ("truth.csv", "truth.txt"):
        args = parser.parse_args([*predict, "--plot", str(tmp_path / "rul.png"), "--truth", str(tmp_path / given)])
        assert args.func(args) == 0
        assert (tmp_path / "rul.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        (tmp_path / "rul.png").unlink()
    # --truth alone: RMSE and coverage printed, as the plot's title gives them
    capsys.readouterr()
    args = parser.parse_args([*predict, "--truth", str(tmp_path / "truth.txt")])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "4 assets → " in printed and f"against {tmp_path / 'truth.txt'}: RMSE " in printed
    assert "of 4 assets" in printed
    for flag, value in (("--cap", "-5"), ("--coverage", "1.5"), ("--window", "0"), ("--seed", "-1")):
        with pytest.raises(SystemExit):  # argparse: "argument --cap: must be a number above 0, got '-5'"
            parser.parse_args(["rul", "fit", "t.csv", "--asset-column", "u", "--time-column", "c", "--out", "M",
                               flag, value])  # fmt: skip
        assert f"argument {flag}: " in capsys.readouterr().err
    (tmp_path / "short.txt").write_text("12\n30\n")
    args = parser.parse_args([*predict, "--plot", str(tmp_path / "rul.png"), "--truth", str(tmp_path / "short.txt")])
    with pytest.raises(CommandError, match=r"--truth .*short.txt: 2 values for 4 assets"):
        args.func(args)


def test_reader_detects_settings_and_skips_text_columns(tmp_path: Path):
    test, _ = make_fleet(2, seed=15)
    _write_csv(tmp_path / "x.csv", test, ["a", "b"], with_label=True)
    log = read_fleet_csv(tmp_path / "x.csv", "unit", "cycle")
    assert log.settings_columns == ["setting1", "setting2"]
    assert log.sensor_columns == [f"s{i}" for i in range(7)]
    assert log.assets == ["a", "b"]
    with pytest.raises(ValueError, match="no column"):
        read_fleet_csv(tmp_path / "x.csv", "engine", "cycle")


def test_six_operating_conditions_are_six_regimes() -> None:
    """C-MAPSS FD002's six setting points: five clusters already explain 0.993 of their variance (the two at
    0.84 Mach merge), so at the old threshold 0.99 two conditions shared one regime's sensor statistics."""
    points = np.array([[0.0, 0.0, 100.0], [10.0, 0.25, 100.0], [20.0, 0.7, 100.0], [25.0, 0.62, 60.0],
                       [35.0, 0.84, 100.0], [42.0, 0.84, 100.0]])  # fmt: skip
    rng = np.random.default_rng(3)
    r = rng.choice(6, size=6000, p=[0.15, 0.15, 0.15, 0.15, 0.15, 0.25])
    S = points[r] + rng.normal(0, [0.002, 0.0002, 0.0], size=(r.size, 3))
    X = 10.0 * r[:, None] + rng.normal(0, 1.0, size=(r.size, 2))
    norm = RegimeNormalizer().fit(X, S)
    assert norm.k_ == 6
    labels = norm.assign(S, r.size)
    assert all(np.unique(labels[r == c]).size == 1 for c in range(6))  # each condition maps to one regime
    assert np.unique(labels).size == 6
    assert RegimeNormalizer(explained=0.99).fit(X, S).k_ == 5  # the old threshold merges two


# ---- bench/rul.py's cut-off populations (issue 16): training rows weighted to look like a test protocol

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench_rul():
    import runpy

    return runpy.run_path(str(ROOT / "bench" / "rul.py"), run_name="bench_rul")


def test_cutoff_rows_and_weights(bench_rul):
    lives = np.array([3, 5, 8])
    engine, length, rul = bench_rul["cutoff_rows"](lives)
    assert list(engine) == [0] * 3 + [1] * 5 + [2] * 8
    assert list(length[:3]) == [1, 2, 3] and list(rul[3:8]) == [4, 3, 2, 1, 0]
    weights = bench_rul["cutoff_weights"]
    uniform = weights(lives, "uniform")
    assert np.allclose(np.bincount(engine, weights=uniform), 1.0)
    # cut at a test length shorter than the life: engine 0 (life 3) has none (test lengths 4, 4, 6)
    w = weights(lives, "lengths", test_lengths=np.array([4, 4, 6]))
    assert np.allclose(np.bincount(engine, weights=w), [0.0, 1.0, 1.0])
    assert np.all(w[~np.isin(length, [4, 6])] == 0)
    assert w[(engine == 2) & (length == 4)][0] == pytest.approx(2 / 3)  # two of the three draws are length 4
    assert w[(engine == 1) & (length == 4)][0] == pytest.approx(1.0)  # only 4 and 4 are shorter than 5
    # RUL at the cut uniform on 0..2: only rows with RUL <= 2 count; every engine at least 3 long counts once
    r = weights(lives, "rul", rul_max=2)
    assert np.all(r[rul > 2] == 0) and np.allclose(np.bincount(engine, weights=r), 1.0)
    with pytest.raises(ValueError):
        weights(lives, "lengths")
    with pytest.raises(ValueError):
        weights(lives, "sideways")


def test_rul_max_is_recovered_from_observed_lengths_alone(bench_rul):
    rng = np.random.default_rng(4)
    lives = rng.integers(150, 300, size=300)
    test_lives = rng.integers(150, 300, size=400)
    observed = test_lives - rng.integers(0, 121, size=400)  # RUL at the cut uniform on 0..120
    best, profile = bench_rul["fit_rul_max"](lives, observed)
    assert 105 <= best <= 135
    assert profile[best] > profile[200.0] + 10 and profile[best] > profile[100.0]


def test_weighted_scores_match_the_per_unit_scores(bench_rul):
    pred = np.array([10.0, 50.0, 80.0])
    true = np.array([20.0, 45.0, 80.0])
    rmse, phm = bench_rul["weighted_scores"](pred, true, np.ones(3), 3)
    assert rmse == pytest.approx(bench_rul["rmse"](pred, true))
    assert phm == pytest.approx(bench_rul["phm08"](pred, true))
    # weights: per-unit expectation times the number of units
    rmse_w, phm_w = bench_rul["weighted_scores"](pred, true, np.array([1.0, 0.0, 1.0]), 10)
    assert rmse_w == pytest.approx(np.sqrt(50.0)) and phm_w == pytest.approx(10 * np.expm1(10 / 13) / 2)


def test_cutoff_study_runs_on_a_small_fleet(bench_rul, monkeypatch, capsys):
    orig = RulModel.__init__

    def small_init(self, *a, **kw):
        orig(self, *a, **{**SMALL, "max_iter": 10, "cv_folds": 2, "min_bin_assets": 3, **kw})

    monkeypatch.setattr(RulModel, "__init__", small_init)
    train, _ = make_fleet(6, seed=21)
    test, _ = make_fleet(5, seed=22, truncate=True)
    # no settings: one regime, no KMeans (keeps the test fast)
    bench_rul["cutoff_study"]([(t, X, None) for t, X, _ in train], [(t, X, None) for t, X, _ in test], caps=(125, 150))
    out = capsys.readouterr().out
    assert "maximum-likelihood R" in out and "cap 150" in out and "uncapped, w=lengths" in out
    assert "calibrated under uniform" in out


def test_a_bad_cell_of_a_fleet_log_names_its_line_and_column(tmp_path: Path):
    path = tmp_path / "fleet.csv"
    # blank lines count, as an editor counts lines; the bad cell is on line 5
    path.write_text("unit,cycle,s1,s2\n1,1,0.5,7\n\n1,2,0.6,7\n1,3,abc,7\n")
    with pytest.raises(ValueError, match=r"fleet.csv: line 5: column 's1' holds 'abc', not a number"):
        read_fleet_csv(path, "unit", "cycle", sensor_columns=["s1", "s2"])
    path.write_text("unit,cycle,s1,s2\n1,1,0.5,7\n\n1,2,0.6\n")
    with pytest.raises(ValueError, match=r"fleet.csv: line 4: 3 cells, header has 4"):
        read_fleet_csv(path, "unit", "cycle")
    path.write_text('unit,cycle,s1,s2\n"1\n",1,0.5,7\n1,2,abc,7\n')  # a quoted cell holding a line break
    with pytest.raises(ValueError, match=r"fleet.csv: line 4: column 's1' holds 'abc', not a number"):
        read_fleet_csv(path, "unit", "cycle", sensor_columns=["s1", "s2"])
