"""Alerts said to lie at an unseen operating point: on normal running, at a new load, and on SKAB's faults.

    python bench/unseen_operating_points.py [--data DIR] [--config FILE] [--seeds 1,2,3] [--days 7] [--json OUT]

Every log goes through ``plantwatch.offline.backtest.run_backtest`` with ``explain=True`` (the code
behind ``plantwatch backtest --explain``, the monitor the live service runs) with the detector
settings of the embedded default configuration (or the ``detector`` section of ``--config FILE``).
An alert is an alarm onset, as in ``bench/normal_running.py``; what it says is the explanation of its
peak row, the highest score of its run of flagged rows (the alert lifecycle keeps its top sensors
and ``unseen_operating_point`` from that row). It is *marked* when that row lies at an unseen
operating point (``detector.operating_point``); the alternative not taken, an alert marked once any
of its rows is, is counted beside it.

1. ``operating_points`` (``bench/normal_running.py``): the pump at three operating points, all
   three run in the one-hour baseline, 7 days scored. No alert lies at a load the baseline never ran.
2. ``new_operating_point``: the same pump whose baseline hour runs only the two lower points (0.55
   and 0.75 of full load, 30 minutes each): every dwell at 0.95 is an operating point the baseline
   never covered. Alerts whose peak row runs above 0.85 of full load are counted apart.
3. SKAB valve1, all 16 files, the first 400 rows of each the baseline (SKAB's protocol). An alert
   overlapping a labelled fault is a fault alert: marking one is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from detection import SKAB_LABELS, SKAB_TRAIN_ROWS
from normal_running import BASELINE_ROWS, DEFAULT_DATA, LOADS, load_profile, pump

from detector.alarm import alarm_onsets
from detector.config import MonitorConfig
from ingest.logfile import SensorLog, read_sensor_log
from plantwatch.offline.backtest import BacktestResult, run_backtest
from plantwatch.settings import load_settings

NEW_POINT_BASELINE = LOADS[:2]  # the baseline hour of new_operating_point: the two lower loads
ABOVE_BASELINE = 0.85  # a peak row above this load runs beyond every load of that baseline


def peak_rows(result: BacktestResult) -> list[tuple[int, int, int]]:
    """``(first, end, peak)`` row of each alert: its run of flagged rows and the highest score in it."""
    flags = result.anomaly
    runs = []
    for first in alarm_onsets(flags).tolist():
        end = first + int(np.argmin(flags[first:])) if not flags[first:].all() else flags.size
        runs.append((first, end, first + int(np.nanargmax(result.score[first:end]))))
    return runs


def marked(result: BacktestResult, row: int) -> bool:
    why = result.explanations.get(row)
    return why is not None and why.unseen_operating_point


def count(result: BacktestResult, alerts: Sequence[tuple[int, int, int]]) -> dict[str, int]:
    rows = [row for first, end, _ in alerts for row in range(first, end)]
    return {
        "alerts": len(alerts),
        "alerts_marked": sum(marked(result, peak) for _, _, peak in alerts),
        # the alternative not taken: an alert marked once any of its rows is
        "alerts_any_row_marked": sum(any(marked(result, row) for row in range(first, end)) for first, end, _ in alerts),
        "rows": len(rows),
        "rows_marked": sum(marked(result, row) for row in rows),
    }


def run_pump(name: str, seed: int, days: int, first_hour: Sequence[float], config: MonitorConfig) -> dict[str, Any]:
    log = pump(seed, days, stops=False, first_hour=first_hour)
    result = run_backtest(log, train_rows=BASELINE_ROWS, config=config, explain=True)
    alerts = peak_rows(result)
    load, _ = load_profile(np.random.default_rng(seed), len(log), False, first_hour)  # pump()'s own profile
    high = [alert for alert in alerts if load[alert[2]] > ABOVE_BASELINE]
    return {"scenario": name, "seed": seed, **count(result, alerts), "above_baseline": count(result, high)}


def run_skab(data: Path, config: MonitorConfig) -> dict[str, Any]:
    totals: dict[str, int] = {}
    for k in range(16):
        log: SensorLog = read_sensor_log(data / "skab" / "valve1" / f"{k}.csv", label_columns=SKAB_LABELS)
        result = run_backtest(log, train_rows=SKAB_TRAIN_ROWS, config=config, explain=True)
        fault = log.labels["anomaly"] != 0
        alerts = peak_rows(result)
        faults = [alert for alert in alerts if fault[alert[0] : alert[1]].any()]
        per_file = {**count(result, alerts), **{f"fault_{key}": n for key, n in count(result, faults).items()}}
        per_file["fault_rows_marked_in_fault"] = sum(marked(result, row) for row in np.flatnonzero(fault).tolist())
        for key, n in per_file.items():
            totals[key] = totals.get(key, 0) + n
    return {"scenario": "skab_valve1", **totals}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"datasets directory (default {DEFAULT_DATA})")
    parser.add_argument("--config", help="YAML config whose detector section to use (default: the live default)")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds of the generated pumps (default 1,2,3)")
    parser.add_argument("--days", type=int, default=7, help="scored days of each generated pump (default 7)")
    parser.add_argument("--json", type=Path, help="write every number to this JSON file")
    args = parser.parse_args(argv)
    config = load_settings(args.config, storage__kind="sqlite").detector.as_config()
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name, first_hour in (("operating_points", LOADS), ("new_operating_point", NEW_POINT_BASELINE)):
            r = run_pump(name, seed, args.days, first_hour, config)
            results.append(r)
            high = r["above_baseline"]
            print(
                f"{name:20s} seed {seed}: {r['alerts_marked']:3d} of {r['alerts']:3d} alerts marked"
                f" ({high['alerts_marked']} of the {high['alerts']} peaking above {ABOVE_BASELINE:.0%} load);"
                f" {r['rows_marked']:,} of {r['rows']:,} alarmed rows;"
                f" {r['alerts_any_row_marked']} alerts with a marked row",
                flush=True,
            )
    skab = run_skab(args.data, config)
    results.append(skab)
    print(
        f"SKAB valve1, 16 files: {skab['fault_alerts_marked']} of {skab['fault_alerts']} fault alerts marked,"
        f" {skab['alerts_marked']} of {skab['alerts']} alerts; {skab['fault_rows_marked']} of"
        f" {skab['fault_rows']:,} rows of fault alerts, {skab['fault_rows_marked_in_fault']} of them labelled faulty;"
        f" {skab['fault_alerts_any_row_marked']} fault alerts with a marked row"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
