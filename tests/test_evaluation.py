"""Hand-computed cases for plantwatch.offline.evaluation (SKAB point-wise metrics and NAB scoring)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detector.alarm import alarm_onsets
from plantwatch.offline.evaluation import (
    NAB_STANDARD,
    NabProfile,
    delay_summary,
    nab_corpus,
    nab_fp_weight,
    nab_normalised,
    nab_probation_rows,
    nab_score_file,
    nab_tp_weight,
    parse_time_ns,
    pool_skab,
    scaled_sigmoid,
    segment_delays,
    skab_metrics,
    window_rows,
)

# S(-1) = 2 / (1 + e^-5) - 1 = 2 / 1.006737947 - 1
S_MINUS_1 = 0.9866142981514305


def flags(n: int, on: list[int] | range) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[list(on)] = True
    return out


# -- scaled sigmoid ------------------------------------------------------------------------------


def test_scaled_sigmoid_hand_values() -> None:
    # 2 / (1 + e^(5p)) - 1
    assert scaled_sigmoid(-1.0) == pytest.approx(S_MINUS_1, abs=1e-12)  # e^-5 = 0.006737947
    assert scaled_sigmoid(-0.5) == pytest.approx(0.8482836399575131, abs=1e-12)  # 2 / (1 + e^-2.5) - 1
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-S_MINUS_1, abs=1e-12)
    assert scaled_sigmoid(2.999) == pytest.approx(2 / (1 + math.exp(14.995)) - 1)
    assert scaled_sigmoid(3.0) == -1.0
    assert scaled_sigmoid(50.0) == -1.0
    assert scaled_sigmoid(-50.0) == pytest.approx(1.0)  # no overflow


def test_tp_weight_positions() -> None:
    # window rows 10..19: width 10; position = -(19 - i + 1) / 10
    assert nab_tp_weight(10, 10, 19) == pytest.approx(1.0)  # -1.0: exactly A_TP
    assert nab_tp_weight(15, 10, 19) == pytest.approx(0.8482836399575131 / S_MINUS_1)  # -0.5 → 0.85979
    assert nab_tp_weight(19, 10, 19) == pytest.approx(0.2449186624037092 / S_MINUS_1)  # -0.1 → 0.24824
    weights = [nab_tp_weight(i, 10, 19) for i in range(10, 20)]
    assert all(a > b > 0 for a, b in zip(weights, weights[1:], strict=False))


def test_fp_weight_positions() -> None:
    # previous window ends at row 19, 10 rows wide: position = (i - 19) / 9
    assert nab_fp_weight(20, 19, 10) == pytest.approx(0.11 * -0.2708471185167214)  # p = 1/9: -0.0298
    assert nab_fp_weight(28, 19, 10) == pytest.approx(0.11 * -S_MINUS_1)  # p = 1
    assert nab_fp_weight(46, 19, 10) == pytest.approx(-0.11)  # p = 3
    assert nab_fp_weight(5, None, None) == pytest.approx(-0.11)  # no preceding window
    assert nab_fp_weight(21, 20, 1) == pytest.approx(0.11 * scaled_sigmoid(2.0))  # one-row window


# -- NAB per file and normalisation --------------------------------------------------------------

N = 100
WINDOWS = [(40, 49), (70, 79)]  # probation of 100 rows = 15


def test_probation_rows() -> None:
    assert nab_probation_rows(100) == 15
    assert nab_probation_rows(4032) == 604  # floor(604.8)
    assert nab_probation_rows(5000) == 750
    assert nab_probation_rows(22695) == 750


def test_perfect_and_null_detectors() -> None:
    perfect = nab_score_file(flags(N, [40, 70]), WINDOWS)
    null = nab_score_file(flags(N, []), WINDOWS)
    assert perfect.raw == pytest.approx(2.0)
    assert null.raw == pytest.approx(-2.0)
    assert nab_normalised(perfect.raw, 2) == pytest.approx(100.0)
    assert nab_normalised(null.raw, 2) == pytest.approx(0.0)
    assert nab_corpus({"a": perfect, "b": perfect})["score"] == pytest.approx(100.0)
    assert nab_corpus({"a": null, "b": null})["score"] == pytest.approx(0.0)


def test_only_first_detection_in_window_counts() -> None:
    one = nab_score_file(flags(N, [40]), WINDOWS)
    many = nab_score_file(flags(N, range(40, 50)), WINDOWS)
    assert one.tp_score == pytest.approx(1.0)
    assert many.tp_score == pytest.approx(1.0)
    assert many.fp_rows == 0
    # one TP (+1), one FN (-1)
    assert many.raw == pytest.approx(0.0)


def test_late_detection_worth_less_than_early() -> None:
    early = nab_score_file(flags(N, [42, 70]), WINDOWS)
    late = nab_score_file(flags(N, [48, 70]), WINDOWS)
    # window (40, 49): row 42 → p = -0.8, row 48 → p = -0.2
    assert early.tp_score == pytest.approx(1 + scaled_sigmoid(-0.8) / S_MINUS_1)
    assert late.tp_score == pytest.approx(1 + scaled_sigmoid(-0.2) / S_MINUS_1)
    assert early.raw > late.raw


def test_fp_right_after_window_costs_less_than_far_away() -> None:
    near = nab_score_file(flags(N, [40, 70, 50]), WINDOWS)  # 1 row after window 1 (ends 49, width 10)
    far = nab_score_file(flags(N, [40, 70, 99]), WINDOWS)  # 20 rows after window 2: p = 20/9 → S ≈ -1
    first = nab_score_file(flags(N, [40, 70, 20]), WINDOWS)  # before any window: full -A_FP
    assert near.fp_score == pytest.approx(0.11 * -0.2708471185167214)
    assert far.fp_score == pytest.approx(0.11 * scaled_sigmoid(20 / 9))
    assert first.fp_score == pytest.approx(-0.11)
    assert near.fp_score > far.fp_score > first.fp_score
    assert (near.fp_rows, near.false_alarms) == (1, 1)


def test_probationary_rows_ignored() -> None:
    baseline = nab_score_file(flags(N, [40, 70]), WINDOWS)
    noisy = nab_score_file(flags(N, list(range(15)) + [40, 70]), WINDOWS)
    assert noisy.raw == pytest.approx(baseline.raw)
    assert (noisy.fp_rows, noisy.false_alarms) == (0, 0)
    # row 15 is the first scored row
    assert nab_score_file(flags(N, [15, 40, 70]), WINDOWS).fp_score == pytest.approx(-0.11)


def test_window_in_probation_not_scored_and_probation_detection_not_a_tp() -> None:
    res = nab_score_file(flags(N, [5]), [(2, 8), (40, 49)])
    assert not res.windows[0].scored and res.windows[0].first_detection is None
    assert res.raw == pytest.approx(-1.0)  # only the second window's FN
    # window straddling the probation end: the detection on row 12 (probation) is ignored, row 16 counts
    straddle = nab_score_file(flags(N, [12, 16]), [(10, 19)])
    assert straddle.windows[0].first_detection == 16
    assert straddle.tp_score == pytest.approx(nab_tp_weight(16, 10, 19))


def test_fp_uses_closest_preceding_window() -> None:
    res = nab_score_file(flags(N, [40, 70, 80]), WINDOWS)  # row 80: 1 row after window 2
    assert res.fp_score == pytest.approx(nab_fp_weight(80, 79, 10))
    assert res.fp_score == pytest.approx(0.11 * -0.2708471185167214)


def test_false_alarms_count_onsets_outside_windows() -> None:
    pred = flags(N, list(range(20, 25)) + list(range(45, 55)) + [60, 62])
    res = nab_score_file(pred, WINDOWS)
    # onsets at 20, 45 (inside window 1), 60, 62; FP rows 20-24, 50-54, 60, 62
    assert alarm_onsets(pred).tolist() == [20, 45, 60, 62]
    assert res.false_alarms == 3
    assert res.fp_rows == 12


def test_lead_times() -> None:
    ts = np.arange(N, dtype=np.int64) * 3_600_000_000_000  # one row per hour
    res = nab_score_file(flags(N, [42, 79]), WINDOWS, timestamps_ns=ts)
    w1, w2 = res.windows
    assert w1.lead_hours == pytest.approx(7.0)  # end 49 - first 42
    assert w1.lead_fraction == pytest.approx(7 / 9)
    assert w2.lead_hours == pytest.approx(0.0)
    summary = nab_corpus({"f": res})
    assert summary["median_lead_hours"] == pytest.approx(3.5)
    assert summary["window_recall"] == pytest.approx(1.0)


def test_normalisation_sums_raw_over_files() -> None:
    a = nab_score_file(flags(N, [40]), WINDOWS)  # +1 - 1 = 0
    b = nab_score_file(flags(N, [40, 70, 20]), WINDOWS)  # +2 - 0.11
    summary = nab_corpus({"a": a, "b": b})
    assert summary["raw"] == pytest.approx(1.89)
    assert summary["score"] == pytest.approx(100 * (1.89 + 4) / (4 + 4))
    assert summary["window_recall"] == pytest.approx(3 / 4)


def test_other_profile_weights() -> None:
    low_fn = NabProfile(tp=1.0, fp=0.11, fn=2.0)
    res = nab_score_file(flags(N, []), WINDOWS, profile=low_fn)
    assert res.raw == pytest.approx(-4.0)
    assert nab_normalised(res.raw, 2, profile=low_fn) == pytest.approx(0.0)
    assert NAB_STANDARD.fp == 0.11


# -- windows from timestamps ---------------------------------------------------------------------


def test_window_rows_inclusive_and_with_duplicates() -> None:
    base = parse_time_ns("2014-03-09 00:00:00")
    step = 300 * 10**9
    ts = base + np.array([0, 1, 2, 2, 3, 4, 5, 3, 6], dtype=np.int64) * step  # repeat and step back
    rows = window_rows(ts, [["2014-03-09 00:05:00.000000", "2014-03-09 00:15:00.000000"]])
    assert rows == [(1, 4)]  # first row stamped start .. first row stamped end
    assert window_rows(ts, [[int(base + 5 * step), int(base + 6 * step)]]) == [(6, 8)]
    with pytest.raises(ValueError):
        window_rows(ts, [["2015-01-01 00:00:00", "2015-01-02 00:00:00"]])


# -- SKAB ----------------------------------------------------------------------------------------


def test_skab_metrics_toy() -> None:
    label = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 0], dtype=bool)
    pred = np.array([0, 1, 0, 0, 0, 1, 1, 1, 1, 0], dtype=bool)
    m = skab_metrics(pred, label)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 2, 1, 4)
    assert m["f1"] == pytest.approx(3 / (3 + 1.5))  # 0.6667
    assert m["precision"] == pytest.approx(0.6)
    assert m["recall"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert m["far"] == pytest.approx(2 / 6)
    assert m["mar"] == pytest.approx(1 / 4)


def test_skab_pooling_sums_counts() -> None:
    a = skab_metrics(np.array([1, 1, 0, 0], bool), np.array([1, 1, 0, 0], bool))  # TP 2, TN 2
    b = skab_metrics(np.array([1, 0, 0, 0], bool), np.array([0, 0, 1, 1], bool))  # FP 1, FN 2, TN 1
    pooled = pool_skab([a, b])
    assert (pooled["tp"], pooled["fp"], pooled["fn"], pooled["tn"]) == (2, 1, 2, 3)
    assert pooled["f1"] == pytest.approx(2 / 3.5)
    assert pooled["far"] == pytest.approx(1 / 4)
    assert pooled["mar"] == pytest.approx(2 / 4)
    # pooled F1 is not the mean of the per-file F1s
    assert pooled["f1"] != pytest.approx((a["f1"] + b["f1"]) / 2)


def test_skab_empty_denominators() -> None:
    m = skab_metrics(np.zeros(5, bool), np.zeros(5, bool))
    assert (m["f1"], m["far"], m["mar"], m["precision"], m["recall"]) == (0.0, 0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        skab_metrics(np.zeros(3, bool), np.zeros(4, bool))


def test_segment_delays_time_the_first_flag_of_each_labelled_run() -> None:
    label = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0, 1], dtype=bool)
    pred = np.array([1, 0, 0, 1, 1, 0, 0, 0, 0, 1], dtype=bool)  # the flag before run 1 does not count
    ts = np.arange(10, dtype=np.int64) * 2_000_000_000  # 2 s apart
    assert segment_delays(pred, label, ts) == [4.0, None, 0.0]
    assert segment_delays(pred, np.zeros(10, dtype=bool), ts) == []
    assert delay_summary([4.0, None, 0.0]) == {"segments": 3, "flagged": 2, "median_s": 2.0, "min_s": 0.0, "max_s": 4.0}
    assert delay_summary([None]) == {"segments": 1, "flagged": 0, "median_s": None, "min_s": None, "max_s": None}
