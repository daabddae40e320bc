"""Speed of the detection chain's parts on 100,000 rows × 8 sensors (speed goals live here, not in tests).

python bench/components_speed.py
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import numpy as np

from detector.alarm import HysteresisAlarm
from detector.features import RollingFeatures
from detector.registry import make_detector

N, D = 100_000, 8


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    ts = np.arange(N, dtype=np.int64) * 10**9
    X = rng.standard_normal((N, D))
    features = RollingFeatures(window_s=30.0, features=("raw", "level", "spread"))
    print(f"features raw+level+spread, batch: {N / best_of(lambda: features.transform(ts, X)):,.0f} rows/s")
    stream = RollingFeatures(window_s=30.0, features=("raw", "level", "spread"))
    chunks = np.array_split(np.arange(N), N // 100)

    def stream_all() -> None:
        stream.reset()
        for c in chunks:
            stream.update(ts[c], X[c])

    seconds = best_of(stream_all, 1)
    print(f"features, streaming in 100-row batches: {N / seconds:,.0f} rows/s")
    # The live service's case: a 15 s window (15 rows at 1 Hz), a few rows a call; and the same window
    # over an asset sending 35 rows a second, when it holds ~525 rows (kept rows cost most there).
    for hz, per_call in ((1, 10), (35, 50)):
        live = RollingFeatures(window_s=15.0, features=("level", "spread"))
        stamps = (np.arange(20_000) * (1e9 / hz)).astype(np.int64)
        live.update(stamps[:2000], X[:2000])
        calls = range(2000, 20_000, per_call)
        started = time.perf_counter()
        for i in calls:
            live.update(stamps[i : i + per_call], X[i : i + per_call])
        each_us = (time.perf_counter() - started) / len(calls) * 1e6
        print(f"features level+spread, streaming {per_call} rows a call at {hz} Hz: {each_us:,.0f} us a call")
    p = rng.uniform(0, 1, 400_000).tolist()
    alarm = HysteresisAlarm(min_duration=2, exit_duration=2, suppress_rows=3)

    def alarm_all() -> None:
        alarm.reset()
        alarm.run(p)

    print(f"alarm rule: {len(p) / best_of(alarm_all):,.0f} rows/s")
    F = features.transform(ts, X)
    for kind in ("robust_z", "pca_spc", "iforest", "ensemble"):
        detector = make_detector(kind, {}).fit(F[:1000])
        print(f"{kind:>9} score: {N / best_of(partial(detector.score, F), 1):,.0f} rows/s")


if __name__ == "__main__":
    main()
