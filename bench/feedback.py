"""Operator feedback: a normal behaviour the baseline never showed alerts, is marked a false alarm,
and stops alerting, while a fault of the same size on another sensor still alerts.

    python bench/feedback.py [--seeds 1,2,3] [--repeats 6]

Four independent sensors at 1 Hz, a one-hour baseline, the live default configuration. Every 30
minutes sensor ``b`` steps up by SIZE noise widths for 5 minutes (a cleaning cycle, say: normal, but
absent from the baseline). After each half hour, every alert of that half hour is marked a false
alarm (``AssetMonitor.learn_false_alarm`` over the alert's rows, what an operator's feedback calls).
After the repeats, sensor ``c`` steps up by the same SIZE for 5 minutes: a fault, never marked.
Printed per size: alerts the behaviour raised at each repeat, and whether the fault alerted. Then
what a mark costs: the rows of a smaller fault on ``c`` flagged an hour after a step on ``b``,
without and with that step marked a false alarm.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np

from detector.monitor import AssetMonitor
from plantwatch.settings import load_settings

HOUR = 3600
HALF = HOUR // 2
EPISODE = (600, 900)  # seconds into each half hour: the behaviour (or the fault) lasts 5 minutes
SENSORS = ("a", "b", "c", "d")


def alert_spans(ts: np.ndarray, flags: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) stamp of each run of flagged rows."""
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    return [
        (int(ts[s]), int(ts[e - 1]))
        for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)
    ]


def run(size: float, seed: int, repeats: int) -> tuple[list[int], int]:
    """Alerts of the behaviour at each repeat (each marked after its half hour); alerts of the fault."""
    config = dataclasses.replace(load_settings(None, storage__kind="sqlite").detector.as_config(), baseline_rows=HOUR)
    rng = np.random.default_rng(seed)
    n = HOUR + (repeats + 1) * HALF
    X = rng.normal(size=(n, len(SENSORS)))
    ts = np.arange(n, dtype=np.int64) * 10**9
    for k in range(repeats + 1):
        start = HOUR + k * HALF
        X[start + EPISODE[0] : start + EPISODE[1], 2 if k == repeats else 1] += size
    monitor = AssetMonitor("pump", config, SENSORS)
    monitor.process_arrays(ts[:HOUR], X[:HOUR])
    per_repeat = []
    for k in range(repeats + 1):
        part = slice(HOUR + k * HALF, HOUR + (k + 1) * HALF)
        out = monitor.process_arrays(ts[part], X[part])
        spans = alert_spans(out.ts_ns, out.anomaly)
        per_repeat.append(len(spans))
        if k < repeats:
            for first, last in spans:
                monitor.learn_false_alarm(first, last)
    return per_repeat[:-1], per_repeat[-1]


def fault_after_mark(size: float, fault: float, seed: int, mark: bool) -> int:
    """Rows of a 5-minute ``fault`` on ``c`` flagged an hour after a ``size`` step on ``b`` (marked a
    false alarm when ``mark``): what marking one behaviour costs the detection of another."""
    config = dataclasses.replace(load_settings(None, storage__kind="sqlite").detector.as_config(), baseline_rows=HOUR)
    rng = np.random.default_rng(seed)
    n = HOUR + 3 * HALF
    X = rng.normal(size=(n, len(SENSORS)))
    ts = np.arange(n, dtype=np.int64) * 10**9
    X[HOUR + EPISODE[0] : HOUR + EPISODE[1], 1] += size
    X[HOUR + 2 * HALF + EPISODE[0] : HOUR + 2 * HALF + EPISODE[1], 2] += fault
    monitor = AssetMonitor("pump", config, SENSORS)
    monitor.process_arrays(ts[:HOUR], X[:HOUR])
    first = monitor.process_arrays(ts[HOUR : HOUR + HALF], X[HOUR : HOUR + HALF])
    for start, end in alert_spans(first.ts_ns, first.anomaly) if mark else []:
        monitor.learn_false_alarm(start, end)
    monitor.process_arrays(ts[HOUR + HALF : HOUR + 2 * HALF], X[HOUR + HALF : HOUR + 2 * HALF])
    last = monitor.process_arrays(ts[HOUR + 2 * HALF :], X[HOUR + 2 * HALF :])
    return int(last.anomaly[EPISODE[0] : EPISODE[1]].sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument("--repeats", type=int, default=6, help="repeats of the behaviour (default 6)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    print("size (noise widths)  seed  alerts of the behaviour at each repeat  fault on another sensor alerted")
    for size in (2.0, 3.0, 4.0, 6.0):
        for seed in seeds:
            behaviour, fault = run(size, seed, args.repeats)
            print(f"{size:19.0f}  {seed:4d}  {' '.join(str(a) for a in behaviour):38s}  {'yes' if fault else 'NO'}")
    print("\nmarked step on b  fault on c  seed  fault rows flagged of 300: without the mark / with it")
    for size in (3.0, 6.0):
        for smaller in (1.5, 2.0):
            for seed in seeds[:2]:
                plain, marked = (fault_after_mark(size, smaller, seed, mark) for mark in (False, True))
                print(f"{size:17.0f}  {smaller:10.1f}  {seed:4d}  {plain:3d} / {marked:3d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
