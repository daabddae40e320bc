"""The readings of bench/reliability.py, their publishing, and what VictoriaMetrics holds of them.

A :class:`Dataset` is ``rows`` JSON frames of 8 correlated sensors for each of a few assets, 1 s apart
in event time (ending three days ago: VictoriaMetrics drops samples > 2 days ahead and keeps 100
years with ``-retentionPeriod=100y``), published asset after asset for each instant, with step faults
(three sensors, 10 noise widths, 120 s) so that alerts exist: on two assets one at 30 % of the rows
and one at 80 %, on a third a fault that comes back soon after its alert resolved (:func:`_faults`).
One reading = one frame (an asset at an instant).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from reliability_kit import Tsdb

from ingest.replay import Publisher

SENSORS = tuple(f"s{i}" for i in range(8))
FAULT_ROWS = 120
FAULT_WIDTHS = 10.0


@dataclass(frozen=True)
class Dataset:
    assets: tuple[str, ...]
    rows: int  # per asset
    start_s: int
    frames: list[tuple[str, bytes]]  # (topic, payload) in publish order

    @property
    def keys(self) -> set[tuple[str, int]]:
        """(asset, timestamp in ms) of every reading, as VictoriaMetrics exports them."""
        return {(a, (self.start_s + i) * 1000) for a in self.assets for i in range(self.rows)}


def make_dataset(readings: int, assets: int, seed: int = 1) -> Dataset:
    rows = readings // assets
    start_s = (int(time.time()) // 86400 - 3) * 86400 - rows
    names = tuple(f"pump-{a}" for a in range(assets))
    rng = np.random.default_rng(seed)
    per_asset = [_values(rows, rng, _faults(a, rows)) for a in range(assets)]
    frames = []
    for i in range(rows):
        ts_ns = (start_s + i) * 10**9
        for name, values in zip(names, per_asset, strict=True):
            payload = {"ts": ts_ns, "values": dict(zip(SENSORS, values[i].round(5).tolist(), strict=True))}
            frames.append((f"plant/{name}", json.dumps(payload, separators=(",", ":")).encode()))
    return Dataset(names, rows, start_s, frames)


def _faults(asset: int, rows: int) -> tuple[int, ...]:
    """The rows where the asset's faults start: pump-0 and pump-1 at 30 % and 80 %; pump-2 a fault
    that comes back 453 rows later: its alert resolves 60 s after the first (about 213 rows in) and the
    second comes within ``alerts.reopen_within_s`` (300 s), which reopens that alert. With 10,000 rows
    scenario 2's kill (at about 60 %) falls between the two."""
    if asset < 2:
        return (int(rows * 0.3), int(rows * 0.8))
    if asset == 2 and rows >= 2000:
        return (int(rows * 0.565), int(rows * 0.565) + 453)
    return ()


def _values(rows: int, rng: np.random.Generator, faults: Iterable[int]) -> np.ndarray:
    """8 sensors driven by one slowly varying load, each with its own noise; steps at ``faults``."""
    load = np.sin(np.arange(rows) / 600.0) + rng.normal(0, 0.05, rows)
    gains = np.array([5.0, 2.0, 1.0, 0.5, 3.0, 0.0, 1.5, 0.0])
    noise = np.array([0.2, 0.05, 0.03, 0.02, 0.1, 0.2, 0.05, 0.1])
    X = 10.0 + np.outer(load, gains) + rng.normal(0, 1, (rows, 8)) * noise
    for start in faults:
        X[start : start + FAULT_ROWS, [4, 5, 7]] += FAULT_WIDTHS * noise[[4, 5, 7]]
    return X


@dataclass
class Publishing:
    """Publishes frames from a thread (paho QoS 1, bounded outstanding publishes), noting when."""

    port: int
    frames: list[tuple[str, bytes]]
    client_id: str = "bench-publisher"
    rate: float | None = None  # frames per second; None: as fast as the broker acknowledges
    published: int = 0
    marks: list[tuple[int, float]] = field(default_factory=list)  # (frames published, time.monotonic())

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> Publishing:
        self._thread.start()
        return self

    def join(self, timeout_s: float = 600) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"publishing not done after {timeout_s} s ({self.published} published)")
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            publisher = Publisher("127.0.0.1", self.port, client_id=self.client_id, max_outstanding=1000)
            try:
                started = time.monotonic()
                self.marks.append((0, started))
                for topic, payload in self.frames:
                    if self.rate is not None and (ahead := started + self.published / self.rate - time.monotonic()) > 0:
                        time.sleep(ahead)
                    publisher.publish(topic, payload)
                    self.published += 1
                    if self.published % 1000 == 0:
                        self.marks.append((self.published, time.monotonic()))
                publisher.flush(120)  # every frame acknowledged by the broker
                self.marks.append((self.published, time.monotonic()))
            finally:
                publisher.close()
        except BaseException as exc:  # reported by join()
            self.error = exc


def publish(port: int, frames: list[tuple[str, bytes]], client_id: str = "bench-publisher") -> Publishing:
    """Publish ``frames`` and wait until the broker has acknowledged all of them."""
    publishing = Publishing(port, frames, client_id).start()
    publishing.join()
    return publishing


@dataclass(frozen=True)
class Stored:
    """What VictoriaMetrics holds of a dataset's readings."""

    complete: set[tuple[str, int]]  # (asset, ts ms) stored with every sensor
    raw: int  # samples of sensor s0, duplicates included
    distinct: int  # distinct (asset, ts) of sensor s0

    @property
    def duplicated(self) -> int:
        return self.raw - self.distinct


def stored_readings(tsdb: Tsdb, assets: Iterable[str]) -> Stored:
    wanted = set(assets)
    per_sensor: dict[str, set[tuple[str, int]]] = {s: set() for s in SENSORS}
    raw = 0
    for series in tsdb.export('{__name__=~"readings_s[0-7]"}'):
        asset = series["metric"].get("asset")
        sensor = series["metric"]["__name__"].removeprefix("readings_")
        if asset not in wanted or sensor not in per_sensor:
            continue
        per_sensor[sensor].update((asset, t) for t in series["timestamps"])
        if sensor == "s0":
            raw += len(series["timestamps"])
    complete = set.intersection(*per_sensor.values())
    return Stored(complete, raw, len(per_sensor["s0"]))


@dataclass(frozen=True)
class Verdicts:
    """The verdicts stored (measurement ``anomaly``, field ``score``): each (asset, instant in ms) with
    every score written for it (a row scored again after a crash is written again)."""

    scores: dict[tuple[str, int], list[float]]

    @property
    def by_asset(self) -> dict[str, set[int]]:
        found: dict[str, set[int]] = {}
        for asset, ts in self.scores:
            found.setdefault(asset, set()).add(ts)
        return found

    @property
    def repeated(self) -> int:
        return sum(len(values) - 1 for values in self.scores.values())

    def differing(self, reference: Verdicts) -> int:
        """Instants scored in both runs where any score written here differs from the reference's."""
        return sum(
            1
            for key, values in self.scores.items()
            if key in reference.scores
            and any(abs(v - reference.scores[key][0]) > 1e-9 * max(1.0, abs(v)) for v in values)
        )


def verdicts(tsdb: Tsdb) -> Verdicts:
    scores: dict[tuple[str, int], list[float]] = {}
    for series in tsdb.export('{__name__="anomaly_score"}'):
        asset = series["metric"].get("asset", "")
        for ts, value in zip(series["timestamps"], series["values"], strict=True):
            scores.setdefault((asset, ts), []).append(value)
    return Verdicts(scores)


def missing(reference: dict[str, set[int]], got: dict[str, set[int]]) -> set[tuple[str, int]]:
    return {(a, t) for a, times in reference.items() for t in times - got.get(a, set())}


def as_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
