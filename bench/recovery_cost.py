"""What crash recovery costs: the readings log on the writer thread, checkpoints on the detector thread
(the copies of the states) and on the checkpoint thread (the files).

    python bench/recovery_cost.py [--assets 10 100 500] [--batches 200]

Prints, on this machine's disk:
* the writer's cost of logging a stored batch (µs per reading, 8-sensor frames in batches of
  ``storage.batch_size`` 5,000), and of the sync at each checkpoint;
* the detector's cost of reading batches back, one at a time (as when it falls behind the writer in a
  drain) and in one run (as after a crash);
* the cost of one checkpoint with every one of N warm assets changed (all of them received readings
  since the last one: the usual case), and with none changed (links only): the copies of the states
  the detector thread takes (the pause detection sees), and the files the checkpoint thread writes;
* the bytes a checkpoint holds per asset.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from detector.config import MonitorConfig
from detector.monitor import AssetMonitor
from ingest.messages import Reading
from plantwatch.service.persistence import ModelPersistence
from plantwatch.service.reading_log import ReadingLog

SENSORS = tuple(f"s{i}" for i in range(8))
BATCH = 5_000


def _batch(rng: np.random.Generator, start: int) -> tuple[Reading, ...]:
    values = rng.normal(size=(BATCH, len(SENSORS)))
    return tuple(
        Reading(f"pump-{i % 10}", (start + i) * 10**9, dict(zip(SENSORS, row.tolist(), strict=True)), {"line": "L1"})
        for i, row in enumerate(values)
    )


def log_cost(directory: Path, batches: int) -> None:
    rng = np.random.default_rng(0)
    prepared = [_batch(rng, k * BATCH) for k in range(min(batches, 20))]
    log = ReadingLog(directory)
    appends, syncs = [], []
    for k in range(batches):
        started = time.perf_counter()
        log.append(prepared[k % len(prepared)])
        appends.append(time.perf_counter() - started)
        if k % 10 == 9:
            started = time.perf_counter()
            log.sync()
            syncs.append(time.perf_counter() - started)
    size = sum(p.stat().st_size for p in directory.glob("*.log"))
    in_a_run = _seconds(lambda: sum(1 for _ in log.after(0)))
    one_by_one = _seconds(lambda: [sum(1 for _ in log.after(k, k + 1)) for k in range(batches)])
    log.close()
    per_reading = statistics.median(appends) / BATCH * 1e6
    print(f"readings log: {per_reading:.2f} µs per reading appended (median of {batches} batches of {BATCH})")
    print(
        f"  {size / (batches * BATCH):.0f} bytes per 8-sensor reading; sync of 10 batches: "
        f"median {statistics.median(syncs) * 1e3:.1f} ms, max {max(syncs) * 1e3:.1f} ms"
    )
    print(
        f"  read back (what the detector was too far behind to take from its queue): "
        f"{one_by_one / (batches * BATCH) * 1e6:.2f} µs per reading a batch at a time, "
        f"{in_a_run / (batches * BATCH) * 1e6:.2f} in one run"
    )


def _seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _warm(asset: str) -> AssetMonitor:
    monitor = AssetMonitor(asset, MonitorConfig(), SENSORS)
    rng = np.random.default_rng(len(asset))
    ts = (1_700_000_000 + np.arange(1_500, dtype=np.int64)) * 10**9
    monitor.process_arrays(ts, rng.normal(size=(1_500, len(SENSORS))))
    return monitor


def checkpoint_cost(directory: Path, assets: int) -> None:
    template = _warm("template")
    state = template.get_state()
    monitors = {}
    for i in range(assets):
        monitor = AssetMonitor(f"pump-{i}", MonitorConfig(), SENSORS)
        monitor.set_state(state)
        monitors[monitor.asset] = monitor
    models = ModelPersistence(str(directory))
    copies, changed, unchanged = [], [], []
    for k in range(3):
        started = time.perf_counter()
        snapshot = models.snapshot(monitors, list(monitors), None)
        copied = time.perf_counter()
        models.write(snapshot, scored_seq=2 * k + 1)
        copies.append(copied - started)
        changed.append(time.perf_counter() - copied)
        started = time.perf_counter()
        models.checkpoint(monitors, [], None, scored_seq=2 * k + 2)
        unchanged.append(time.perf_counter() - started)
    size = sum(p.stat().st_size for p in models.model_dir.iterdir())
    print(
        f"checkpoint of {assets} warm assets, all changed: detector thread {statistics.median(copies) * 1e3:.0f} ms, "
        f"checkpoint thread {statistics.median(changed) * 1e3:.0f} ms; none changed "
        f"{statistics.median(unchanged) * 1e3:.0f} ms (medians of 3); {size / assets / 1e3:.0f} kB per asset"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        log_cost(Path(tmp) / "log", args.batches)
        for n in args.assets:
            checkpoint_cost(Path(tmp) / f"models-{n}", n)
    print(f"command: python bench/recovery_cost.py --assets {' '.join(map(str, args.assets))} --batches {args.batches}")


if __name__ == "__main__":
    main()
