"""What the default configuration can see: the smallest settled shift of each sensor's level the alarm
flags (``detector.detectability``), in the sensor's units and in its noise widths, checked by slow ramps.

    python bench/detectable_shifts.py [--config FILE] [--seed N] [--feedback-days N]

Scenarios of ``bench/normal_running.py`` after their one-hour baseline: independent Gaussian sensors,
the pump at three operating points, SKAB's anomaly-free recording. A noise width is the sensor's
generated noise (independent, pump) or, for SKAB, the standard deviation of consecutive differences
over the baseline divided by sqrt(2).

The check: the baseline plus two hours, where one sensor ramps over 10 minutes to 0.5x or 1.5x the
figure and holds it for 15 minutes; printed is the share of the held rows flagged (from its second
minute on). The figure is for a slow change: a sudden step also moves the rolling spread and is often
flagged at smaller sizes.

With ``--feedback-days N`` the pump runs N days more first, every alert of each hour marked a false
alarm after that hour (``AssetMonitor.learn_false_alarm``, what an operator's feedback calls), and the
figures are printed again: what a shift's marks cost.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

import normal_running as nr  # the generators of the normal-running bench (bench/ is the script's folder)
import numpy as np
from feedback import alert_spans

from detector.config import MonitorConfig
from detector.monitor import AssetMonitor
from ingest.logfile import SensorLog
from plantwatch.offline.backtest import run_backtest

PUMP_NOISE = {
    "flow": 0.8,
    "pressure": 0.03,
    "current": 0.1,
    "speed": 3.0,
    "vibration": 0.01,
    "motor_temp": 0.2,
    "fluid_temp": 0.1,
    "bearing_temp": 0.15,
}
RAMP_S, HOLD_S = 600, 900
CHECKED = {"independent": ("s0",), "operating_points": ("flow", "bearing_temp"), "skab_anomaly_free": ("Pressure",)}


def learned(log: SensorLog, config: MonitorConfig) -> tuple[AssetMonitor, int]:
    """The asset once it has learned its baseline, and the row its scoring starts at (later than
    ``BASELINE_ROWS`` where the baseline went on: ``detector.baseline_extensions``)."""
    monitor = AssetMonitor("bench", dataclasses.replace(config, baseline_rows=nr.BASELINE_ROWS), log.sensors)
    return monitor, nr.learn(monitor, log)


def noise_widths(name: str, log: SensorLog) -> np.ndarray:
    if name == "independent":
        return np.ones(len(log.sensors))
    if name == "operating_points":
        return np.array([PUMP_NOISE[s] for s in log.sensors])
    return np.asarray(np.std(np.diff(log.values[: nr.BASELINE_ROWS], axis=0), axis=0) / np.sqrt(2.0))


def ramp_check(log: SensorLog, config: MonitorConfig, sensor: int, shift: float, scored_from: int) -> float:
    """Share of the held rows flagged after a slow ramp of ``sensor`` to ``shift``, an hour after
    scoring started (row ``scored_from``)."""
    n = scored_from + 2 * nr.HOUR
    X = log.values[:n].copy()
    start = scored_from + nr.HOUR
    X[start : start + RAMP_S, sensor] += shift * np.arange(RAMP_S) / RAMP_S
    X[start + RAMP_S : start + RAMP_S + HOLD_S, sensor] += shift
    ramped = SensorLog(log.timestamps_ns[:n], [], log.sensors, X)
    result = run_backtest(ramped, train_rows=nr.BASELINE_ROWS, config=config)
    return float(result.anomaly[start + RAMP_S + 60 : start + RAMP_S + HOLD_S].mean())


def report(name: str, log: SensorLog, learned_at: tuple[AssetMonitor, int], config: MonitorConfig | None) -> None:
    monitor, scored_from = learned_at
    shifts = monitor.smallest_shifts()
    assert shifts is not None
    widths = noise_widths(name, log)
    hours = f", baseline {scored_from / nr.HOUR:.1f} h" if scored_from != nr.BASELINE_ROWS else ""
    print(f"{name}: alarm level p >= {monitor.alarm_enter:.7f}{hours}")
    for j, sensor in enumerate(log.sensors):
        up, down = shifts.up[j], shifts.down[j]
        if not (np.isfinite(up) or np.isfinite(down)):
            print(f"  {sensor:22s} not by its level (judged by how it moves)")
            continue
        line = f"  {sensor:22s} +{up:10.4g} / -{down:10.4g}"
        line += f"   = +{up / widths[j]:7.1f} / -{down / widths[j]:7.1f} noise widths"
        if config is not None and sensor in CHECKED.get(name, ()):
            if scored_from + 2 * nr.HOUR > len(log):
                line += "   slow ramp: no room for it after the baseline"
            else:
                flagged = [ramp_check(log, config, j, k * up, scored_from) for k in (0.5, 1.5)]
                line += f"   slow ramp up to 0.5x: {100 * flagged[0]:3.0f} % flagged, 1.5x: {100 * flagged[1]:3.0f} %"
        print(line, flush=True)


def with_feedback(log: SensorLog, config: MonitorConfig, days: int) -> tuple[AssetMonitor, int]:
    """The pump after ``days`` of every hour's alerts marked false alarms."""
    monitor, scored_from = learned(log, config)
    ts, X = log.timestamps_ns, log.values
    marks = 0
    for start in range(scored_from, min(scored_from + days * nr.DAY, len(log)), nr.HOUR):
        out = monitor.process_arrays(ts[start : start + nr.HOUR], X[start : start + nr.HOUR])
        for first, last in alert_spans(out.ts_ns, out.anomaly):
            monitor.learn_false_alarm(first, last)
            marks += 1
    print(f"(after {days} days with {marks} alerts marked false alarms)")
    return monitor, scored_from


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config whose detector section to use (default: the live default)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated scenarios (default 1)")
    parser.add_argument("--feedback-days", type=int, default=7, help="days of marked alerts on the pump (0: skip)")
    args = parser.parse_args(argv)
    config = nr.asset_config(args.config, {})
    scenarios = [
        ("independent", nr.independent(args.seed, 1)),
        ("operating_points", nr.pump(args.seed, max(1, args.feedback_days), stops=False)),
        ("skab_anomaly_free", nr.skab_anomaly_free(nr.DEFAULT_DATA)),
    ]
    for name, log in scenarios:
        report(name, log, learned(log, config), config)
    if args.feedback_days:
        pump = scenarios[1][1]
        report("operating_points", pump, with_feedback(pump, config, args.feedback_days), None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
