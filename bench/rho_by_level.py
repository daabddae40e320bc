"""Does one alert span as many exceeding rows at a high level as at a low one?

    python bench/rho_by_level.py [--seeds 1-3]

The alarm level for ``false_alerts_per_week`` (``detector/alert_rate.py``) takes ``rho``, alerts per
exceeding row, from the highest trial level at which the baseline's cross-fitted scores still open
10 alerts, and uses it at the far higher level the target asks for: it assumes ``rho`` does not
change with the level. This prints ``rho`` at every trial level that opens at least 3 alerts, for
the baselines ``bench/normal_running.py`` learns (default configuration; the pump's baseline goes on
to 2 hours), so the assumption can be checked. Where ``rho`` rises with the level, the derived level
is too low (more alerts than the target); where it falls, too high. The numbers are quoted in
docs/detection.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from normal_running import BASELINE_ROWS, independent, learn, parse_seeds, pump  # noqa: E402

from detector.alarm import HysteresisAlarm, alarm_onsets  # noqa: E402
from detector.alert_rate import MIN_ALERTS, TRIAL_LEVELS, measure_rho, probability_at_surprise  # noqa: E402
from detector.baseline import fit_models, learn_baseline  # noqa: E402
from detector.monitor import AssetMonitor  # noqa: E402
from ingest.logfile import SensorLog  # noqa: E402
from plantwatch.settings import load_settings  # noqa: E402

SHOWN = 3  # trial levels opening fewer alerts than this say nothing


def rho_by_level(log: SensorLog) -> tuple[int, float, list[tuple[float, int, float]]]:
    """The rows the default baseline learned from, the ``rho`` it keeps, and per trial level
    ``(surprise, alerts, rho)``."""
    default = load_settings(None, offline=True).detector.as_config(None)
    config = dataclasses.replace(default, baseline_rows=BASELINE_ROWS)  # as bench/normal_running.py learns
    rows = learn(AssetMonitor("bench", config, log.sensors), log)
    _, _, F = learn_baseline(log.timestamps_ns[:rows], log.values[:rows], config)
    fitted = fit_models(F, config)
    scores = fitted.calibration_scores
    assert scores is not None  # cross-fitting is the default
    probability = fitted.calibrator.transform(scores)
    alarm = config.make_alarm()
    levels = []
    for level in TRIAL_LEVELS:
        enter = probability_at_surprise(level)
        trial = HysteresisAlarm(enter, min(alarm.exit, enter), alarm.min_duration, alarm.exit_duration, 0)
        alerts = int(alarm_onsets(trial.run(probability)).size)
        if alerts >= SHOWN:
            levels.append((level, alerts, alerts / (scores.size * math.exp(-level))))
    return rows, measure_rho(scores, fitted.calibrator, alarm), levels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1-3", help="seeds of the generated scenarios, e.g. 1-3")
    args = parser.parse_args(argv)
    print(f"rho = alerts / (rows x e^-L) at each trial level L that opens {SHOWN}+ alerts; kept: at {MIN_ALERTS}+")
    for name, make in (("independent", lambda s: independent(s, 1)), ("pump", lambda s: pump(s, 1, False))):
        for seed in parse_seeds(args.seeds):
            rows, kept, levels = rho_by_level(make(seed))
            shown = "  ".join(f"{level:g}:{rho:.3f}" for level, _, rho in levels)
            print(f"{name:<12} seed {seed:>2}  {rows} baseline rows  kept {kept:.3f}  by level {shown}")
            top = np.array([rho for _, alerts, rho in levels if alerts >= MIN_ALERTS])
            if top.size >= 2:
                span = f"{top[0]:.3f} / {top[-1]:.3f}"
                print(f"{'':<21}rho at the lowest / highest level with {MIN_ALERTS}+ alerts: {span}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
