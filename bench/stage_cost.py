"""Time the service's detector stage takes per asset and call, once the assets have learned.

    python bench/stage_cost.py [--assets 100] [--rows 1,4,10] [--calls 40]

Drives ``DetectorStage._score`` (monitors, histories, sensor checks, alert lifecycle on a SQLite store,
maintenance trends: ``bench/memory.py``'s stage and fleet) on this thread. Each asset first learns its
baseline and scores a little (700 rows), then batches holding ``R`` rows of every asset are scored;
printed per ``R``: microseconds per asset and call, the best of three runs of ``--calls`` batches
(the other two beside it). Most of the detector's cost is per call, not per row
(docs/throughput.md), so this is the figure the publish-to-verdict latency rests on.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import memory as mb  # the stage and fleet of bench/memory.py (bench/ is the script's folder)

WARM_ROWS = 700  # each asset's 600-row baseline, then 100 rows scored


def cost_us(assets: int, rows: int, calls: int) -> list[float]:
    """Microseconds per asset and call over three runs of ``calls`` batches of ``rows`` rows each."""
    with tempfile.TemporaryDirectory() as tmp:
        stage, fleet = mb.stage(Path(tmp)), mb.Fleet(assets)
        mb.run_to(stage, fleet, WARM_ROWS)
        batches = [fleet.batch(rows) for _ in range(3 * calls)]
        runs = []
        for run in range(3):
            started = time.perf_counter()
            for batch in batches[run * calls : (run + 1) * calls]:
                stage._score(batch)
            runs.append((time.perf_counter() - started) / (calls * assets) * 1e6)
        return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=100)
    parser.add_argument("--rows", default="1,4,10", help="rows per asset in a call, e.g. 1,4,10")
    parser.add_argument("--calls", type=int, default=40, help="batches per run (three runs)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # baseline advice and alert lines of every asset
    for rows in (int(v) for v in args.rows.split(",")):
        runs = cost_us(args.assets, rows, args.calls)
        others = ", ".join(f"{v:.0f}" for v in runs)
        print(f"{rows:3d} rows per asset and call: {min(runs):6.0f} µs per asset and call (runs {others})", flush=True)


if __name__ == "__main__":
    main()
