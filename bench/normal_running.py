"""False alerts on normal running: alerts per asset-week of the default configuration, no fault anywhere.

    python bench/normal_running.py [--config FILE] [--days N] [--seeds 1-18] [--only NAME] [--baseline-hours H]
                                   [--baseline-loads 0.55,0.75,0.95] [--json OUT]

Every scenario is run through ``plantwatch.offline.backtest.run_backtest`` (the code behind the
CLI's ``backtest`` command, the same monitor the live service runs) with the detector settings of
the embedded default configuration (or the ``detector`` section of ``--config FILE``), a one-hour
baseline (3,600 rows at 1 Hz; ``--baseline-hours`` for another length: the generated scenarios then
run that much longer, so the scored days stay the same) and everything after it scored. A baseline
that saw a sensor move one way only goes on for up to ``baseline_extensions`` more hours, as in the
live service; the alerts and days are then counted from where it was learned, and the line says how
long it took. An *alert* is an alarm onset, each 0→1 of the ``anomaly`` flag: what an operator is
paged for. No row of these data is a fault, so every alert is false; alerts per asset-week = onsets /
scored days x 7.

With several seeds each scenario also gets one pooled line: every seed is another asset, and a
shift is paged by all of them, so the figure to hold against the target is the pooled rate (all
alerts over all asset-weeks), given with its 90 % Poisson interval, and how many of the alerts came
in each run's first scored day (before recalibration has seen many live rows) and the rate after it.
One seed's count is a Poisson draw: at the target of 1 a week, 5 or more alerts in 14 days come one
seed in twenty.

Scenarios (generated with fixed seeds; ``--seeds`` runs each generated one once per seed):

1. ``independent``: 8 independent Gaussian sensors, 14 days scored.
2. ``operating_points``: 8 autocorrelated sensors (AR(1), phi 0.9-0.99) of a pump whose load switches
   between three operating points (all three run in the baseline hour, 20 minutes each, in the order
   ``--baseline-loads`` gives: by default rising, so the baseline never sees the load fall),
   temperatures that follow the load through a 10-minute lag and a daily ambient cycle of +-3 C;
   7 days scored.
3. ``stop_start``: the same pump, stopped for 20-90 minutes every 3-9 hours, with a start-up
   transient (inrush current, pressure overshoot); the baseline hour runs without a stop; 7 days.
   The motor draws no current once it is switched off, while the pump coasts down for ~20 seconds.
   Run three times, as the asset ``pump-3`` of the settings: without operating states, with the rule
   a plant engineer would write for it (``detector.assets.pump-3.running_when: "current > 1"``: the
   motor draws current), and with that rule and ``settle_s: 180`` (its start-up ramp lasts 2 minutes
   and the speed follows it through a 20-second lag).
4. ``skab_anomaly_free``: SKAB's 2.8-hour normal recording (``anomaly-free/anomaly-free.csv``) after
   its first hour.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detector.alarm import alarm_onsets
from detector.config import MonitorConfig
from detector.monitor import NOT_RUNNING, SCORED, AssetMonitor
from ingest.logfile import SensorLog, read_sensor_log
from plantwatch.offline.backtest import run_backtest
from plantwatch.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets"
HOUR = 3600
DAY = 24 * HOUR
BASELINE_ROWS = HOUR  # 1 Hz
START_NS = 1_767_571_200 * 10**9  # 2026-01-05 00:00 UTC, a Monday
PUMP_SENSORS = ("flow", "pressure", "current", "speed", "vibration", "motor_temp", "fluid_temp", "bearing_temp")
LOADS = (0.55, 0.75, 0.95)  # the three operating points, as a fraction of full load


# The asset the pump that stops and starts is, and its detector.assets overrides, run one after another.
STOP_START_ASSET = "pump-3"
STOP_START_RULES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("", {}),
    (" +rule", {"running_when": "current > 1"}),
    (" +rule+settle", {"running_when": "current > 1", "settle_s": 180}),
)


@dataclass(frozen=True)
class Scenario:
    name: str
    make: Callable[[int, int, int], SensorLog]  # (seed, scored days, baseline rows) -> log
    days: int  # scored days (generated scenarios)
    generated: bool = True
    # (label, detector.assets.<STOP_START_ASSET> overrides) of each run; one run of the top level by default
    variants: tuple[tuple[str, dict[str, Any]], ...] = (("", {}),)


def _log(values: np.ndarray, sensors: Sequence[str]) -> SensorLog:
    ts = START_NS + np.arange(values.shape[0], dtype=np.int64) * 10**9
    return SensorLog(ts, [], tuple(sensors), values)


def independent(seed: int, days: int, baseline_rows: int = BASELINE_ROWS) -> SensorLog:
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, size=(baseline_rows + days * DAY, 8))
    return _log(values, [f"s{j}" for j in range(8)])


def ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """AR(1) noise with stationary standard deviation ``sd``."""
    shocks = rng.normal(0.0, sd * np.sqrt(1.0 - phi * phi), size=n)
    out = np.empty(n)
    level = rng.normal(0.0, sd)
    for i, shock in enumerate(shocks.tolist()):  # a plain loop: scipy.signal is not a dependency
        level = phi * level + shock
        out[i] = level
    return out


def lag(x: np.ndarray, tau_s: float, start: float) -> np.ndarray:
    """First-order lag of ``x`` (1 s steps) with time constant ``tau_s``."""
    a = 1.0 / tau_s
    out = np.empty_like(x)
    level = start
    for i, value in enumerate(x.tolist()):
        level += a * (value - level)
        out[i] = level
    return out


def load_profile(
    rng: np.random.Generator, n: int, stops: bool, first_hour: Sequence[float] = LOADS
) -> tuple[np.ndarray, np.ndarray]:
    """Load (fraction of full) and running flag per second. The first hour runs the operating points
    ``first_hour`` (the three, 20 minutes each); then dwell times of 20 min to 3 h at a random other
    of the three, 2-minute ramps between them; with ``stops``, a stop of 20-90 minutes every 3-9 hours."""
    load = np.empty(n)
    running = np.ones(n, dtype=bool)
    t, current = 0, first_hour[0]
    segments = [(HOUR // len(first_hour), point) for point in first_hour]
    next_stop = HOUR + int(rng.integers(3 * HOUR, 9 * HOUR)) if stops else n
    while t < n:
        if segments:
            dwell, target = segments.pop(0)
        else:
            dwell = int(rng.integers(20 * 60, 3 * HOUR))
            target = float(rng.choice([v for v in LOADS if v != current]))
        ramp = 120 if t > 0 else 0
        ramping = np.linspace(current, target, ramp, endpoint=False)
        seg = np.concatenate([ramping, np.full(max(dwell - ramp, 0), target)])
        load[t : t + seg.size] = seg[: n - t]
        t += seg.size
        current = target
        if t >= next_stop and t < n:
            off = int(rng.integers(20 * 60, 90 * 60))
            load[t : t + off] = 0.0
            running[t : t + off] = False
            t += off
            current = 0.0
            next_stop = t + int(rng.integers(3 * HOUR, 9 * HOUR))
    return load, running


Profile = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def pump(
    seed: int,
    days: int,
    stops: bool,
    first_hour: Sequence[float] = LOADS,
    baseline_rows: int = BASELINE_ROWS,
    profile: Profile | None = None,
) -> SensorLog:
    """The pump's sensors over ``load_profile`` (or ``profile(rng, rows)``: load and running flag)."""
    rng = np.random.default_rng(seed)
    n = baseline_rows + days * DAY
    load, running = load_profile(rng, n, stops, first_hour) if profile is None else profile(rng, n)
    seconds = np.arange(n)
    ambient = 20.0 + 3.0 * np.sin(2 * np.pi * (seconds / DAY - 0.3))
    # speed follows load through a 20 s lag: starts and stops take time
    speed = lag(1450.0 * load, 20.0, 1450.0 * load[0])
    started = np.zeros(n)
    starts = np.flatnonzero(np.diff(running.astype(np.int8)) == 1) + 1
    for s in starts.tolist():  # start-up transient: inrush current and pressure overshoot decaying over ~30 s
        k = min(n - s, 180)
        started[s : s + k] = np.exp(-np.arange(k) / 30.0)
    rel = speed / 1450.0
    phis = rng.uniform(0.9, 0.99, size=len(PUMP_SENSORS))
    noise = {name: ar1(rng, n, float(phi), 1.0) for name, phi in zip(PUMP_SENSORS, phis, strict=True)}
    heat = lag(60.0 * rel**2, 600.0, 60.0 * rel[0] ** 2)
    columns = {
        "flow": 120.0 * rel + 0.8 * noise["flow"],
        "pressure": 3.0 * rel**2 + 0.4 * started + 0.03 * noise["pressure"],
        # a switched-off motor draws no current, however fast the pump still turns
        "current": np.where(running, 2.0 + 10.0 * rel**3 + 6.0 * started, 0.0) + 0.1 * noise["current"],
        "speed": speed + 3.0 * noise["speed"],
        "vibration": 0.05 + 0.4 * rel**2 + 0.01 * noise["vibration"],
        "motor_temp": ambient + heat + 0.2 * noise["motor_temp"],
        "fluid_temp": ambient + 0.3 * heat + 0.1 * noise["fluid_temp"],
        "bearing_temp": ambient + 0.6 * heat + 0.15 * noise["bearing_temp"],
    }
    return _log(np.column_stack([columns[name] for name in PUMP_SENSORS]), PUMP_SENSORS)


def skab_anomaly_free(data: Path) -> SensorLog:
    return read_sensor_log(data / "skab" / "anomaly-free" / "anomaly-free.csv")


def learn(monitor: AssetMonitor, log: SensorLog) -> int:
    """Feed ``log``'s rows to ``monitor`` one baseline length at a time until it has learned (its
    baseline goes on where it saw a sensor move one way only: ``detector.baseline_extensions``);
    the row its scoring starts at. Rows are fed a baseline length at a time, so rows after the
    baseline may be fed too where stopped or skipped rows lay in it."""
    step, end = monitor.config.baseline_rows, 0
    while not monitor.is_warm and end < len(log):
        monitor.process_arrays(log.timestamps_ns[end : end + step], log.values[end : end + step])
        end += step
    if not monitor.is_warm:
        raise RuntimeError(f"no baseline learned in the log's {len(log)} rows")
    return end


def run_one(name: str, log: SensorLog, config: MonitorConfig, baseline_rows: int = BASELINE_ROWS) -> dict[str, Any]:
    started = time.perf_counter()
    result = run_backtest(log, train_rows=baseline_rows, config=config)
    seconds = time.perf_counter() - started
    scored = result.status == SCORED
    not_running = np.isin(result.status, NOT_RUNNING)
    # Counted from where the baseline was learned: later than baseline_rows where it was extended
    # (detector.baseline_extensions), and a rate over less time scored.
    learned_at = max(baseline_rows, result.baseline_end)
    flags = result.anomaly[learned_at:]
    onset_rows = alarm_onsets(flags)
    onsets = int(onset_rows.size)
    after_s = (log.timestamps_ns[learned_at + onset_rows] - log.timestamps_ns[learned_at]) / 1e9
    span_s = (int(log.timestamps_ns[-1]) - int(log.timestamps_ns[learned_at])) / 1e9 + 1.0
    weeks = span_s / (7 * DAY)
    return {
        "scenario": name,
        "rows": len(log),
        "baseline_hours": (int(log.timestamps_ns[learned_at]) - int(log.timestamps_ns[0])) / 1e9 / HOUR,
        "baseline_extensions": result.baseline_extensions,
        "scored_rows": int(scored.sum()),
        "scored_days": span_s / DAY,
        "alerts": onsets,
        "alerts_per_week": onsets / weeks,
        "alerts_first_day": int((after_s < DAY).sum()),  # before the live memory holds many rows
        "flagged_share": float(flags.mean()) if flags.size else 0.0,
        "not_running_share": float(not_running[learned_at:].mean()) if flags.size else 0.0,
        "rows_per_s": len(log) / seconds,
        "advice": result.baseline_advice,
        "alarm_enter": result.alarm_enter,
    }


def parse_seeds(text: str) -> list[int]:
    """``"1,2,5-7"`` -> ``[1, 2, 5, 6, 7]``."""
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds.extend(range(int(first), int(last or first) + 1))
    return seeds


def poisson_interval(count: int, level: float = 0.90) -> tuple[float, float]:
    """The exact (Garwood) interval of a Poisson mean from one ``count``, by bisection on the CDF
    (no scipy): the lower end has ``P(X >= count) = (1 - level) / 2``, the upper ``P(X <= count)`` the same."""
    tail = (1.0 - level) / 2.0

    def cdf(k: int, mean: float) -> float:  # P(X <= k), each term from its logarithm: exp(-mean) underflows past 745
        if mean <= 0.0:
            return 1.0
        log_mean = math.log(mean)
        return sum(math.exp(i * log_mean - mean - math.lgamma(i + 1)) for i in range(k + 1))

    def solve(target: Callable[[float], float]) -> float:
        lo, hi = 0.0, 10.0 * count + 10.0
        for _ in range(100):
            mid = (lo + hi) / 2.0
            lo, hi = (mid, hi) if target(mid) > 0 else (lo, mid)
        return (lo + hi) / 2.0

    lower = 0.0 if count == 0 else solve(lambda m: tail - (1.0 - cdf(count - 1, m)))
    upper = solve(lambda m: cdf(count, m) - tail)
    return lower, upper


def line(result: dict[str, Any], stopped: bool) -> str:
    """One run's line: its alerts, the share of rows flagged and the level it ended at."""
    off = f"; {100 * result['not_running_share']:4.1f} % stopped or settling" if stopped else ""
    extended = result["baseline_extensions"]
    if extended:
        off += f"; baseline {result['baseline_hours']:.1f} h ({extended} extension{'s' if extended > 1 else ''})"
    return (
        f"{result['scenario']:24s} seed {result['seed']}: {result['alerts']:5d} alerts in"
        f" {result['scored_days']:6.2f} days = {result['alerts_per_week']:8.1f} per asset-week;"
        f" {100 * result['flagged_share']:5.2f} % of rows flagged{off}; enters at p >= {result['alarm_enter']:.7f}"
        f" ({result['rows_per_s']:,.0f} rows/s)"
    )


def pooled(results: Sequence[dict[str, Any]]) -> str:
    """One line for several seeds of one scenario: all alerts over all asset-weeks, with its interval."""
    alerts = sum(r["alerts"] for r in results)
    weeks = sum(r["scored_days"] for r in results) / 7.0
    lower, upper = poisson_interval(alerts)
    first = sum(r["alerts_first_day"] for r in results)
    later_weeks = sum(max(r["scored_days"] - 1.0, 0.0) for r in results) / 7.0
    later = f"; after each first day {(alerts - first) / later_weeks:.2f}" if later_weeks > 0 else ""
    extended = [r["baseline_hours"] for r in results if r["baseline_extensions"]]
    if extended:
        later += f"; {len(extended)} baselines extended, to {min(extended):.1f}-{max(extended):.1f} h"
    return (
        f"{results[0]['scenario']:24s} {len(results)} seeds: {alerts:5d} alerts in {weeks:6.1f} asset-weeks"
        f" = {alerts / weeks:8.2f} per asset-week (90 % interval {lower / weeks:.2f}-{upper / weeks:.2f}),"
        f" {first} of them in the first day{later}"
    )


def asset_config(path: str | None, overrides: dict[str, Any]) -> MonitorConfig:
    """The detector settings of ``--config`` (the embedded default without), with ``overrides`` as
    ``detector.assets.<STOP_START_ASSET>`` keys, for that asset: as the live service builds them."""
    keys = {f"detector__assets__{STOP_START_ASSET}__{key}": value for key, value in overrides.items()}
    return load_settings(path, storage__kind="sqlite", **keys).detector.as_config(STOP_START_ASSET)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"datasets directory (default {DEFAULT_DATA})")
    parser.add_argument("--config", help="YAML config whose detector section to use (default: the live default)")
    parser.add_argument("--days", type=int, help="scored days of every generated scenario (default: 14, 7, 7)")
    parser.add_argument("--seeds", default="1", help="seeds of the generated scenarios, e.g. 1,2 or 1-18 (default 1)")
    parser.add_argument("--only", help="run only this scenario")
    parser.add_argument("--baseline-hours", type=float, default=1.0, help="baseline length in hours (default 1)")
    parser.add_argument(
        "--baseline-loads",
        default=",".join(str(v) for v in LOADS),
        help="operating points of the pump's first hour, in order (default: rising, 0.55,0.75,0.95)",
    )
    parser.add_argument("--json", type=Path, help="write every number to this JSON file")
    args = parser.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    first_hour = tuple(float(v) for v in args.baseline_loads.split(","))
    baseline_rows = round(args.baseline_hours * HOUR)
    scenarios = [
        Scenario("independent", independent, 14),
        Scenario(
            "operating_points",
            lambda seed, days, rows: pump(seed, days, stops=False, first_hour=first_hour, baseline_rows=rows),
            7,
        ),
        Scenario(
            "stop_start",
            lambda seed, days, rows: pump(seed, days, stops=True, first_hour=first_hour, baseline_rows=rows),
            7,
            variants=STOP_START_RULES,
        ),
        Scenario("skab_anomaly_free", lambda seed, days, rows: skab_anomaly_free(args.data), 0, generated=False),
    ]
    results = []
    for scenario in scenarios:
        if args.only and scenario.name != args.only:
            continue
        for seed in seeds if scenario.generated else [0]:
            log = scenario.make(seed, args.days or scenario.days, baseline_rows)
            if len(log) <= baseline_rows:
                print(f"{scenario.name}: a baseline of {baseline_rows} rows leaves none of its {len(log)} rows scored")
                continue
            for label, overrides in scenario.variants:
                name = scenario.name + label
                config = asset_config(args.config, overrides)
                result = run_one(name, log, config, baseline_rows) | {"seed": seed, "baseline_rows": baseline_rows}
                results.append(result)
                print(line(result, stopped=bool(overrides)), flush=True)
    for name in dict.fromkeys(r["scenario"] for r in results):
        group = [r for r in results if r["scenario"] == name]
        if len(group) > 1:
            print(pooled(group))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
