"""Operating states: ``running_when`` and ``settle_s`` (detector.running, detector.running_rule)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector.config import MonitorConfig
from detector.monitor import AssetMonitor
from detector.running_rule import RunningRule
from plantwatch.settings import ConfigError, load_settings

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
