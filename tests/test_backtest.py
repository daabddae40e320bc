"""Backtest: output file shape, causality, metrics, config handling."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from detector.config import MonitorConfig
from detector.monitor import WARMING_UP, AssetMonitor
from ingest.logfile import read_sensor_log
from plantwatch.offline import backtest as backtest_module
from plantwatch.offline.backtest import backtest_main, pointwise_metrics, run_backtest, write_scores_csv

N, TRAIN, FAULT = 900, 300, (600, 700)


def make_log(tmp_path: Path, *, nan_row: int | None = 450) -> Path:
    """8 noisy sensors, a step on sensor s2 during FAULT, label columns that must not be sensors."""
    rng = np.random.default_rng(7)
    X = 10 + rng.standard_normal((N, 8))
    X[FAULT[0] : FAULT[1], 2] += 8.0
    label = np.zeros(N, dtype=int)
    label[FAULT[0] : FAULT[1]] = 1
    change = np.zeros(N, dtype=int)
    change[FAULT[0]] = 1
    lines = ["Time;" + ";".join(f"s{i}" for i in range(8)) + ";anomaly;changepoint"]
    for i, row in enumerate(X):
        cells = [f"{v:.6f}" for v in row]
        if i == nan_row:
            cells[5] = "n/a"
        stamp = f"2021-05-01 {i // 3600:02d}:{(i // 60) % 60:02d}:{i % 60:02d}"
        lines.append(";".join([stamp, *cells, str(label[i]), str(change[i])]))
    path = tmp_path / "log.csv"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


def read_out(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_backtest_main_writes_one_row_per_input_row(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    # Raw values (no rolling window whose lag would flag rows after the step ends): this test is about
    # the file contract and the metrics; detection quality of the default lives in bench/detection.py.
    raw = MonitorConfig(features=None)
    summary = backtest_main(make_log(tmp_path), out, TRAIN, ("anomaly", "changepoint"), None, raw)
    rows = read_out(out)
    assert rows[0] == ["timestamp", "score", "probability", "anomaly", "status"]
    assert len(rows) == N + 1
    assert rows[1][0] == "2021-05-01 00:00:00" and rows[N][0] == "2021-05-01 00:14:59"
    assert all(r[1:] == ["", "", "", "baseline"] for r in rows[1 : TRAIN + 1])  # not scored: empty
    assert {r[3] for r in rows[TRAIN + 1 :]} <= {"0", "1"}
    # The 'n/a' row cannot be scored: score and probability empty, the alarm state held (off).
    assert rows[451][1:] == ["", "", "0", "skipped"]
    assert {r[4] for r in rows[TRAIN + 1 :]} == {"scored", "skipped"}
    probs = [float(r[2]) for r in rows[TRAIN + 1 :] if r[2]]
    assert len(probs) == N - TRAIN - 1 and all(0.0 <= p < 1.0 for p in probs)
    assert summary["rows"] == N and summary["skipped_rows"] == 1 and len(summary["sensors"]) == 8
    m = summary["metrics"]
    assert m["recall"] > 0.8 and m["precision"] > 0.8
    assert m["tp"] + m["fp"] + m["fn"] + m["tn"] == N - TRAIN


def test_truncating_the_log_does_not_change_earlier_rows(tmp_path: Path) -> None:
    log = read_sensor_log(make_log(tmp_path), label_columns=["anomaly", "changepoint"])
    full = run_backtest(log, train_rows=TRAIN)
    for k in (TRAIN - 1, TRAIN + 1, 451, 605, 650):
        part = run_backtest(log.head(k), train_rows=TRAIN)
        np.testing.assert_array_equal(part.score, full.score[:k])
        np.testing.assert_array_equal(part.probability, full.probability[:k])
        np.testing.assert_array_equal(part.anomaly, full.anomaly[:k])
        a, b = tmp_path / "a.csv", tmp_path / "b.csv"
        write_scores_csv(a, part)
        write_scores_csv(b, full)
        assert read_out(a) == read_out(b)[: k + 1]


def test_backtest_uses_the_same_monitor_as_the_live_path(tmp_path: Path) -> None:
    log = read_sensor_log(make_log(tmp_path, nan_row=None), label_columns=["anomaly"])
    result = run_backtest(log, train_rows=TRAIN, config=MonitorConfig(min_duration=5))
    live = AssetMonitor("x", MonitorConfig(baseline_rows=TRAIN, min_duration=5), log.sensors)
    verdicts = [
        v
        for t, row in zip(log.timestamps_ns.tolist(), log.values, strict=True)
        for v in live.feed(t, dict(zip(log.sensors, row.tolist(), strict=True)))
    ]
    assert [v.anomaly for v in verdicts] == result.anomaly.tolist()
    assert [v.probability for v in verdicts] == result.probability.tolist()


def test_the_live_config_is_accepted_with_train_rows_as_its_baseline(tmp_path: Path) -> None:
    log = read_sensor_log(make_log(tmp_path), label_columns=["anomaly", "changepoint"])
    live_config = MonitorConfig(baseline_rows=50, enter=0.99, exit=0.95, min_duration=3, top_k=3)
    live_config = dataclasses.replace(live_config, max_staleness_ns=30_000_000_000)
    result = run_backtest(log, train_rows=TRAIN, config=live_config)
    assert not result.anomaly[:TRAIN].any() and np.all(result.score[:TRAIN] == 0)  # train_rows wins
    assert (result.status[:TRAIN] == WARMING_UP).all() and result.status[TRAIN] != WARMING_UP
    with pytest.raises(TypeError, match="enterr"):
        MonitorConfig(enterr=0.9)  # type: ignore[call-arg]


def test_pointwise_metrics_or_of_label_columns() -> None:
    anomaly = np.array([0, 1, 1, 0, 1, 0, 1], dtype=bool)
    labels = {
        "a": np.array([1, 1, 0, 0, 0, 0, 0], dtype=float),
        "b": np.array([0, 0, 0, 0, 1, np.nan, 0], dtype=float),
    }
    m = pointwise_metrics(anomaly, labels, start=1)
    # From row 1: truth = [1,0,0,1,0,0] (OR; NaN = 0), pred = [1,1,0,1,0,1]
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 2, 0, 2)
    assert m["precision"] == 0.5 and m["recall"] == 1.0 and m["f1"] == pytest.approx(2 / 3)
    empty = pointwise_metrics(np.zeros(3, dtype=bool), np.zeros(3))
    assert empty["precision"] == 0.0 and empty["f1"] == 0.0 and not math.isnan(empty["recall"])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("time,a,b\n", "0 of the log's 0 rows have a number in every sensor column; the baseline needs 300"),
        (
            "time,a,b\n" + "".join(f"{1772352000 + i},{i % 7},x\n" for i in range(400)),
            "400 rows have a number in every sensor column; the baseline needs 300 (--train-rows); "
            "these columns hold no usable number: b",
        ),
        (
            "time,a\n" + "".join(f"{1772352000 + 400 - i},{i % 7}\n" for i in range(400)),
            "399 of those are stamped before an earlier row and were skipped (sort the log by time)",
        ),
    ],
)
def test_a_backtest_that_learns_no_baseline_says_why(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "log.csv"
    path.write_text(body)
    with pytest.raises(ValueError) as err:
        backtest_main(path, tmp_path / "out.csv", train_rows=300)
    assert expected in str(err.value)


def test_a_backtest_whose_model_cannot_learn_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no baseline could be learned \(variance must be in \(0, 1\], got 5\)"):
        config = MonitorConfig(detector_params={"variance": 5})
        backtest_main(make_log(tmp_path), tmp_path / "out.csv", train_rows=TRAIN, config=config)


def test_scoring_in_chunks_changes_nothing_and_reports_each_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = read_sensor_log(make_log(tmp_path), label_columns=["anomaly"])
    whole = run_backtest(log, train_rows=TRAIN, explain=True)
    assert whole.explanations  # the log's fault is explained: offsets of chunked rows are checked below
    monkeypatch.setattr(backtest_module, "CHUNK_ROWS", 97)
    steps: list[tuple[int, int]] = []
    chunked = run_backtest(log, train_rows=TRAIN, explain=True, progress=lambda n, total: steps.append((n, total)))
    for name in ("timestamps_ns", "score", "probability", "anomaly", "status"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))
    assert chunked.explanations == whole.explanations
    assert sum(n for n, _ in steps) == len(log) and {total for _, total in steps} == {len(log)}
    assert len(steps) == math.ceil(len(log) / 97)
