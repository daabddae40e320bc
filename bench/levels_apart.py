"""Tried, not adopted: judging the sensors' levels apart from how they move (a measured trade-off).

    python bench/levels_apart.py [--seeds 1,2,3] [--baseline-hours 1] [--feedback-days 0] [--detection]

The default's blind spot on the pump of ``bench/normal_running.py`` (a slow change of one sensor must
reach 200-400 noise widths, ``bench/detectable_shifts.py``) comes from one model judging levels and
spreads together: load changes put the spreads' tail, and with it the alarm level, far beyond any
settled level shift. ``levels_apart`` (defined here, registered for this process only) fits one
``pca_spc`` on the level columns (``raw``, ``level``) and one on the others (``spread``, ...), turns
each score into its in-sample surprise against its own baseline scores (``EmpiricalCalibrator``, as
``ensemble`` does) and takes the larger. The monitor's calibrator, alarm rule and every other part are
the live service's.

Printed per seed, for the default and for ``levels_apart``: alerts per asset-week on the pump at three
operating points (7 days scored after the baseline; with ``--feedback-days N``, alerts per day while
every alert of each hour is marked a false alarm, as ``bench/detectable_shifts.py`` does) and the
smallest settled shift of each sensor the alarm flags at the end. ``--detection`` also runs
``bench/detection.py`` (SKAB valve1, NAB) with ``levels_apart``.

Which columns hold levels depends on the drifting sensors the baseline finds, which only the monitor
knows: this script wraps ``detector.baseline.choose_columns`` to hand them to the model it fits next.
A bench-only shortcut; a product version would pass the column kinds through the detector's contract.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import detection
import normal_running as nr  # the generators of the normal-running bench (bench/ is the script's folder)
import numpy as np
from feedback import alert_spans

import detector.baseline as baseline
from detector.base import DetectorMixin, State
from detector.calibration import EmpiricalCalibrator
from detector.config import MonitorConfig
from detector.detectors.pca_spc import PcaSpc
from detector.features import LEVEL_FEATURES
from detector.monitor import AssetMonitor
from detector.registry import register

_model_columns: dict[str, np.ndarray] = {}  # "levels": which of the model's columns are level features
_choose_columns = baseline.choose_columns


def _recording_choose_columns(
    ts: np.ndarray, X: np.ndarray, window_s: float, config: MonitorConfig
) -> tuple[np.ndarray, np.ndarray | None]:
    drifting, columns = _choose_columns(ts, X, window_s, config)
    levels = np.tile([f in LEVEL_FEATURES for f in config.column_features], X.shape[1])
    _model_columns["levels"] = levels if columns is None else levels[columns]
    return drifting, columns


baseline.choose_columns = _recording_choose_columns


@register("levels_apart")
class LevelsApart(DetectorMixin):
    """One ``pca_spc`` per column group (levels, the rest), each score as surprise against its own
    baseline scores; the score is the larger surprise. Bench-only: no saved state."""

    def __init__(self, variance: float = 0.95) -> None:
        self.variance = variance

    def fit(self, X: np.ndarray) -> LevelsApart:
        X = self._validate_fit_input(X)
        self.n_features_in_ = X.shape[1]
        levels = _model_columns.get("levels")
        if levels is None or levels.size != X.shape[1]:
            levels = np.ones(X.shape[1], dtype=bool)  # e.g. features off: one group
        self.groups_ = [g for g in (np.flatnonzero(levels), np.flatnonzero(~levels)) if g.size]
        self.members_ = [PcaSpc(variance=self.variance).fit(X[:, g]) for g in self.groups_]
        self.calibrators_ = []
        self.typical_ = []
        for g, member in zip(self.groups_, self.members_, strict=True):
            scores = member.score(X[:, g])
            calibrator = EmpiricalCalibrator().fit(scores)
            self.calibrators_.append(calibrator)
            self.typical_.append(-float(calibrator.log_survival(np.median(scores))))
        return self

    def _surprise(self, X: np.ndarray) -> np.ndarray:
        X = self._validate_score_input(X)
        parts = zip(self.groups_, self.members_, self.calibrators_, self.typical_, strict=True)
        return np.column_stack([np.maximum(-c.log_survival(m.score(X[:, g])) - t, 0.0) for g, m, c, t in parts])

    def score(self, X: np.ndarray) -> np.ndarray:
        return self._surprise(X).max(axis=1)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """The winning group's contributions, as shares of its surprise."""
        surprise = self._surprise(X)
        winner = np.argmax(surprise, axis=1)
        out = np.zeros((X.shape[0], self.n_features_in_))
        for i, (g, member) in enumerate(zip(self.groups_, self.members_, strict=True)):
            c = member.contributions(X[:, g])
            total = np.abs(c).sum(axis=1, keepdims=True)
            rows = winner == i
            out[np.ix_(rows, g)] = (c / np.where(total > 0, total, 1.0) * surprise[:, i : i + 1])[rows]
        return out

    def get_state(self) -> State:
        raise NotImplementedError("levels_apart is a bench experiment: it is never saved")


def pump_run(config: MonitorConfig, seed: int, baseline_rows: int, feedback_days: int) -> tuple[str, Any]:
    """(alerts: per week, or per day with feedback; the smallest shifts at the end)."""
    if not feedback_days:
        log = nr.pump(seed, 7, stops=False, baseline_rows=baseline_rows)
        result = nr.run_one("operating_points", log, config, baseline_rows)
        monitor = AssetMonitor("pump", dataclasses.replace(config, baseline_rows=baseline_rows), log.sensors)
        monitor.process_arrays(log.timestamps_ns, log.values)
        return f"{result['alerts_per_week']:5.1f} alerts per asset-week", monitor.smallest_shifts()
    log = nr.pump(seed, feedback_days, stops=False, baseline_rows=baseline_rows)
    monitor = AssetMonitor("pump", dataclasses.replace(config, baseline_rows=baseline_rows), log.sensors)
    ts, X = log.timestamps_ns, log.values
    scored_from = nr.learn(monitor, log)  # later than baseline_rows where the baseline went on
    per_day = [0] * feedback_days
    for start in range(scored_from, len(log), nr.HOUR):
        out = monitor.process_arrays(ts[start : start + nr.HOUR], X[start : start + nr.HOUR])
        for first, last in alert_spans(out.ts_ns, out.anomaly):
            per_day[min((start - scored_from) // nr.DAY, feedback_days - 1)] += 1
            monitor.learn_false_alarm(first, last)
    return f"alerts per day, each marked: {per_day}", monitor.smallest_shifts()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3", help="seeds of the pump (default 1,2,3)")
    parser.add_argument("--baseline-hours", type=float, default=1.0, help="baseline length in hours (default 1)")
    parser.add_argument("--feedback-days", type=int, default=0, help="days of every alert marked a false alarm")
    parser.add_argument("--detection", action="store_true", help="also run bench/detection.py with levels_apart")
    args = parser.parse_args(argv)
    default = nr.asset_config(None, {})
    rows = round(args.baseline_hours * nr.HOUR)
    print(f"pump at three operating points, baseline {args.baseline_hours:g} h")
    for seed in (int(s) for s in args.seeds.split(",")):
        for kind in ("pca_spc", "levels_apart"):
            alerts, shifts = pump_run(dataclasses.replace(default, detector=kind), seed, rows, args.feedback_days)
            print(f"  seed {seed} {kind:12s} {alerts}; smallest shifts: {shifts.describe() if shifts else '-'}")
    if args.detection:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "levels_apart.yaml"
            path.write_text("detector:\n  kind: levels_apart\n")
            return detection.main(["--config", str(path)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
