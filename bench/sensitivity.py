"""What the false-alert target costs: faults injected after days of normal running, flagged or not.

    python bench/sensitivity.py [--config FILE] [--seeds 1,2,3] [--sizes 1,2,3,5]

The generated data of ``bench/normal_running.py`` (independent sensors; the pump at three operating
points), a one-hour baseline, then three days of normal running and a 10-minute step of 1-5 noise
widths on one sensor (``s1``; the pump's ``flow``). Printed per step: the share of the step's rows
flagged and the delay to the first flag, per seed, with the live default configuration (or the
``detector`` section of ``--config FILE``). Run it with a config that sets
``false_alerts_per_week: null``, ``exit: 0.98`` and ``min_duration: 5`` for the rule before the target.
"""

from __future__ import annotations

import argparse
import sys

import normal_running as nr  # the generators of the normal-running bench (bench/ is the script's folder)
import numpy as np

from plantwatch.offline.backtest import run_backtest
from plantwatch.settings import load_settings

STEP_ROWS = 600  # ten minutes at 1 Hz
AT = nr.BASELINE_ROWS + 3 * nr.DAY  # after three days of normal running


def flagged(scenario: str, seed: int, size: float, config_path: str | None) -> tuple[float, int | None]:
    """Share of the step's rows flagged, and seconds to the first flag (None: never)."""
    config = load_settings(config_path, storage__kind="sqlite").detector.as_config()
    if scenario == "independent":
        log, column, noise = nr.independent(seed, 4), 1, 1.0
    else:
        log, column, noise = nr.pump(seed, 4, stops=False), nr.PUMP_SENSORS.index("flow"), 0.8
    log.values[AT : AT + STEP_ROWS, column] += size * noise
    result = run_backtest(log, train_rows=nr.BASELINE_ROWS, config=config)
    flags = result.anomaly[AT : AT + STEP_ROWS]
    return float(flags.mean()), (int(np.argmax(flags)) if flags.any() else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config whose detector section to use (default: the live default)")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument("--sizes", default="1,2,3,5", help="comma-separated steps in noise widths (default 1,2,3,5)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    sizes = [float(s) for s in args.sizes.split(",")]
    print("scenario          step (noise widths)  per seed: share of the step's rows flagged @ first flag")
    for scenario in ("independent", "operating_points"):
        for size in sizes:
            cells = []
            for seed in seeds:
                share, delay = flagged(scenario, seed, size, args.config)
                cells.append(f"{share:4.2f} @ {delay} s" if delay is not None else "0.00 (never)")
            print(f"{scenario:17s} {size:19.0f}  " + "   ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
