"""Backtest throughput: rows/s of `plantwatch backtest` (read CSV, score, write SCORES.csv).

    python bench/backtest_speed.py [--repeat 20]

Measures (1) the SKAB file named in the walking-skeleton issue, run --repeat times, and (2) a
generated 100,000-row, 8-sensor log. Prints the median rows/s of each.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from plantwatch.offline.backtest import backtest_main
from plantwatch.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
SKAB_FILE = ROOT.parent / "shared" / "datasets" / "skab" / "valve1" / "0.csv"


def _generated_log(path: Path, rows: int = 100_000, sensors: int = 8) -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(0, 1, size=(rows, sensors)).cumsum(axis=0) * 0.01 + rng.normal(0, 1, size=(rows, sensors))
    start = np.datetime64("2024-01-01T00:00:00")
    stamps = (start + np.arange(rows).astype("timedelta64[s]")).astype(str)
    with path.open("w") as fh:
        fh.write("timestamp," + ",".join(f"s{i}" for i in range(sensors)) + "\n")
        for stamp, row in zip(stamps, values, strict=True):
            fh.write(stamp + "," + ",".join(f"{v:.5f}" for v in row) + "\n")


def _rate(log: Path, out: Path, train_rows: int, labels: tuple[str, ...], repeat: int) -> tuple[int, float]:
    config = load_settings(None, storage__kind="sqlite").detector.as_config()
    rates, rows = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        summary = backtest_main(log, out, train_rows=train_rows, label_columns=labels, config=config)
        rates.append(summary["rows"] / (time.perf_counter() - started))
        rows = summary["rows"]
    return rows, statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.csv"
        if SKAB_FILE.exists():
            rows, rate = _rate(SKAB_FILE, out, 400, ("anomaly", "changepoint"), args.repeat)
            print(f"SKAB valve1/0.csv ({rows} rows, 8 sensors): {rate:,.0f} rows/s (median of {args.repeat})")
        else:
            print(f"SKAB file not found at {SKAB_FILE}; skipped")
        generated = Path(tmp) / "generated.csv"
        _generated_log(generated)
        rows, rate = _rate(generated, out, 1000, (), max(3, args.repeat // 5))
        print(f"generated log ({rows:,} rows, 8 sensors): {rate:,.0f} rows/s")


if __name__ == "__main__":
    main()
