"""The detector stage's batch time when every asset alarms at once (an alert storm), against normal running.

    python bench/alert_storm.py [--assets 100] [--rows 4] [--store-dir /tmp]

Drives the service's own detector stage (``bench/memory.py``'s ``stage``: monitors, alert lifecycle on a
SQLite store in ``--store-dir``, sensor checks, maintenance trends; default configuration) on this thread:
``--assets`` 8-sensor assets learn their baselines, then batches of ``--rows`` rows per asset are scored,
first as normal running, then with every asset's levels 20 noise widths off, so that every asset's alert
opens and is updated in every batch. Prints the median and largest batch time of each; the last line is one
JSON object. A storm's alert updates used to be one transaction each: most of the batch's time.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from memory import Fleet, run_to, stage

BATCHES = 30
SHIFT = 20.0  # noise widths (the fleet's AR(1) sensors have a spread of about 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=100)
    parser.add_argument("--rows", type=int, default=4, help="rows per asset in each batch")
    parser.add_argument("--store-dir", default="/tmp", help="where the SQLite alert store goes (a disk, not /dev/shm)")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # one alert line per asset
    result: dict[str, float] = {"assets": args.assets, "rows_per_batch": args.rows}
    with tempfile.TemporaryDirectory(dir=args.store_dir) as tmp:
        detector, fleet = stage(Path(tmp)), Fleet(args.assets)
        run_to(detector, fleet, 700)
        for name, shift in (("normal", 0.0), ("storm", SHIFT)):
            fleet.level += shift
            took = []
            for _ in range(BATCHES):
                batch = fleet.batch(args.rows)
                started = time.perf_counter()
                detector._score(batch)
                took.append(time.perf_counter() - started)
            fleet.level -= shift
            median_ms, max_ms = float(np.median(took)) * 1e3, max(took) * 1e3
            per = f"per batch of {args.rows} rows x {args.assets} assets"
            print(f"{name}: {median_ms:.0f} ms median, {max_ms:.0f} ms largest, {per}", flush=True)
            result[f"{name}_median_ms"], result[f"{name}_max_ms"] = round(median_ms, 1), round(max_ms, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
