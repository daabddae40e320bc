"""Operating states: ``running_when`` and ``settle_s`` (detector.running, detector.running_rule)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from saved_state import through_disk

from alerts.lifecycle import AlertManager
from alerts.store import SqliteAlertStore
from detector.config import MonitorConfig
from detector.events import LeftOut, RunningRuleUnusable
from detector.gate import NEVER
from detector.monitor import SCORED, SETTLING, SKIPPED, STOPPED, WARMING_UP, AssetMonitor
from detector.recalibration import RECALIBRATION_EVERY
from detector.running import OperatingStates, alarm_resets
from detector.running_rule import RunningRule
from detector.types import Verdict
from ingest.messages import Reading
from plantwatch.offline.backtest import backtest_main
from plantwatch.service.detector_stage import DetectorStage
from plantwatch.service.scoring_queue import ScoringQueue
from plantwatch.service.writer import StageHealth
from plantwatch.settings import ConfigError, load_settings
from telemetry.counters import Counters

SEC = 1_000_000_000
SENSORS = ("speed", "flow", "current", "temp")
STOPS = ((700, 900), (1300, 1330), (1700, 2000))  # [first stopped row, first running row again)
RULE = "speed > 100"


def pump(n: int = 2400, stops: tuple[tuple[int, int], ...] = STOPS, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A pump at 1 Hz: running (speed ~1000) except in ``stops`` (speed, flow ~0; current ~2)."""
    rng = np.random.default_rng(seed)
    wave = np.sin(np.arange(n) / 50)
    X = np.column_stack(
        [
            1000 + 20 * wave + rng.normal(0, 3, n),
            50 + wave + rng.normal(0, 0.3, n),
            8 + 0.2 * wave + rng.normal(0, 0.05, n),
            rng.normal(60, 0.2, n),
        ]
    )
    for a, b in stops:
        X[a:b, :3] = np.column_stack([rng.normal(0, 1, b - a), rng.normal(0, 0.1, b - a), rng.normal(2, 0.05, b - a)])
    return (1_700_000_000 + np.arange(n, dtype=np.int64)) * SEC, X


def monitor(**config: Any) -> AssetMonitor:
    values: dict[str, Any] = {"baseline_rows": 300, "running_when": RULE} | config
    return AssetMonitor("pump-7", MonitorConfig(**values), SENSORS)


def _readings(ts: np.ndarray, X: np.ndarray) -> list[tuple[int, dict[str, float]]]:
    return [(int(t), dict(zip(SENSORS, row.tolist(), strict=True))) for t, row in zip(ts, X, strict=True)]


# -- the condition language ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "expected"),
    [(">", [0, 0, 1]), (">=", [0, 1, 1]), ("<", [1, 0, 0]), ("<=", [1, 1, 0]), ("==", [0, 1, 0]), ("!=", [1, 0, 1])],
)
def test_each_operator_compares_the_sensor_with_the_number(op: str, expected: list[int]) -> None:
    running = RunningRule.parse(f"b {op} 2").compile(("a", "b"))(np.array([[9.0, 1.0], [9.0, 2.0], [9.0, 3.0]]))
    assert running.tolist() == [bool(v) for v in expected]


def test_and_binds_tighter_than_or_and_parentheses_group() -> None:
    rows = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    names = ("a", "b", "c")
    plain = RunningRule.parse("a > 0.5 or b > 0.5 AND c > 0.5")  # a or (b and c)
    assert plain.compile(names)(rows).tolist() == [True, False, True, True]
    grouped = RunningRule.parse("(a > 0.5 or b > 0.5) and c > 0.5")
    assert grouped.compile(names)(rows).tolist() == [False, False, True, True]
    assert RunningRule.parse("a>0.5 or b>0.5 and c>0.5") == RunningRule("a>0.5 or b>0.5 and c>0.5", plain.tree)


def test_sensor_names_with_spaces_or_dots_are_quoted_and_numbers_take_any_form() -> None:
    rule = RunningRule.parse('"inlet pressure" >= -1.5e-1 and `pump.current` < 3 or motor-temp.C != .5')
    assert rule.sensors == ("inlet pressure", "pump.current", "motor-temp.C")
    names = ("pump.current", "inlet pressure", "motor-temp.C")
    rows = np.array([[2.0, 0.0, 0.5], [4.0, 0.0, 0.5], [4.0, 0.0, 1.0]])
    assert rule.compile(names)(rows).tolist() == [True, False, True]
    assert rule.missing(("pump.current",)) == ("inlet pressure", "motor-temp.C")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("current", "expected one of > >= < <= == != at column 8, found the end"),
        ("current > ", "expected a finite number at column 11"),
        ("current => 3", "cannot read '=> 3' at column 9"),
        ("current = 3", "cannot read '= 3' at column 9"),
        ("current > 3 and", "expected a sensor name"),
        ("current > 3 speed > 1", "expected 'and', 'or' or the end at column 13, found 'speed'"),
        ("(current > 3", "expected ')' at column 13"),
        ("3 < current", "expected a sensor name (quote a name"),
        ('"" > 3', "expected a sensor name"),
        ("current > 1e999", "expected a finite number"),
        ("current > 3; import os", "cannot read '; import os'"),
    ],
)
def test_a_condition_that_does_not_parse_says_what_and_where(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        RunningRule.parse(text)
    assert message in str(err.value)
    with pytest.raises(ValueError, match=r"^running_when '.*': "):  # the config names its key
        MonitorConfig(running_when=text)


# -- sensors the rule names ------------------------------------------------------------------------


def test_a_rule_naming_an_unknown_sensor_is_refused_when_the_sensors_are_configured() -> None:
    with pytest.raises(ValueError) as err:
        monitor(running_when="speed > 100 and `motor amps` > 3")
    assert str(err.value) == (
        "asset 'pump-7': running_when 'speed > 100 and `motor amps` > 3' names 'motor amps', "
        "not among its sensors (speed, flow, current, temp)"
    )


def test_a_rule_naming_an_unknown_sensor_is_an_event_once_the_sensors_are_discovered(tmp_path: Path) -> None:
    ts, X = pump(n=400, stops=((350, 400),))
    live = AssetMonitor("pump-7", MonitorConfig(baseline_rows=300, running_when="sped > 100"))
    readings = _readings(ts, X)
    first = live.observe(readings[:200]).events
    unusable = [e for e in first if isinstance(e, RunningRuleUnusable)]
    assert (
        len(unusable) == 1
        and unusable[0].missing == ("sped",)
        and "every row counts as running" in (unusable[0].message)
    )
    later = live.observe(readings[200:]).events
    assert not [e for e in later if isinstance(e, RunningRuleUnusable)]  # said once
    assert live.is_warm and live.scored_rows_ > 0  # every row counted as running, stops included
    restored = AssetMonitor("pump-7", MonitorConfig(baseline_rows=300, running_when="sped > 100"))
    restored.set_state(through_disk(live.get_state(), tmp_path))  # a typo does not cost the baseline
    assert restored.is_warm
    again = restored.observe(_readings(ts[-1:] + SEC, X[:1])).events
    assert [e.missing for e in again if isinstance(e, RunningRuleUnusable)] == [("sped",)]


# -- stopped and settling rows ---------------------------------------------------------------------


def test_a_baseline_that_starts_while_stopped_waits_and_learns_running_rows_only() -> None:
    stops = ((0, 150), (250, 400))
    ts, X = pump(n=800, stops=stops)
    m = monitor()
    out = m.process_arrays(ts, X)
    stopped = np.zeros(800, dtype=bool)
    for a, b in stops:
        stopped[a:b] = True
    assert (out.status[stopped] == STOPPED).all()
    warm_up = np.flatnonzero(out.status == WARMING_UP)
    assert warm_up.size == 300 and not stopped[warm_up].any() and warm_up[-1] == 599
    assert np.isnan(out.score[stopped]).all() and not out.anomaly[stopped].any()
    # learned from the running rows alone: the same model as a log without the stops
    running = AssetMonitor("pump-7", MonitorConfig(baseline_rows=300), SENSORS)
    running.process_arrays(ts[~stopped][:300], X[~stopped][:300])
    assert m.model_ is not None and running.model_ is not None
    assert np.array_equal(m.model_.center, running.model_.center)
    assert np.array_equal(m.model_.expected_low, running.model_.expected_low)
    assert m.model_.calibrator.get_state().keys() == running.model_.calibrator.get_state().keys()
    for key, value in m.model_.calibrator.get_state().items():
        assert np.array_equal(np.asarray(value), np.asarray(running.model_.calibrator.get_state()[key]))


def test_stopped_and_settling_rows_are_as_if_absent_but_the_alarm_starts_again() -> None:
    """Fed rows are what a log without the stopped and settling rows holds: same scores, same refill."""
    ts, X = pump()
    settle = 20
    with_rule = monitor(settle_s=settle).process_arrays(ts, X)
    absent = np.zeros(ts.size, dtype=bool)
    for a, b in STOPS:
        absent[a : b + settle] = True
    without = monitor(running_when=None).process_arrays(ts[~absent], X[~absent])
    kept = with_rule.status[~absent]
    assert np.array_equal(with_rule.score[~absent], without.score, equal_nan=True)
    assert np.array_equal(with_rule.probability[~absent], without.probability, equal_nan=True)
    # the window refill after each start is SETTLING here, SKIPPED (a gap) there
    assert np.array_equal(np.where(kept == SETTLING, SKIPPED, kept), without.status)
    for a, b in STOPS:
        assert (with_rule.status[a:b] == STOPPED).all()
        assert (with_rule.status[b : b + settle + 15] == SETTLING).all()  # settle_s, then the 15 s window
        assert with_rule.status[b + settle + 15] == SCORED


def test_stopped_rows_are_not_learned_by_adaptation_or_recalibration() -> None:
    ts, X = pump()
    m = monitor(adapt=True, adapt_every=5000)
    out = m.process_arrays(ts, X)
    assert m.adaptation_ is not None
    assert m.adaptation_.since_refit == int((out.status == SCORED).sum()) == m.scored_rows_
    assert (out.status == STOPPED).sum() == sum(b - a for a, b in STOPS)
    recalibrating = monitor(recalibrate=True)
    out = recalibrating.process_arrays(ts, X)
    recalibration = recalibrating.recalibration_
    assert recalibration is not None
    learned = recalibration.since_refit + recalibrating.recalibrations_ * RECALIBRATION_EVERY * 300
    assert learned == int((out.status == SCORED).sum()) < ts.size - 300


def test_an_alarm_open_when_the_machine_stops_is_cleared() -> None:
    ts, X = pump(n=1400, stops=((1000, 1100),))
    X[900:1000, 3] += 5.0  # the motor runs hot until it is stopped
    X[1010, 3] = np.nan  # a NaN reading while stopped, and one before the stop
    X[950, 3] = np.nan
    m = monitor()
    out = m.process_arrays(ts, X)
    assert out.anomaly[990:1000].all() and out.status[950] == SKIPPED and out.anomaly[950]  # held
    assert not out.anomaly[1000:].any()  # off while stopped (the NaN row too) and after the start
    verdicts = monitor().process(ts, X)
    stopped = [v for v in verdicts if not v.running]
    assert len(stopped) == 99 and all(np.isnan(v.probability) and not v.anomaly for v in stopped)
    # Without the rule, the stop itself keeps the alarm on.
    assert monitor(running_when=None).process_arrays(ts, X).anomaly[1000:1100].all()
    # The state an alarm starts again from, whatever the batches: a stop at the end of one resets it.
    split = monitor()
    split.process_arrays(ts[:1005], X[:1005])
    assert split.alarm_.get_state() == {"active": False, "run_length": 0, "exit_run": 0, "suppress_left": 0}


@pytest.mark.parametrize("config", [{}, {"settle_s": 12, "adapt": True, "adapt_every": 150}])
def test_micro_batches_with_stops_change_nothing(config: dict[str, Any]) -> None:
    ts, X = pump()
    X[600:700, 3] += 5.0  # an alarm that is open when the first stop comes
    whole = monitor(**config).process_arrays(ts, X)
    split = monitor(**config)
    bounds = [0, 1, 299, 300, 301, 699, 700, 701, 905, 1310, 1329, 1331, 1360, 2000, 2400]
    parts = [split.process_arrays(ts[a:b], X[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    for name in ("score", "probability"):
        assert np.array_equal(np.concatenate([getattr(p, name) for p in parts]), getattr(whole, name), equal_nan=True)
    for name in ("anomaly", "status"):
        assert np.array_equal(np.concatenate([getattr(p, name) for p in parts]), getattr(whole, name))
    assert whole.anomaly[650:700].any() and (whole.status == SETTLING).any()


@pytest.mark.parametrize("cut", [800, 905, 1315, 2015])  # stopped, settling, stopped, refilling the window
def test_a_restart_in_the_middle_of_a_stop_or_a_settle_continues_identically(cut: int, tmp_path: Path) -> None:
    ts, X = pump()
    whole = monitor(settle_s=10).process_arrays(ts, X)
    first = monitor(settle_s=10)
    first.process_arrays(ts[:cut], X[:cut])
    state = through_disk(first.get_state(), tmp_path)
    assert state["stopped"] == any(a <= cut - 1 < b for a, b in STOPS)
    second = monitor(settle_s=10).set_state(state)
    rest = second.process_arrays(ts[cut:], X[cut:])
    assert np.array_equal(rest.status, whole.status[cut:])
    assert np.array_equal(rest.probability, whole.probability[cut:], equal_nan=True)
    assert np.array_equal(rest.anomaly, whole.anomaly[cut:])


def test_a_state_saved_before_operating_states_restores_as_running() -> None:
    ts, X = pump()
    first = monitor()
    first.process_arrays(ts[:800], X[:800])
    state = first.get_state()
    assert state["stopped"] is True and state["started_at"] == NEVER
    del state["stopped"], state["started_at"]  # the older layout
    restored = monitor().set_state(state)
    assert not restored.operating.stopped_ and restored.operating.started_at_ == NEVER


def test_the_operating_states_are_not_model_settings() -> None:
    ts, X = pump()
    first = monitor(running_when=None)
    first.process_arrays(ts[:500], X[:500])
    restored = monitor(running_when="current > 3", settle_s=30).set_state(first.get_state())
    assert restored.is_warm  # a changed rule keeps the learned baseline
    assert "running_when" not in MonitorConfig().model_settings()


def test_the_live_path_gives_stopped_verdicts_and_counts_stopped_and_settling_rows() -> None:
    ts, X = pump(n=1000, stops=((700, 900),))
    live = monitor(settle_s=5)
    readings = _readings(ts, X)
    observed = live.observe(readings)
    left = [e for e in observed.events if isinstance(e, LeftOut)]
    verdicts = {v.ts_ns: v for v in observed.verdicts}
    assert len(left) == 1 and left[0].stopped_rows == 200 + 5 + 15 and left[0].skipped_rows == 0
    assert not verdicts[int(ts[750])].running and np.isnan(verdicts[int(ts[750])].score)
    assert int(ts[910]) not in verdicts  # settling: no verdict, as after a gap
    assert verdicts[int(ts[950])].running and np.isfinite(verdicts[int(ts[950])].probability)


# -- settings and the live service -----------------------------------------------------------------


def test_bad_running_when_and_settle_s_in_the_settings_are_named_by_their_keys(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(
        "storage:\n  kind: sqlite\ndetector:\n  running_when: 'speed >'\n  assets:\n"
        "    pump-7: {running_when: 'current => 3', settle_s: -1}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    lines = str(err.value).splitlines()
    assert "  detector.running_when: expected a finite number at column 8, found the end (got 'speed >')" in lines
    assert any(line.startswith("  detector.assets.pump-7.running_when: cannot read '=> 3'") for line in lines)
    assert any(line.startswith("  detector.assets.pump-7.settle_s: Input should be greater") for line in lines)
    with pytest.raises(ValueError, match="settle_s must be >= 0"):
        MonitorConfig(settle_s=-1)


def test_running_when_and_settle_s_are_overridden_per_asset(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(
        "storage:\n  kind: sqlite\ndetector:\n  running_when: 'current > 3'\n  settle_s: 60\n  assets:\n"
        "    pump-7: {running_when: '`shaft speed` > 100 or current > 3'}\n    fan-2: {settle_s: 5}\n"
    )
    detector = load_settings(path).detector
    pump_7, fan_2, other = (detector.as_config(asset) for asset in ("pump-7", "fan-2", "pump-8"))
    assert (pump_7.running_when, pump_7.settle_s) == ("`shaft speed` > 100 or current > 3", 60)
    assert pump_7.running_rule is not None and pump_7.running_rule.sensors == ("shaft speed", "current")
    assert (fan_2.running_when, fan_2.settle_s) == ("current > 3", 5)
    assert (other.running_when, other.settle_s) == ("current > 3", 60)
    # a rule naming the plant's sensors passes the start-up trial, which learns from other sensors
    assert load_settings(None, storage__kind="sqlite").detector.running_when is None


class _Sink:
    def __init__(self) -> None:
        self.verdicts: list[Verdict] = []

    def write_verdicts(self, verdicts: list[Verdict]) -> None:
        self.verdicts += verdicts


def _stage(tmp_path: Path, sink: _Sink, counters: Counters, **config: Any) -> DetectorStage:
    return DetectorStage(
        ScoringQueue(),
        sink=sink,  # type: ignore[arg-type]
        alerts=AlertManager(SqliteAlertStore(tmp_path / "alerts.db"), resolve_after_s=60, counters=counters),
        detector_config=lambda asset: MonitorConfig(**({"baseline_rows": 300} | config)),
        counters=counters,
        health=StageHealth(),
        stop=threading.Event(),
    )


def test_the_service_stores_and_counts_scored_rows_only_and_a_stop_resolves_the_alert(tmp_path: Path) -> None:
    ts, X = pump(n=1400, stops=((1000, 1300),))
    X[900:1000, 3] += 5.0  # hot until it is stopped
    sink, counters = _Sink(), Counters()
    stage = _stage(tmp_path, sink, counters, running_when=RULE, settle_s=5)
    readings = [Reading("pump-7", t, values) for t, values in _readings(ts, X)]
    for start in range(0, 1400, 100):
        stage._process(readings[start : start + 100])
    assert sink.verdicts and all(v.running and np.isfinite(v.probability) for v in sink.verdicts)
    assert counters.get("plantwatch_rows_scored_total") == len(sink.verdicts)
    assert counters.get("plantwatch_rows_stopped_total") == 300 + 5 + 15
    assert counters.get("plantwatch_baseline_rows_total") == 300
    assert counters.get("plantwatch_alerts_opened_total") == 1  # while hot ...
    assert counters.get("plantwatch_alerts_resolved_total") == 1 and stage.alerts.open_alerts() == []  # ... stop


def test_the_service_logs_a_rule_naming_an_unknown_sensor_with_its_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ts, X = pump(n=50, stops=())
    stage = _stage(tmp_path, _Sink(), Counters(), running_when="sped > 100")
    readings = [Reading("pump-7", t, values) for t, values in _readings(ts, X)]
    with caplog.at_level(logging.ERROR, logger="plantwatch.service"):
        stage._process(readings[:25])
        stage._process(readings[25:])
    [line] = [r.getMessage() for r in caplog.records if "running_when" in r.getMessage()]
    assert line.startswith("asset 'pump-7': running_when 'sped > 100' names 'sped', not among its sensors (")
    assert line.endswith("until the rule is fixed (detector.running_when or detector.assets.pump-7.running_when)")


# -- backtest --------------------------------------------------------------------------------------


def test_the_backtest_counts_and_shows_stopped_and_settling_rows(tmp_path: Path) -> None:
    ts, X = pump(n=1000, stops=((100, 200), (700, 900)))
    log = tmp_path / "log.csv"
    lines = ["time," + ",".join(SENSORS)]
    lines += [f"{int(t)}," + ",".join(f"{v:.6f}" for v in row) for t, row in zip(ts, X, strict=True)]
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "scores.csv"
    summary = backtest_main(log, out, 300, config=MonitorConfig(running_when=RULE, settle_s=10))
    # settle_s after both starts; the window refills only after the second: the first is in the baseline
    assert (summary["stopped_rows"], summary["settling_rows"]) == (300, 10 + 10 + 15)
    assert summary["warming_up_rows"] == 300 and summary["settings"]["running_when"] == RULE
    rows = out.read_text().splitlines()
    assert rows[0] == "timestamp,score,probability,anomaly,status"
    assert rows[1 + 150].endswith(",,,0,stopped") and rows[1 + 905].endswith(",,,0,settling")
    assert rows[1 + 205].endswith(",,,0,settling") and rows[1 + 300].endswith(",,,,baseline")
    assert rows[1 + 950].endswith(",scored")


@pytest.mark.parametrize("settle_s", [0.0, 2.5])
@pytest.mark.parametrize("started_at", [NEVER, 1_000 * 10**9])
def test_without_a_rule_the_states_are_those_of_a_rule_always_true(settle_s: float, started_at: int) -> None:
    """The shortcut for assets without running_when gives what a rule true on every row gives."""
    rng = np.random.default_rng(7)
    shortcut = OperatingStates(None, settle_s, started_at=started_at)
    general = OperatingStates(None, settle_s, started_at=started_at)
    general._predicate = lambda X: np.ones(len(X), dtype=bool)  # the general path, true everywhere
    ts = 1_000 * 10**9 + np.cumsum(rng.integers(0, 2 * 10**9, 60))
    X = rng.normal(size=(60, 2))
    for a, b in ((0, 7), (7, 8), (8, 8), (8, 60)):
        rows = np.arange(a, b)
        got, want = shortcut.classify(ts, X, rows), general.classify(ts, X, rows)
        for field in ("stopped", "settling", "started_at"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
        assert (shortcut.stopped_, shortcut.started_at_) == (general.stopped_, general.started_at_)
    before, after = alarm_resets(np.zeros(9, dtype=bool), np.array([1, 4, 8]))  # no stop: no reset
    assert not before.any() and before.shape == (3,) and after is False
