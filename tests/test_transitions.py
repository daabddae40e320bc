"""Which sensors a baseline saw move one way only (detector/transitions.py), and the advice it gives."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from detector.config import MonitorConfig
from detector.events import BaselineExtended, BaselineLearned
from detector.monitor import SCORED, WARMING_UP, AssetMonitor
from detector.transitions import one_way_moves
from ingest.logfile import SensorLog
from plantwatch.offline.backtest import run_backtest
from plantwatch.service.alert_log import log_baseline_extended
from plantwatch.service.asset_view import asset_view


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    out, level = np.empty(n), 0.0
    for i, shock in enumerate(rng.normal(0.0, np.sqrt(1 - phi * phi), n).tolist()):
        level = phi * level + shock
        out[i] = level
    return out


def _load_steps(n: int, loads: tuple[float, ...]) -> np.ndarray:
    """A load held at each of ``loads`` in turn, with 2-minute ramps between them (1 Hz)."""
    load = np.repeat(loads, n // len(loads)).astype(float)
    for k in range(1, len(loads)):
        at = k * (n // len(loads))
        load[at : at + 120] = np.linspace(loads[k - 1], loads[k], 120)
    return load


def _pump(loads: tuple[float, ...], seed: int = 1, n: int = 3600) -> tuple[np.ndarray, np.ndarray]:
    """Flow following the load, a temperature lagging it by 10 minutes, and a sensor that follows neither."""
    rng = np.random.default_rng(seed)
    load = _load_steps(n, loads)
    heat = np.empty(n)
    level = 60.0 * load[0] ** 2
    for i, value in enumerate((60.0 * load**2).tolist()):
        level += (value - level) / 600.0
        heat[i] = level
    X = np.column_stack(
        [120.0 * load + 0.8 * _ar1(rng, n, 0.95), 20.0 + heat + 0.2 * _ar1(rng, n, 0.99), rng.normal(size=n)]
    )
    return np.arange(n, dtype=np.int64) * 10**9, X


def test_a_baseline_whose_load_only_rose_names_what_rose_and_noise_names_nothing() -> None:
    ts, X = _pump((0.55, 0.75, 0.95))
    assert one_way_moves(ts, X, 15.0).tolist() == [1, 1, 0]  # flow and the lagging temperature; not the noise
    ts, X = _pump((0.95, 0.55, 0.75))  # a fall and a rise: the flow moved both ways
    assert one_way_moves(ts, X, 15.0)[0] == 0
    ts, X = _pump((0.95, 0.55))
    assert one_way_moves(ts, X, 15.0).tolist()[:2] == [-1, -1]
    rng = np.random.default_rng(2)
    wandering = np.column_stack([_ar1(rng, 3600, 0.99) for _ in range(4)])  # noise that wanders, no moves
    assert not one_way_moves(ts, wandering, 15.0).any()
    assert not one_way_moves(ts[:300], X[:300], 15.0).any()  # five blocks: too few to judge


def _loaded(loads: tuple[float, ...], seed: int = 3, n: int = 3600) -> tuple[np.ndarray, np.ndarray]:
    """Flow, pressure and current, which all follow the load (so none drifts on its own), and noise."""
    rng = np.random.default_rng(seed)
    load = _load_steps(n, loads)
    X = np.column_stack(
        [
            120.0 * load + 0.8 * rng.normal(size=n),
            3.0 * load**2 + 0.03 * rng.normal(size=n),
            2.0 + 10.0 * load**3 + 0.1 * rng.normal(size=n),
            rng.normal(size=n),
        ]
    )
    return np.arange(n, dtype=np.int64) * 10**9, X


SENSORS = ("flow", "pressure", "current", "other")


def test_the_monitor_advises_a_baseline_that_saw_one_way_and_keeps_it_across_a_restart() -> None:
    config = MonitorConfig(baseline_rows=3600, baseline_extensions=0)  # learned at once, one way or not
    monitor = AssetMonitor("pump-7", config, SENSORS)
    monitor.process_arrays(*_loaded((0.55, 0.75, 0.95)))
    assert monitor.drifting_sensors == ()
    advice, one_way = monitor.baseline_advice(), monitor.one_way_advice()
    assert one_way is not None and one_way.startswith("baseline of pump-7: flow, pressure, current only rose while")
    assert advice is not None and one_way.removeprefix("baseline of pump-7: ") in advice
    restored = AssetMonitor("pump-7", config, SENSORS).set_state(monitor.get_state())
    assert restored.one_way_advice() == one_way
    older = {key: value for key, value in monitor.get_state().items() if key != "one_way"}
    assert AssetMonitor("pump-7", config, SENSORS).set_state(older).one_way_advice() is None
    both_ways = AssetMonitor("pump-7", config, SENSORS)
    both_ways.process_arrays(*_loaded((0.75, 0.55, 0.95)))
    assert both_ways.model_ is not None and both_ways.one_way_advice() is None


def _readings(ts: np.ndarray, X: np.ndarray) -> list[tuple[int, dict[str, float]]]:
    return [(t, dict(zip(SENSORS, row, strict=True))) for t, row in zip(ts.tolist(), X.tolist(), strict=True)]


def test_a_baseline_that_saw_one_way_goes_on_until_it_sees_the_way_back() -> None:
    # 600 rows at each load: the first 1,200 rows only rise, the next 1,200 rise and fall.
    ts, X = _loaded((0.55, 0.75, 0.95, 0.55, 0.75, 0.95))
    monitor = AssetMonitor("pump-7", MonitorConfig(baseline_rows=1200), SENSORS)
    first = monitor.observe(_readings(ts[:1500], X[:1500]))
    extended = [e for e in first.events if isinstance(e, BaselineExtended)]
    assert [(e.rose, e.fell, e.rows, e.size, e.extension, e.extensions) for e in extended] == [
        (("flow", "pressure", "current"), (), 1200, 2400, 1, 3)
    ]
    assert monitor.model_ is None and [v.warming_up for v in first.verdicts] == [True] * 1500
    view = asset_view(monitor, None)
    assert (view["state"], view["baseline_rows"], view["baseline_rows_seen"]) == ("learning", 2400, 1500)
    # A restart in the middle of the extension goes on with it, and learns where the first would have.
    restored = AssetMonitor("pump-7", MonitorConfig(baseline_rows=1200), SENSORS).set_state(monitor.get_state())
    for m in (monitor, restored):
        rest = m.observe(_readings(ts[1500:], X[1500:]))
        assert [e for e in rest.events if isinstance(e, BaselineExtended)] == []
        assert any(isinstance(e, BaselineLearned) for e in rest.events)
        assert sum(v.warming_up for v in rest.verdicts) == 900  # learned at row 2,400, after one extension
        assert m.baseline_extensions_ == 1 and m.one_way_advice() is None
    assert asset_view(monitor, None)["baseline_rows"] == 2400
    again = AssetMonitor("pump-7", MonitorConfig(baseline_rows=1200), SENSORS).set_state(monitor.get_state())
    assert asset_view(again, None)["baseline_rows"] == 2400  # saved with the model


def test_a_restart_with_fewer_extensions_allowed_learns_at_once_from_its_first_baseline_rows() -> None:
    ts, X = _loaded((0.55, 0.75, 0.95, 0.55, 0.75, 0.95))
    monitor = AssetMonitor("pump-7", MonitorConfig(baseline_rows=1200), SENSORS)
    monitor.process_arrays(ts[:1500], X[:1500])  # went on to 2,400 rows; 1,500 held at the save
    state = monitor.get_state()
    config = MonitorConfig(baseline_rows=1200, baseline_extensions=0)
    never = AssetMonitor("pump-7", config, SENSORS).set_state(state)
    out = never.process_arrays(ts[1500:], X[1500:])
    # baseline_extensions: 0 learns at baseline_rows whatever the rows show: the first 1,200 it holds,
    # the model a monitor with that setting from the start learns (the 300 after them are not judged)
    assert never.model_ is not None and never.baseline_extensions_ == 0
    assert (out.status == SCORED).all() and asset_view(never, None)["baseline_rows"] == 1200
    fresh = AssetMonitor("pump-7", config, SENSORS)
    fresh.process_arrays(ts[:1200], X[:1200])
    assert fresh.model_ is not None
    # the same rows learned, the same cross-fitted scores
    np.testing.assert_array_equal(never.model_.calibrator.baseline_scores_, fresh.model_.calibrator.baseline_scores_)


def test_a_one_way_check_that_fails_is_reported_as_the_baseline_failing_not_a_stuck_asset() -> None:
    ts, X = _loaded((0.55, 0.75, 0.95, 0.55, 0.75, 0.95))
    # A feature window no clock can count (only reachable from Python: the settings refuse it).
    monitor = AssetMonitor("pump-7", MonitorConfig(baseline_rows=1200, window_s=1e10), SENSORS)
    first = monitor.process_arrays(ts[:1300], X[:1300])
    assert monitor.baseline_failures_ == 1 and monitor.baseline_.count == 100  # reported; the next rows begin
    assert (first.status == WARMING_UP).all()
    monitor.process_arrays(ts[1300:2500], X[1300:2500])
    assert monitor.baseline_failures_ == 2 and monitor.baseline_.count == 100  # 100 + 1,200 rows: one more try


def test_extensions_stop_at_baseline_extensions_and_the_advice_stays() -> None:
    ts, X = _loaded((0.55, 0.65, 0.75, 0.85, 0.95, 1.05))  # every step a rise
    config = MonitorConfig(baseline_rows=1200, baseline_extensions=1)
    whole = AssetMonitor("pump-7", config, SENSORS)
    out = whole.process_arrays(ts, X)
    assert (out.status == WARMING_UP).sum() == 2400 and (out.status[2400:] == SCORED).all()
    assert whole.baseline_extensions_ == 1 and whole.one_way_advice() is not None
    # Any split of the rows into batches learns at the same row, the same model.
    split = AssetMonitor("pump-7", config, SENSORS)
    parts = [split.process_arrays(ts[i : i + 97], X[i : i + 97]) for i in range(0, ts.size, 97)]
    np.testing.assert_array_equal(np.concatenate([p.status for p in parts]), out.status)
    np.testing.assert_allclose(np.concatenate([p.score for p in parts]), out.score, equal_nan=True)
    never = AssetMonitor("pump-7", MonitorConfig(baseline_rows=1200, baseline_extensions=0), SENSORS)
    assert (never.process_arrays(ts, X).status == WARMING_UP).sum() == 1200


def test_a_backtest_says_how_often_its_baseline_went_on() -> None:
    ts, X = _loaded((0.55, 0.75, 0.95, 0.55, 0.75, 0.95))
    log = SensorLog(ts, [str(t) for t in ts.tolist()], SENSORS, X)
    result = run_backtest(log, train_rows=1200)
    assert result.baseline_extensions == 1 and (result.status == WARMING_UP).sum() == 2400
    assert run_backtest(log, train_rows=1200, config=MonitorConfig(baseline_extensions=0)).baseline_extensions == 0


def test_the_service_logs_each_extension_with_the_sensors_and_the_row_it_now_learns_at(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="plantwatch.service.alert_log")
    log_baseline_extended("pump-7", BaselineExtended(("flow", "current"), ("bearing_temp",), 3600, 7200, 1, 3))
    assert caplog.messages == [
        "baseline of pump-7: flow, current only rose; bearing_temp only fell in its 3600 rows; learning until "
        "row 7200 to see the way back (extension 1 of 3, detector.baseline_extensions)"
    ]


def test_a_backtest_picture_marks_where_the_baseline_that_went_on_ended() -> None:
    from plantwatch.offline.backtest import baseline_words
    from plantwatch.offline.pictures import draw

    ts, X = _loaded((0.55, 0.75, 0.95, 0.55, 0.75, 0.95))
    log = SensorLog(ts, [str(t) for t in ts.tolist()], SENSORS, X)
    result = run_backtest(log, train_rows=1200)
    assert result.baseline_end == 2400  # not --train-rows: the baseline went on once
    figure = draw(log, result, None, "title")
    lines = {line.get_label(): line for line in figure.axes[-1].get_lines()}
    drawn = lines["anomaly probability"].get_xdata()
    assert len(drawn) == int((result.status == SCORED).sum())  # no baseline rows drawn as probability 0
    assert result.status[2400] == SCORED and lines["end of baseline"].get_xdata()[0] == drawn[0]
    went_on = "2400 baseline rows: --train-rows 1200 went on once, a sensor moved one way only"
    assert baseline_words(1200, 2400, 1) == went_on
    assert baseline_words(1200, 1200, 0) == "1200 baseline rows"


def test_a_backtest_scores_its_labels_from_where_its_baseline_ended(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from plantwatch.cli import main

    ts, X = _loaded((0.55, 0.75, 0.95, 0.55, 0.75, 0.95))
    label = np.zeros(ts.size, dtype=int)
    label[1500:1600] = 1  # inside the baseline, which goes on from 1,200 to 2,400 rows
    stamps = [f"2026-01-01 00:{t // 60:02d}:{t % 60:02d}" for t in (ts // 10**9).tolist()]  # 3,600 s
    lines = ["time,flow,pressure,current,other,anomaly"]
    lines += [
        f"{s},{','.join(f'{v:.6f}' for v in row)},{a}" for s, row, a in zip(stamps, X.tolist(), label, strict=True)
    ]
    log = tmp_path / "pump.csv"
    log.write_text("\n".join(lines) + "\n")
    argv = ["backtest", str(log), "--train-rows", "1200", "--out", str(tmp_path / "s.csv"), "--label-column", "anomaly"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # The 1,200 rows the baseline went on for were not judged: not 100 misses and 1,100 true negatives.
    assert "point-wise after row 2400" in out and "(TP 0, FP 0, FN 0, TN 1200)" in out
    assert "100 labelled rows lay in the baseline after row 1200 (the baseline ran to row 2400)" in out
