"""Memory per asset of the service's detector side, once learned and once every buffer is full.

    python bench/memory.py [--assets 200] [--steady-rows 7800]

Drives the service's own detector stage (``DetectorStage``: monitors, score and row histories for the
API, sensor checks, alert lifecycle on a SQLite store, maintenance trends) with the embedded default
configuration, on this thread, for ``--assets`` 8-sensor assets at 1 Hz (AR(1) sensors around their
own levels; the verdicts go nowhere: storage is not what is measured). Two points:

1. **learned**: 650 rows each, the 600 of the baseline and 50 scored (what ``bench/throughput.py``'s
   1,000-asset figure measures);
2. **steady**: ``--steady-rows`` rows each (default 7,800: the baseline and two hours scored), when
   the recalibration memory (ten baseline lengths of live scores), the hour of scores and the 720
   rows for the charts are all full.

For each it prints the resident memory added per asset (RSS, ``/proc/self/statm``) and, with
``--trace``, tracemalloc's breakdown of what holds it. The last line is one JSON object. The service
adds its own start-up memory (imports, the API; ``bench/throughput.py`` measures the whole process).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import tempfile
import threading
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

import numpy as np

from alerts.lifecycle import AlertManager
from alerts.store import SqliteAlertStore
from detector.types import Verdict
from ingest.messages import Reading
from plantwatch.service.detector_stage import DetectorStage
from plantwatch.service.scoring_queue import ScoringQueue
from plantwatch.service.sensor_checks import SensorCheckConfig, SensorChecks
from plantwatch.service.wiring import _maintenance_tracker
from plantwatch.service.writer import StageHealth
from plantwatch.settings import load_settings
from telemetry.counters import Counters

SENSORS = tuple(f"s{i}" for i in range(8))
LEARNED_ROWS = 650
BATCH_ROWS = 10  # rows per asset per batch, about what a full-rate writer batch holds
T0_NS = 1_767_225_600 * 10**9  # 2026-01-01


class NoSink:
    """Verdicts go nowhere: the time-series database is not what is measured."""

    def write_verdicts(self, verdicts: list[Verdict]) -> None:
        pass


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


class Fleet:
    """``assets`` assets' readings, generated a block of rows at a time (AR(1), phi 0.5)."""

    def __init__(self, assets: int) -> None:
        self.names = [f"asset-{i:04d}" for i in range(assets)]
        rng = np.random.default_rng(0)
        self.level = rng.uniform(10, 100, (assets, len(SENSORS)))
        self.state = np.zeros((assets, len(SENSORS)))
        self.rng = rng
        self.row = 0

    def batch(self, rows: int) -> list[Reading]:
        readings = []
        for _ in range(rows):
            self.state = 0.5 * self.state + self.rng.normal(0, 0.87, self.state.shape)
            values = self.level + self.state
            ts = T0_NS + self.row * 10**9
            for name, row in zip(self.names, values.tolist(), strict=True):
                readings.append(Reading(name, ts, dict(zip(SENSORS, row, strict=True))))
            self.row += 1
        return readings


def stage(folder: Path) -> DetectorStage:
    settings = load_settings(None, storage__kind="sqlite")
    counters = Counters()
    checks = settings.alerts
    folder.mkdir(exist_ok=True)
    alerts = AlertManager(
        SqliteAlertStore(folder / "alerts.db"),
        resolve_after_s=checks.resolve_after_s,
        critical_probability=checks.critical_probability,
        counters=counters,
        reopen_within_s=checks.reopen_within_s,
    )
    return DetectorStage(
        ScoringQueue(),
        sink=NoSink(),  # type: ignore[arg-type]
        alerts=alerts,
        detector_config=settings.detector.as_config,
        counters=counters,
        health=StageHealth(),
        stop=threading.Event(),
        maintenance=_maintenance_tracker(settings, None),
        sensor_checks=SensorChecks(
            SensorCheckConfig(checks.stale_after_s, checks.flat_after_s, checks.sensor_limits), alerts
        ),
    )


def run_to(detector: DetectorStage, fleet: Fleet, rows: int) -> None:
    while fleet.row < rows:
        assert detector._score(fleet.batch(min(BATCH_ROWS, rows - fleet.row)))


def breakdown(before: tracemalloc.Snapshot, assets: int, top: int = 25) -> dict[str, float]:
    """KiB per asset held: all that tracemalloc sees, and by the plantwatch source lines that allocated
    it (the last three of ours on the way)."""
    held: dict[str, float] = defaultdict(float)
    stats = tracemalloc.take_snapshot().compare_to(before, "traceback")
    held["(all traced)"] = sum(s.size_diff for s in stats) / 1024 / assets
    for stat in stats:
        ours = [f for f in stat.traceback if "/bench/" not in f.filename and "/site-packages/" not in f.filename]
        frames = ours[-3:] if ours else [stat.traceback[-1]]
        where = " < ".join("/".join(Path(f.filename).parts[-2:]) + f":{f.lineno}" for f in reversed(frames))
        held[where] += stat.size_diff / 1024 / assets
    return dict(sorted(held.items(), key=lambda kv: -kv[1])[:top])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=200)
    parser.add_argument("--steady-rows", type=int, default=7800)
    parser.add_argument("--trace", action="store_true", help="tracemalloc's breakdown (several times slower)")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # alert lines: normal running raises a few
    result: dict[str, float] = {"assets": args.assets}
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
        # One asset through a whole run first: imports, caches and the first SQLite pages are not per asset.
        warm = stage(Path(tmp) / "warm")
        run_to(warm, Fleet(1), args.steady_rows)
        del warm
        detector, fleet = stage(Path(tmp)), Fleet(args.assets)
        gc.collect()
        start = rss_mib()
        if args.trace:
            tracemalloc.start(12)
        before = tracemalloc.take_snapshot() if args.trace else None
        began = time.perf_counter()
        for point, rows in (("learned", LEARNED_ROWS), ("steady", args.steady_rows)):
            run_to(detector, fleet, rows)
            gc.collect()
            per_asset = (rss_mib() - start) * 1024 / args.assets
            result[f"kib_per_asset_{point}"] = round(per_asset, 1)
            took = time.perf_counter() - began
            print(
                f"{point}: {rows:,} rows per asset: +{per_asset:,.0f} KiB resident per asset ({took:.0f} s)", flush=True
            )
            if before is not None:
                for where, kib in breakdown(before, args.assets).items():
                    print(f"    {kib:7.1f} KiB  {where}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
